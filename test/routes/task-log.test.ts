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

async function listening(command: string[]) {
  const { app } = await testApp({ TASKD_COMMAND: JSON.stringify(command) });
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
});
