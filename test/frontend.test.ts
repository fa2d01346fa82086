import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FrontendError, HttpFrontend } from '../src/frontend.js';
import { FakeFrontend, type Fault } from '../src/simulation/fake-frontend.js';
import { generateSecret, parseSecret } from '../src/signature.js';
import { TEST_KEY } from './helpers.js';

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function setup(options: { key?: Buffer; responseTimeoutMs?: number; maxResponseBytes?: number } = {}) {
  const sim = new FakeFrontend({ key: TEST_KEY, slowMs: 2000 });
  await sim.listen();
  const client = new HttpFrontend({ baseUrl: sim.baseUrl, key: options.key ?? TEST_KEY, responseTimeoutMs: options.responseTimeoutMs ?? 5000, maxResponseBytes: options.maxResponseBytes ?? 1024 * 1024 });
  closers.push(() => sim.close(), () => client.close());
  return { sim, client };
}

async function failure(promise: Promise<unknown>): Promise<FrontendError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(FrontendError);
    return error as FrontendError;
  }
  throw new Error('expected a FrontendError');
}

describe('HttpFrontend', () => {
  it('lists the queue and looks up a task, signing each request with the route as payload', async () => {
    const { sim, client } = await setup();
    const a = sim.state.addTask({ rid: 5 });
    sim.state.addTask({ rid: 6 });
    const queue = await client.listQueue();
    expect(queue.map((t) => t.nid)).toEqual([a.nid, a.nid + 1]);
    expect(await client.getTask(a.nid)).toMatchObject({ nid: a.nid, rid: 5, status: 0 });
    expect(await client.getTask(999_999)).toBeNull();
  });

  it("reads hosting's queues beside the tasks, and keeps the tasks when the queues are missing or unreadable", async () => {
    const { sim, client } = await setup();
    const task = sim.state.addTask({ rid: 5 });
    sim.state.addQueue({ name: 'cron', frequency: 600, last: 1_764_300_000 });
    sim.state.addQueue({ name: 'backup', frequency: 86_400, last: 0, enabled: false });
    expect(await client.readQueue()).toEqual({
      tasks: [expect.objectContaining({ nid: task.nid })],
      dispatch: {
        enabled: true,
        queues: [
          { name: 'cron', enabled: true, last: 1_764_300_000, frequency: 600, next: 1_764_300_600 },
          { name: 'backup', enabled: false, last: 0, frequency: 86_400, next: 86_400 },
        ],
      },
      dispatchError: null,
    });
    sim.reportsQueues = false;
    const older = await client.readQueue();
    expect(older.tasks.map((t) => t.nid)).toEqual([task.nid]);
    expect(older).toMatchObject({ dispatch: null, dispatchError: expect.stringMatching(/no "dispatch" and "queues"/) });
    sim.reportsQueues = true;
    sim.state.addQueue({ name: 'broken', frequency: -5 });
    const unreadable = await client.readQueue();
    expect(unreadable.tasks.map((t) => t.nid)).toEqual([task.nid]);
    expect(unreadable).toMatchObject({ dispatch: null, dispatchError: expect.stringMatching(/^the queue listing's "dispatch"\/"queues" are unreadable: queues\.2\.frequency/) });
  });

  it.each<[Fault, FrontendError['kind'], RegExp]>([
    ['error', 'http_status', /^GET queue: HTTP 500$/],
    ['invalid-json', 'bad_response', /not JSON/],
    ['huge', 'too_large', /larger than 1048576 bytes/],
    ['bad-signature', 'unauthorized', /check that hosting_taskd_secret equals TASKD_SECRET/],
    ['down', 'unreachable', /^GET queue: /],
  ])('turns a frontend fault "%s" into a %s error', async (fault, kind, message) => {
    const { sim, client } = await setup();
    sim.fault = fault;
    const error = await failure(client.listQueue());
    expect(error.kind).toBe(kind);
    expect(error.message).toMatch(message);
  });

  it('gives up on a slow frontend after the response timeout', async () => {
    const { sim, client } = await setup({ responseTimeoutMs: 200 });
    sim.fault = 'slow';
    expect((await failure(client.listQueue())).kind).toBe('timeout');
  });

  it('is refused by a frontend holding another secret', async () => {
    const { client } = await setup({ key: parseSecret(generateSecret()) });
    expect((await failure(client.getTask(1))).kind).toBe('unauthorized');
  });

  it('reports a refused connection as unreachable', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const client = new HttpFrontend({ baseUrl: `http://127.0.0.1:${port}/hosting/taskd`, key: TEST_KEY });
    closers.push(() => client.close());
    const error = await failure(client.listQueue());
    expect(error.kind).toBe('unreachable');
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it("takes only hosting_taskd's own not-found answer for 'no such task'; a proxy's 404 page or a wrong base URL is a frontend error", async () => {
    const { sim, client } = await setup();
    const task = sim.state.addTask({ rid: 1 });
    expect(await client.getTask(999_999)).toBeNull();
    sim.fault = 'proxy-404';
    const proxied = await failure(client.getTask(task.nid));
    expect(proxied.kind).toBe('http_status');
    expect(proxied.message).toMatch(/HTTP 404 that is not hosting_taskd's answer.*TASKD_FRONTEND_URL/);
    sim.fault = null;
    const misdirected = new HttpFrontend({ baseUrl: `${sim.url}/hosting/taskd-typo`, key: TEST_KEY });
    closers.push(() => misdirected.close());
    expect((await failure(misdirected.getTask(task.nid))).kind).toBe('http_status');
  });

  it('refuses an answer that is JSON of the wrong shape', async () => {
    const { sim, client } = await setup();
    const task = sim.state.addTask({ rid: 1 });
    task.status = 9;
    expect((await failure(client.getTask(task.nid))).kind).toBe('bad_response');
  });
});
