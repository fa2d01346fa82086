import { z } from 'zod';
import { signedHeaders } from './signature.js';
import { Agent, request, undiciErrors } from './undici-parts.js';

/** Aegir's task status codes (hosting_task.task_status). */
export const AegirStatus = { processing: -1, queued: 0, success: 1, error: 2, warning: 3 } as const;

export const aegirTaskSchema = z.object({
  nid: z.number().int().positive(),
  vid: z.number().int().nonnegative().nullable().optional(),
  rid: z.number().int().nonnegative().nullable().optional(),
  type: z.string().nullable().optional(),
  status: z.number().int().min(-1).max(3),
  changed: z.number().int().nullable().optional(),
  executed: z.number().int().nullable().optional(),
  delta: z.number().nullable().optional(),
});
export type AegirTask = z.output<typeof aegirTaskSchema>;

const queueSchema = z.object({ tasks: z.array(aegirTaskSchema) });

/**
 * What hosting_taskd answers for a nid it has no task for (hosting_taskd_page_task() in
 * hosting_taskd.module, through drupal_json_output()): the only 404 that means "Aegir has no such
 * task". Any other 404 (a wrong TASKD_FRONTEND_URL, a proxy's or Drupal's own HTML page) says nothing
 * about the task, so taking it for "no such task" would cancel or fail tasks Aegir still has.
 */
export const MODULE_TASK_NOT_FOUND = { error: 'not_found', message: 'No task with that node id.' } as const;

function isModuleNotFound(contentType: string | string[] | undefined, text: string): boolean {
  const type = Array.isArray(contentType) ? contentType[0] : contentType;
  if (!type || !/^application\/json\b/i.test(type)) return false;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return false;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
  const { error, message } = body as Record<string, unknown>;
  return error === MODULE_TASK_NOT_FOUND.error && message === MODULE_TASK_NOT_FOUND.message;
}

/** One of hosting's other queues as the module lists it (hosting_get_queues(), hosting.queues.inc); times in unix seconds. */
export const hostingQueueSchema = z.object({
  name: z.string().min(1).max(128),
  enabled: z.boolean(),
  last: z.number().int().nonnegative(),
  frequency: z.number().int().nonnegative(),
  next: z.number().int().nonnegative(),
});
export type HostingQueue = z.output<typeof hostingQueueSchema>;

const dispatchPartSchema = z.object({ dispatch: z.boolean(), queues: z.array(hostingQueueSchema) });

/** What the queue listing says about hosting's dispatcher: hosting_dispatch_enabled and the other queues' due times. */
export interface DispatchListing {
  enabled: boolean;
  queues: HostingQueue[];
}

/**
 * The whole queue listing. `dispatch` is null when the module does not report the queues (an older
 * hosting_taskd) or reports them in a shape we cannot read (`dispatchError` says how): tasks still
 * reconcile, only dispatching waits.
 */
export interface QueueListing {
  tasks: AegirTask[];
  dispatch: DispatchListing | null;
  dispatchError: string | null;
}

export type FrontendErrorKind = 'unreachable' | 'timeout' | 'unauthorized' | 'http_status' | 'bad_response' | 'too_large';

export class FrontendError extends Error {
  constructor(
    readonly kind: FrontendErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'FrontendError';
  }
}

/** The kind a failed call to the frontend is counted under; anything but a FrontendError is a bug. */
export function frontendErrorKind(error: unknown): FrontendErrorKind | 'unexpected' {
  return error instanceof FrontendError ? error.kind : 'unexpected';
}

/** What POST {base}/task/{nid}/finish answered: finished (Aegir's new status), not processing at that vid (nothing changed), or no such task. */
export type FinishAnswer = { kind: 'finished'; status: number; vid: number } | { kind: 'not_processing'; status: number | null; vid: number | null } | { kind: 'not_found' };

const finishedSchema = z.object({ nid: z.number().int(), vid: z.number().int(), status: z.number().int() });
const notProcessingSchema = z.object({ error: z.literal('TASKD_ERR_NOT_PROCESSING'), status: z.number().int().nullable().optional(), vid: z.number().int().nullable().optional() });

/** The module's limit on a reason (HOSTING_TASKD_MAX_REASON). */
export const MAX_FINISH_REASON_BYTES = 4096;

/** What the scheduler and the reconciler need from Aegir. */
export interface Frontend {
  listQueue(): Promise<AegirTask[]>;
  /** The listing with the dispatcher's part; a frontend without it is read through listQueue() (see readQueueListing). */
  readQueue?(): Promise<QueueListing>;
  getTask(nid: number): Promise<AegirTask | null>;
  /** Finishes a task whose drush is dead, through Aegir's own hosting_task_update_status(); optional for fakes that cannot write. */
  finishTask?(nid: number, vid: number, reason: string): Promise<FinishAnswer>;
  close(): Promise<void>;
}

export interface FrontendOptions {
  baseUrl: string;
  key: Buffer;
  connectTimeoutMs?: number;
  responseTimeoutMs?: number;
  maxResponseBytes?: number;
}

/** undici client for the hosting_taskd module's endpoints; every request is signed with the route string as payload. */
export class HttpFrontend implements Frontend {
  readonly #agent: Agent;
  readonly #maxBytes: number;
  readonly #timeoutMs: number;

  constructor(private readonly options: FrontendOptions) {
    this.#timeoutMs = options.responseTimeoutMs ?? 10_000;
    this.#maxBytes = options.maxResponseBytes ?? 16 * 1024 * 1024;
    this.#agent = new Agent({
      connect: { timeout: options.connectTimeoutMs ?? 3_000 },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      keepAliveTimeout: 30_000,
      connections: 4,
    });
  }

  async listQueue(): Promise<AegirTask[]> {
    return (await this.readQueue()).tasks;
  }

  async readQueue(): Promise<QueueListing> {
    const body = await this.#get('queue');
    const parsed = queueSchema.safeParse(body);
    if (!parsed.success) throw new FrontendError('bad_response', `GET queue: unexpected JSON: ${describeIssue(parsed.error)}`);
    return { tasks: parsed.data.tasks, ...parseDispatchPart(body as Record<string, unknown>) };
  }

  async getTask(nid: number): Promise<AegirTask | null> {
    const body = await this.#get(`task/${nid}`, true);
    if (body === null) return null;
    const parsed = aegirTaskSchema.safeParse(body);
    if (!parsed.success) throw new FrontendError('bad_response', `GET task/${nid}: unexpected JSON: ${describeIssue(parsed.error)}`);
    if (parsed.data.nid !== nid) throw new FrontendError('bad_response', `GET task/${nid}: answered for nid ${parsed.data.nid}`);
    return parsed.data;
  }

  async finishTask(nid: number, vid: number, reason: string): Promise<FinishAnswer> {
    const route = `task/${nid}/finish`;
    const payload = JSON.stringify({ vid, reason: truncateUtf8(reason, MAX_FINISH_REASON_BYTES) });
    const { statusCode, headers, text } = await this.#send('POST', route, payload);
    if (statusCode === 404 && isModuleNotFound(headers['content-type'], text)) return { kind: 'not_found' };
    const json = statusCode === 200 || statusCode === 409 ? parseJson(text) : undefined;
    if (statusCode === 200) {
      const parsed = finishedSchema.safeParse(json);
      if (!parsed.success) throw new FrontendError('bad_response', `POST ${route}: unexpected JSON: ${describeIssue(parsed.error)}`);
      return { kind: 'finished', status: parsed.data.status, vid: parsed.data.vid };
    }
    if (statusCode === 409) {
      const parsed = notProcessingSchema.safeParse(json);
      if (parsed.success) return { kind: 'not_processing', status: parsed.data.status ?? null, vid: parsed.data.vid ?? null };
    }
    throw statusError('POST', route, statusCode);
  }

  close(): Promise<void> {
    return this.#agent.close();
  }

  /** One signed request: GETs sign their route string, a POST its raw body. */
  async #send(method: 'GET' | 'POST', route: string, payload?: string): Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; text: string }> {
    const url = `${this.options.baseUrl}/${route}`;
    let response;
    try {
      response = await request(url, {
        method,
        dispatcher: this.#agent,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          ...signedHeaders(this.options.key, payload ?? route),
        },
        ...(payload === undefined ? {} : { body: payload }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      throw toFrontendError(`${method} ${route}`, error);
    }
    const { statusCode, body, headers } = response;
    try {
      return { statusCode, headers, text: await readCapped(body, this.#maxBytes, `${method} ${route}`) };
    } catch (error) {
      throw error instanceof FrontendError ? error : toFrontendError(`${method} ${route}`, error);
    }
  }

  async #get(route: string, notFoundIsNull = false): Promise<unknown> {
    const { statusCode, headers, text } = await this.#send('GET', route);
    if (statusCode === 404 && notFoundIsNull && isModuleNotFound(headers['content-type'], text)) return null;
    if (statusCode !== 200) throw statusError('GET', route, statusCode);
    const json = parseJson(text);
    if (json === undefined) throw new FrontendError('bad_response', `GET ${route}: the answer is not JSON`);
    return json;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Every answer but the expected ones is the frontend failing, never "no such task". */
function statusError(method: string, route: string, statusCode: number): FrontendError {
  if (statusCode === 404) {
    return new FrontendError('http_status', `${method} ${route}: HTTP 404 that is not hosting_taskd's answer (check TASKD_FRONTEND_URL and any proxy in front of Aegir)`);
  }
  if (statusCode === 401 || statusCode === 403) {
    return new FrontendError('unauthorized', `${method} ${route}: the frontend refused our signature (HTTP ${statusCode}); check that hosting_taskd_secret equals TASKD_SECRET`);
  }
  return new FrontendError('http_status', `${method} ${route}: HTTP ${statusCode}`);
}

/** At most maxBytes of UTF-8, cut at a character boundary. */
function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text);
  if (bytes.length <= maxBytes) return text;
  return bytes.subarray(0, maxBytes).toString('utf8').replace(/\uFFFD$/, '');
}

/** The listing's dispatch part, read apart from the tasks: a fault in it must not stop tasks from reconciling. */
function parseDispatchPart(body: Record<string, unknown>): Pick<QueueListing, 'dispatch' | 'dispatchError'> {
  if (!('dispatch' in body) && !('queues' in body)) return { dispatch: null, dispatchError: 'the queue listing has no "dispatch" and "queues" (hosting_taskd older than the service?)' };
  const parsed = dispatchPartSchema.safeParse(body);
  if (!parsed.success) return { dispatch: null, dispatchError: `the queue listing's "dispatch"/"queues" are unreadable: ${describeIssue(parsed.error)}` };
  return { dispatch: { enabled: parsed.data.dispatch, queues: parsed.data.queues }, dispatchError: null };
}

/** The listing from any Frontend: one without readQueue() reports no dispatch part. */
export async function readQueueListing(frontend: Frontend): Promise<QueueListing> {
  if (frontend.readQueue) return frontend.readQueue();
  return { tasks: await frontend.listQueue(), dispatch: null, dispatchError: 'this frontend client does not read the queues' };
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }, maxBytes: number, route: string): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > maxBytes) {
      body.destroy();
      throw new FrontendError('too_large', `${route}: the answer is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function toFrontendError(route: string, error: unknown): FrontendError {
  const err = error as Error & { code?: string };
  if (
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError ||
    err.name === 'TimeoutError' ||
    err.name === 'AbortError'
  ) {
    return new FrontendError('timeout', `${route}: timed out`);
  }
  return new FrontendError('unreachable', `${route}: ${err.code ?? err.name}: ${err.message}`);
}

function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid';
}
