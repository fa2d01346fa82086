import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { contractViolations } from '../contract.js';
import { ADMIN, TEST_SECRET, signedHeaders, testApp, waitFor } from '../helpers.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  expect(contractViolations.splice(0), 'responses the OpenAPI document does not allow').toEqual([]);
});

async function app(env: Record<string, string> = {}, childEnv: Record<string, string> = {}) {
  const built = await testApp(
    { TASKD_SECRET: TEST_SECRET, TASKD_COMMAND: JSON.stringify(['sh', '-c', 'sleep "$SLEEP"', 'task', '{nid}']), TASKD_CONCURRENCY: '2', ...env },
    { env: { ...process.env, SLEEP: '0.05', ...childEnv } },
  );
  apps.push(built.app);
  return built.app;
}

const enqueue = (a: FastifyInstance, task: Record<string, unknown>) => {
  const payload = JSON.stringify(task);
  return a.inject({ method: 'POST', url: '/v1/tasks', payload, headers: signedHeaders(payload) });
};

describe('queue endpoints', () => {
  it('pauses and resumes, and shows depth, running, lanes and limits', async () => {
    const a = await app({}, { SLEEP: '5' });
    expect((await a.inject({ method: 'POST', url: '/v1/queue/pause', headers: ADMIN })).json()).toEqual({ paused: true });
    await enqueue(a, { nid: 1, rid: 10 });
    await enqueue(a, { nid: 2, rid: 10 });
    await enqueue(a, { nid: 3, rid: 11 });
    let queue = (await a.inject({ url: '/v1/queue' })).json();
    expect(queue).toMatchObject({ paused: true, depth: 3, running: 0, laneCount: 2, limits: { concurrency: 2, maxStartsPerMinute: null, maxLoad: null, taskTimeoutSeconds: 7200 } });
    expect((await a.inject({ method: 'POST', url: '/v1/queue/resume', headers: ADMIN })).json()).toEqual({ paused: false });
    // Both leave "starting" once their process has its task.
    queue = await waitFor(async () => {
      const q = (await a.inject({ url: '/v1/queue' })).json();
      return q.running === 2 ? q : null;
    });
    expect(queue).toMatchObject({ paused: false, depth: 1, starting: 0, running: 2 });
    expect(queue.lanes).toEqual(expect.arrayContaining([{ lane: 'rid:10', queued: 1, running: 1 }, { lane: 'rid:11', queued: 0, running: 3 }]));
    expect(queue.reconcile).toEqual({ enabled: false, lastSuccessAt: null, lastError: null, consecutiveFailures: 0 });

    const refused = await a.inject({ method: 'DELETE', url: '/v1/tasks/1', headers: ADMIN });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error).toBe('TASKD_ERR_TASK_RUNNING');
    const stopping = await a.inject({ method: 'DELETE', url: '/v1/tasks/1?force=1', headers: ADMIN });
    expect(stopping.statusCode).toBe(202);
    expect(stopping.json()).toEqual({ nid: 1, state: 'running', stopping: true });
    await waitFor(async () => (await a.inject({ url: '/v1/tasks/1', headers: ADMIN })).json().state === 'cancelled');
    await a.inject({ method: 'DELETE', url: '/v1/tasks/3?force=1', headers: ADMIN });
  });

  it('shows why each queued task waits, in the queue and on the task', async () => {
    const a = await app({ TASKD_CONCURRENCY: '1' }, { SLEEP: '5' });
    await enqueue(a, { nid: 1, rid: 10 });
    await enqueue(a, { nid: 2, rid: 10 });
    await enqueue(a, { nid: 3, rid: 11 });
    const queue = (await a.inject({ url: '/v1/queue' })).json();
    expect(queue.waiting).toEqual([
      { nid: 2, lane: 'rid:10', waitingFor: { reason: 'lane_busy', nid: 1, message: 'its lane rid:10 is busy with task 1' } },
      { nid: 3, lane: 'rid:11', waitingFor: { reason: 'concurrency', limit: 1, message: '1 task runs already (TASKD_CONCURRENCY)' } },
    ]);
    expect((await a.inject({ url: '/v1/tasks/2' , headers: ADMIN })).json().waitingFor).toMatchObject({ reason: 'lane_busy', nid: 1 });
    expect((await a.inject({ url: '/v1/tasks/1' , headers: ADMIN })).json().waitingFor).toBeNull();
    await a.inject({ method: 'DELETE', url: '/v1/tasks/1?force=1' , headers: ADMIN });
  });

  it('answers 409 to a reconcile request when no frontend is configured', async () => {
    const a = await app();
    const response = await a.inject({ method: 'POST', url: '/v1/reconcile', headers: ADMIN });
    expect(response.statusCode).toBe(409);
    expect(response.json().error).toBe('TASKD_ERR_FRONTEND_NOT_CONFIGURED');
  });
});

describe('health endpoints', () => {
  it('answers /healthz, and /readyz only once listening', async () => {
    const a = await app();
    expect((await a.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await a.inject({ url: '/readyz' })).statusCode).toBe(503);
    await a.listen({ port: 0, host: '127.0.0.1' });
    expect((await a.inject({ url: '/readyz' })).json()).toEqual({ ready: true });
    a.taskd.lifecycle.closing = true;
    expect((await a.inject({ url: '/readyz' })).json()).toEqual({ ready: false, reason: 'shutting down' });
  });

  it('exposes queue depth, running, lanes, outcomes and latency histograms in /metrics', async () => {
    const a = await app();
    await enqueue(a, { nid: 5, rid: 1 });
    await waitFor(async () => (await a.inject({ url: '/v1/tasks/5', headers: ADMIN })).json().state === 'succeeded');
    const text = (await a.inject({ url: '/metrics' })).body;
    for (const pattern of [
      /^taskd_queue_depth 0$/m,
      /^taskd_running_tasks 0$/m,
      /^taskd_lanes 0$/m,
      /^taskd_tasks_started_total 1$/m,
      /^taskd_tasks_ended_total\{outcome="succeeded"\} 1$/m,
      /^taskd_tasks_received_total\{source="webhook"\} 1$/m,
      /^taskd_queue_to_start_seconds_count 1$/m,
      /^taskd_run_duration_seconds_count 1$/m,
    ]) {
      expect(text).toMatch(pattern);
    }
  });

  it('answers unknown routes with a JSON 404', async () => {
    const a = await app();
    const response = await a.inject({ url: '/v2/nothing' });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toEqual({ error: 'TASKD_ERR_ROUTE_NOT_FOUND', message: 'No endpoint GET /v2/nothing.' });
  });
});
