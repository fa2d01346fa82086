import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { contractViolations } from '../contract.js';
import { ADMIN, fixture, testApp, waitFor } from '../helpers.js';
import { simulatedAegir } from '../simulation.js';
import { openEventStream } from '../sse.js';

const apps: FastifyInstance[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  for (const app of apps.splice(0)) await app.close();
  expect(contractViolations.splice(0), 'responses the OpenAPI document does not allow').toEqual([]);
});

async function listening(env: Record<string, string> = {}) {
  const { app } = await testApp({ TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), ...env }, { env: { ...process.env, RECORD_FILE: '/dev/null', SLEEP_SECONDS: '0.3' } });
  apps.push(app);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url };
}

type TaskEvent = { nid: number; state: string; waitingFor: { reason: string; nid?: number } | null };

describe('GET /v1/events', () => {
  it('streams each task change, the queue after it and a pause, over real HTTP, with its headers sent at once', async () => {
    const { app, url } = await listening();
    const stream = await openEventStream(`${url}/v1/events`, ADMIN);
    expect(stream.statusCode).toBe(200);
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.headers['x-accel-buffering']).toBe('no');
    await waitFor(() => stream.comments.includes('connected'), { what: 'the first line' });

    // Two tasks of one site: the second waits for the first, then runs, and both end.
    for (const nid of [41, 42]) await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid, rid: 5, type: 'verify' }, headers: ADMIN });
    await waitFor(() => stream.json<TaskEvent>('task').filter((t) => t.state === 'succeeded').length === 2, { timeoutMs: 10_000, what: 'both ends' });
    const states = (nid: number) => stream.json<TaskEvent>('task').filter((t) => t.nid === nid).map((t) => t.state);
    expect(states(41)).toEqual(expect.arrayContaining(['running', 'succeeded']));
    expect(states(42).at(-1)).toBe('succeeded');
    const waiting = stream.json<TaskEvent>('task').find((t) => t.nid === 42 && t.state === 'queued');
    expect(waiting?.waitingFor).toMatchObject({ reason: 'lane_busy', nid: 41 });
    // Each event has a rising id, and the queue event is the queue as GET /v1/queue shows it.
    const ids = stream.events.map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const lastQueue = stream.json<{ depth: number; running: number; paused: boolean }>('queue').at(-1)!;
    expect(Object.keys(lastQueue).sort()).toEqual(Object.keys((await app.inject({ url: '/v1/queue', headers: ADMIN })).json()).sort());

    await app.inject({ method: 'POST', url: '/v1/queue/pause', headers: ADMIN });
    await waitFor(() => stream.json<{ paused: boolean }>('queue').at(-1)?.paused === true, { what: 'the paused queue event' });
    stream.close();
  });

  it('sends a burst of changes as one event per task and one queue event', async () => {
    const { app, url } = await listening();
    app.taskd.scheduler.pause();
    const stream = await openEventStream(`${url}/v1/events`, ADMIN);
    await waitFor(() => stream.comments.includes('connected'));
    for (let nid = 1; nid <= 50; nid += 1) app.taskd.scheduler.submit({ nid, rid: nid, source: 'operator', confirmedAt: null });
    for (let nid = 1; nid <= 50; nid += 1) app.taskd.scheduler.cancel(nid, false);
    await waitFor(() => stream.json('queue').length >= 1, { what: 'the queue event' });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const tasks = stream.json<TaskEvent>('task');
    expect(tasks).toHaveLength(50);
    expect(new Set(tasks.map((t) => t.state))).toEqual(new Set(['cancelled']));
    expect(stream.json('queue')).toHaveLength(1);
    stream.close();
  });

  it('counts as a long-lived answer: refused past TASKD_MAX_STREAMS, ended with a last event when the app closes', async () => {
    const { app, url } = await listening({ TASKD_MAX_STREAMS: '1' });
    const stream = await openEventStream(`${url}/v1/events`, ADMIN);
    await waitFor(() => stream.comments.includes('connected'));
    const second = await request(`${url}/v1/events`, { headers: ADMIN });
    expect(second.statusCode).toBe(503);
    expect(((await second.body.json()) as { error: string }).error).toBe('TASKD_ERR_TOO_MANY_STREAMS');
    const started = Date.now();
    await app.close();
    apps.splice(0);
    await stream.done;
    expect(Date.now() - started).toBeLessThan(2000);
    expect(stream.events.at(-1)?.event).toBe('closing');
  });

  it('frees its place when the client goes away', async () => {
    const { app, url } = await listening({ TASKD_MAX_STREAMS: '1' });
    const first = await openEventStream(`${url}/v1/events`, ADMIN);
    await waitFor(() => first.comments.includes('connected'));
    expect(app.taskd.events.subscribers).toBe(1);
    first.close();
    await waitFor(() => app.taskd.streams.size === 0 && app.taskd.events.subscribers === 0, { what: 'the stream to be released' });
    const again = await openEventStream(`${url}/v1/events`, ADMIN);
    expect(again.statusCode).toBe(200);
    again.close();
  });

  it('needs the admin token, from loopback too', async () => {
    const { url } = await listening();
    for (const headers of [{}, { authorization: 'Bearer not-the-admin-token-at-all' }]) {
      const answer = await request(`${url}/v1/events`, { headers });
      expect(answer.statusCode).toBe(401);
      await answer.body.dump();
    }
  });

  it('tells each reconcile result, and a failed one with its error', async () => {
    const aegir = await simulatedAegir({ TASKD_RECONCILE_INTERVAL: '0.2' });
    closers.push(() => aegir.close());
    const stream = await openEventStream(`${aegir.url}/v1/events`, ADMIN);
    await waitFor(() => stream.json<{ ok: boolean }>('reconcile').some((r) => r.ok), { what: 'a good reconcile' });
    expect(stream.json<{ listed: number }>('reconcile')[0]!.listed).toBe(0);
    aegir.sim.fault = 'error';
    const failed = await waitFor(() => stream.json<{ ok: boolean; error: string }>('reconcile').find((r) => !r.ok), { what: 'a failed reconcile' });
    expect(failed.error).toContain('500');
    stream.close();
  });
});

describe('GET /v1/activity', () => {
  it('has the queue depth and running count of the last hour, and the wait and run time of ended tasks by type', async () => {
    const { app } = await listening();
    app.taskd.scheduler.pause();
    for (const nid of [1, 2, 3]) app.taskd.scheduler.submit({ nid, rid: nid, type: nid === 3 ? 'backup' : 'verify', source: 'operator', confirmedAt: null });
    await waitFor(async () => (await app.inject({ url: '/v1/activity', headers: ADMIN })).json().slots.at(-1).queued === 3, { what: 'three queued' });
    app.taskd.scheduler.resume();
    await waitFor(() => [1, 2, 3].every((nid) => app.taskd.scheduler.get(nid)?.state === 'succeeded'), { timeoutMs: 10_000 });
    const activity = await waitFor(async () => {
      const answer = (await app.inject({ url: '/v1/activity', headers: ADMIN })).json();
      return answer.byType.length === 2 ? answer : null;
    });
    expect(activity.slots).toHaveLength(360);
    expect(activity.slots.at(-1)).toMatchObject({ queued: 0, running: 0 });
    // The three queued were seen in the last slots (the test may cross a slot's edge).
    expect(Math.max(...activity.slots.slice(-3).map((s: { queuedMax: number }) => s.queuedMax))).toBe(3);
    const verify = activity.byType.find((t: { type: string }) => t.type === 'verify');
    expect(verify.count).toBe(2);
    expect(verify.runMedianMs).toBeGreaterThanOrEqual(250);
    expect(verify.waitMedianMs).toBeGreaterThanOrEqual(0);
    expect((await app.inject({ url: '/v1/activity' })).statusCode).toBe(401);
  });
});
