import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { contractViolations } from '../contract.js';
import { ADMIN, testApp, waitFor } from '../helpers.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  expect(contractViolations.splice(0)).toEqual([]);
});

async function listening(command: string[], env: Record<string, string> = {}) {
  const { app } = await testApp({ TASKD_COMMAND: JSON.stringify(command), ...env });
  apps.push(app);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url };
}

const printsSlowly = ['sh', '-c', 'for i in 1 2 3 4 5; do echo "line $i"; sleep 0.15; done', 'x', '{nid}'];

describe('GET /v1/tasks/{nid}/log', () => {
  it('follows the output as it is written and ends when the task ends', async () => {
    const { app, url } = await listening(printsSlowly);
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 61, rid: 1 }, headers: ADMIN });
    const response = await request(`${url}/v1/tasks/61/log?follow=1`, { headers: ADMIN });
    expect(response.headers['content-type']).toMatch(/^text\/plain/);
    const chunks: Array<{ text: string; state: string }> = [];
    for await (const chunk of response.body) chunks.push({ text: chunk.toString(), state: app.taskd.scheduler.get(61)!.state });
    const text = chunks.map((c) => c.text).join('');
    expect(text.match(/^line \d$/gm)).toEqual(['line 1', 'line 2', 'line 3', 'line 4', 'line 5']);
    // Output arrived while the task was still running: it was streamed, not collected.
    expect(chunks.some((c) => c.state === 'running' && c.text.includes('line 1'))).toBe(true);
    expect(app.taskd.scheduler.get(61)!.state).toBe('succeeded');
  });

  it('returns the whole log without follow, and 404 for an unknown task', async () => {
    const { app } = await listening(['sh', '-c', 'echo hello; echo oops >&2', 'x', '{nid}']);
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 62 }, headers: ADMIN });
    await waitFor(() => app.taskd.scheduler.get(62)?.state === 'succeeded');
    const log = await app.inject({ url: '/v1/tasks/62/log', headers: ADMIN });
    expect(log.body).toMatch(/hello\noops\n$/);
    expect((await app.inject({ url: '/v1/tasks/63/log', headers: ADMIN })).statusCode).toBe(404);
  });

  it('stops following at once when the client goes away', async () => {
    const { app, url } = await listening(['sh', '-c', 'echo start; sleep 5', 'x', '{nid}']);
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 64 }, headers: ADMIN });
    const controller = new AbortController();
    const response = await request(`${url}/v1/tasks/64/log?follow=1`, { signal: controller.signal, headers: ADMIN });
    const iterator = response.body[Symbol.asyncIterator]();
    expect((await iterator.next()).value.toString()).toContain('start');
    const followers = async () => /^taskd_log_followers (\d+)$/m.exec((await app.inject({ url: '/metrics' })).body)![1];
    expect(await followers()).toBe('1');
    controller.abort();
    await waitFor(async () => (await followers()) === '0', { what: 'the follower to be released' });
    app.taskd.scheduler.cancel(64, true);
  });

  it('sends its headers at once, before the task has printed anything (a queued task too)', async () => {
    const { app, url } = await listening(['sh', '-c', 'sleep 5', 'x', '{nid}']);
    app.taskd.scheduler.pause();
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 65 }, headers: ADMIN });
    const startedAt = Date.now();
    const response = await request(`${url}/v1/tasks/65/log?follow=1`, { signal: AbortSignal.timeout(3000), headers: ADMIN });
    expect(response.statusCode).toBe(200);
    expect(Date.now() - startedAt).toBeLessThan(1000);
    response.body.destroy();
    app.taskd.scheduler.cancel(65, true);
  });

  it('caps follows per task (429) and in all (503), and makes room as they close', async () => {
    const { app, url } = await listening(['sh', '-c', 'sleep 5', 'x', '{nid}'], { TASKD_MAX_STREAMS: '3', TASKD_MAX_STREAMS_PER_TASK: '2' });
    app.taskd.scheduler.pause();
    for (const nid of [66, 67]) await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid }, headers: ADMIN });
    const follow = (nid: number) => request(`${url}/v1/tasks/${nid}/log?follow=1`, { signal: AbortSignal.timeout(3000), headers: ADMIN });
    const open = [await follow(66), await follow(66)];
    expect(open.map((r) => r.statusCode)).toEqual([200, 200]);
    const perTask = await follow(66);
    expect(perTask.statusCode).toBe(429);
    expect(((await perTask.body.json()) as { error: string }).error).toBe('TASKD_ERR_TOO_MANY_TASK_STREAMS');
    open.push(await follow(67));
    expect(open[2]!.statusCode).toBe(200);
    const total = await follow(67);
    expect(total.statusCode).toBe(503);
    expect(((await total.body.json()) as { error: string }).error).toBe('TASKD_ERR_TOO_MANY_STREAMS');
    open[0]!.body.destroy();
    await waitFor(() => app.taskd.streams.size === 2, { what: 'the closed follow to be released' });
    const again = await follow(66);
    expect(again.statusCode).toBe(200);
    for (const r of [...open, again]) r.body.destroy();
    for (const nid of [66, 67]) app.taskd.scheduler.cancel(nid, true);
  });

  it('ends every follow, of a queued and of a running task, when the app closes', async () => {
    const { app, url } = await listening(['sh', '-c', 'echo started; sleep 5', 'x', '{nid}'], { TASKD_CONCURRENCY: '1' });
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 68, rid: 1 }, headers: ADMIN });
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 69, rid: 1 }, headers: ADMIN });
    await waitFor(async () => (await app.inject({ url: '/v1/tasks/68/log' , headers: ADMIN })).body.includes('started\n'), { what: 'the running task to print' });
    const texts = Promise.all([68, 69].map(async (nid) => (await request(`${url}/v1/tasks/${nid}/log?follow=1`, { headers: ADMIN })).body.text()));
    await waitFor(() => app.taskd.streams.size === 2, { what: 'both follows to be open' });
    const startedAt = Date.now();
    await app.close();
    expect(Date.now() - startedAt).toBeLessThan(2000);
    const [running, queued] = await texts;
    expect(running).toMatch(/^--- aegir-taskd: attempt started .*\nstarted\n--- aegir-taskd: the service is stopping; this follow ends here, the task goes on\n$/);
    expect(queued).toBe('--- aegir-taskd: the service is stopping; this follow ends here, the task goes on\n');
  });

  it('cuts the read of a whole log by a client that stopped reading when the app closes, instead of waiting for it', async () => {
    const { app, url } = await listening(['sh', '-c', 'head -c 50000000 /dev/zero | tr "\\0" x', 'x', '{nid}']);
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 70 }, headers: ADMIN });
    await waitFor(() => app.taskd.scheduler.get(70)?.state === 'succeeded', { timeoutMs: 20_000 });
    const response = await request(`${url}/v1/tasks/70/log`, { headers: ADMIN });
    expect(response.statusCode).toBe(200);
    // The client reads nothing: the socket fills and the answer stalls.
    await waitFor(() => app.taskd.streams.size === 1, { what: 'the read to be registered' });
    const startedAt = Date.now();
    await app.close();
    expect(Date.now() - startedAt).toBeLessThan(3000);
    await expect(response.body.text()).rejects.toThrow();
  });
});
