import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { z } from 'zod';
import { MODULE_TASK_NOT_FOUND } from '../frontend.js';
import { signedHeaders, verify } from '../signature.js';
import { AegirState, type Behaviour } from './aegir-state.js';

/** `proxy-404`: something in front of Aegir (a proxy, a wrong base URL) answers every request with an HTML 404. */
export type Fault = 'down' | 'slow' | 'error' | 'invalid-json' | 'huge' | 'bad-signature' | 'proxy-404';

export interface FakeFrontendOptions {
  key: Buffer;
  /** Where to send webhooks for new tasks, as hosting_taskd does; unset: no webhooks. */
  serviceUrl?: string;
  state?: AegirState;
  slowMs?: number;
}

const addSchema = z.object({
  rid: z.number().int().positive(),
  type: z.string().optional(),
  behaviour: z.enum(['success', 'warning', 'error', 'hang', 'die', 'leave-queued']).optional(),
  seconds: z.number().nonnegative().optional(),
  nid: z.number().int().positive().optional(),
  webhook: z.boolean().optional(),
});

/**
 * A stand-in for the Aegir frontend with the hosting_taskd module: the module's two signed
 * endpoints under /hosting/taskd, plus /_sim/ control routes used by the fake hosting-task
 * command, the tests and the demo. Faults can be switched on to test the service's client.
 */
export class FakeFrontend {
  readonly state: AegirState;
  readonly webhookResults: Array<{ nid: number; status: number | string }> = [];
  fault: Fault | null = null;
  /** Nids whose finish answers 500, as a PHP fatal in one task's hosting_task_finish-like path would. */
  readonly failingFinishes = new Set<number>();
  /** False: the listing carries tasks only, as hosting_taskd did before it reported hosting's queues. */
  reportsQueues = true;
  requests = 0;
  #server: http.Server | null = null;
  #url = '';

  constructor(private readonly options: FakeFrontendOptions) {
    this.state = options.state ?? new AegirState();
  }

  get url(): string {
    return this.#url;
  }

  /** The value for TASKD_FRONTEND_URL. */
  get baseUrl(): string {
    return `${this.#url}/hosting/taskd`;
  }

  set serviceUrl(url: string) {
    this.options.serviceUrl = url;
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => this.#server!.listen(port, host, resolve));
    const { port: bound } = this.#server.address() as AddressInfo;
    this.#url = `http://${host}:${bound}`;
    return this.#url;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.#server = null;
  }

  /** Queues a task as hosting_add_task does and, unless told not to, sends the module's webhook. */
  async addTask(input: { rid: number; type?: string; behaviour?: Behaviour; seconds?: number; nid?: number; webhook?: boolean }) {
    const task = this.state.addTask(input);
    if (input.webhook !== false) await this.sendWebhook(task.nid);
    return task;
  }

  async sendWebhook(nid: number): Promise<number | string> {
    const task = this.state.getTask(nid);
    if (!task || !this.options.serviceUrl) return 'no service';
    const payload = JSON.stringify({ nid: task.nid, rid: task.rid, type: task.type, vid: task.vid, changed: task.changed });
    let status: number | string;
    try {
      const response = await request(`${this.options.serviceUrl}/v1/tasks`, {
        method: 'POST',
        body: payload,
        headers: { 'content-type': 'application/json', ...signedHeaders(this.options.key, payload) },
      });
      await response.body.dump();
      status = response.statusCode;
    } catch (error) {
      status = (error as Error).message;
    }
    this.webhookResults.push({ nid, status });
    return status;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    try {
      if (url.pathname.startsWith('/hosting/taskd/')) return await this.#moduleEndpoint(req, res, url.pathname.slice('/hosting/taskd/'.length), send);
      if (url.pathname.startsWith('/_sim/')) return await this.#control(req, url, send);
      send(404, { error: 'not found' });
    } catch (error) {
      send(500, { error: (error as Error).message });
    }
  }

  async #moduleEndpoint(req: http.IncomingMessage, res: http.ServerResponse, route: string, send: (s: number, b: unknown) => void) {
    this.requests += 1;
    const fault = this.fault;
    if (fault === 'down') {
      req.socket.destroy();
      return;
    }
    if (fault === 'slow') await new Promise((r) => setTimeout(r, this.options.slowMs ?? 15_000));
    if (fault === 'proxy-404') {
      res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>');
      return;
    }
    const header = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name] as string) : undefined);
    // GETs sign their route string; a POST its raw body, as hosting_taskd checks them.
    const raw = req.method === 'POST' ? await readRaw(req) : null;
    const verdict = verify([this.options.key], { id: header('webhook-id'), timestamp: header('webhook-timestamp'), signature: header('webhook-signature'), payload: raw ?? route });
    if (!verdict.ok || fault === 'bad-signature') return send(401, { error: 'TASKD_ERR_SIGNATURE_INVALID', message: 'Invalid signature.' });
    if (fault === 'error') return send(500, { error: 'internal', message: 'PDOException: database went away' });
    if (fault === 'invalid-json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"tasks": [ <html>');
      return;
    }
    if (fault === 'huge') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      for (let i = 0; i < 40 && !res.destroyed; i += 1) {
        if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      }
      res.end('{}');
      return;
    }
    const finish = /^task\/([1-9]\d*)\/finish$/.exec(route);
    if (finish) {
      if (req.method !== 'POST') return send(405, { error: 'method_not_allowed', message: 'Use POST.' });
      const parsed = z.object({ vid: z.number().int().positive(), reason: z.string().min(1).max(4096) }).safeParse(JSON.parse(raw!.toString('utf8') || 'null'));
      if (!parsed.success) return send(400, { error: 'TASKD_ERR_INVALID_REQUEST', message: parsed.error.issues[0]?.message ?? 'invalid' });
      if (this.failingFinishes.has(Number(finish[1]))) return send(500, { error: 'internal', message: 'PHP Fatal error in this task' });
      const outcome = this.state.finishByService(Number(finish[1]), parsed.data.vid, parsed.data.reason);
      if (outcome.result === 'not_found') return send(404, MODULE_TASK_NOT_FOUND);
      if (outcome.result === 'conflict') return send(409, { error: 'TASKD_ERR_NOT_PROCESSING', status: outcome.status, vid: outcome.vid });
      return send(200, { nid: Number(finish[1]), vid: outcome.vid, status: outcome.status });
    }
    if (route === 'queue') {
      const tasks = this.state.listQueue();
      return send(200, this.reportsQueues ? { tasks, dispatch: this.state.dispatchEnabled, queues: this.state.listQueues() } : { tasks });
    }
    const match = /^task\/([1-9]\d*)$/.exec(route);
    if (match) {
      const task = this.state.getTask(Number(match[1]));
      return task ? send(200, task) : send(404, MODULE_TASK_NOT_FOUND);
    }
    // As hosting_taskd_page_queue() answers extra path parts: a 404 that is not about a task.
    send(404, { error: 'not_found', message: 'No such route.' });
  }

  async #control(req: http.IncomingMessage, url: URL, send: (s: number, b: unknown) => void) {
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const parts = url.pathname.split('/').filter(Boolean).slice(1);
    if (req.method === 'GET' && parts[0] === 'tasks' && parts.length === 1) return send(200, { tasks: [...this.state.tasks.values()] });
    if (req.method === 'POST' && parts[0] === 'tasks' && parts.length === 1) {
      const input = addSchema.parse(body ?? {});
      return send(201, await this.addTask(input));
    }
    if (req.method === 'POST' && parts[0] === 'dispatch' && parts.length === 1) {
      const input = z.object({ pid: z.number().int(), byService: z.boolean(), sawSecrets: z.boolean() }).parse(body);
      return send(200, this.state.dispatch(input));
    }
    if (req.method === 'GET' && parts[0] === 'queues') return send(200, { dispatch: this.state.dispatchEnabled, queues: this.state.listQueues(), runs: this.state.dispatchRuns });
    if (req.method === 'POST' && parts[0] === 'queues' && parts.length === 1) {
      const input = z.object({ name: z.string().min(1), frequency: z.number().int().nonnegative(), last: z.number().int().nonnegative().optional(), enabled: z.boolean().optional() }).parse(body);
      return send(201, this.state.addQueue(input));
    }
    if (req.method === 'POST' && parts[0] === 'fault') {
      const mode = (body as { mode?: Fault | null } | undefined)?.mode ?? null;
      this.fault = mode;
      return send(200, { fault: this.fault });
    }
    const nid = Number(parts[1]);
    const action = parts[2];
    if (req.method === 'GET' && parts[0] === 'tasks' && action === undefined) {
      const task = this.state.tasks.get(nid);
      return task ? send(200, task) : send(404, { error: 'not found' });
    }
    if (req.method !== 'POST' || parts[0] !== 'tasks' || !Number.isSafeInteger(nid)) return send(404, { error: 'not found' });
    if (action === 'claim') {
      const result = this.state.claim(nid);
      return result.ok ? send(200, result.task) : send(409, { message: result.message });
    }
    if (action === 'log') {
      const entry = z.object({ type: z.string(), message: z.string() }).parse(body);
      this.state.addLog(nid, entry.type, entry.message);
      return send(200, {});
    }
    if (action === 'finish') {
      // An explicit status stands for a test's own shortcut; hosting-task's shutdown derives it from the log.
      const status = z.object({ status: z.number().int().optional() }).parse(body ?? {}).status;
      if (status === undefined) this.state.finishFromLog(nid);
      else this.state.finish(nid, status);
      return send(200, this.state.getTask(nid));
    }
    if (action === 'requeue') {
      const task = this.state.requeue(nid);
      if (task && (body as { webhook?: boolean } | undefined)?.webhook !== false) await this.sendWebhook(nid);
      return task ? send(200, task) : send(404, { error: 'not found' });
    }
    if (action === 'delete') return send(this.state.delete(nid) ? 200 : 404, {});
    send(404, { error: 'not found' });
  }
}

async function readRaw(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const text = (await readRaw(req)).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}
