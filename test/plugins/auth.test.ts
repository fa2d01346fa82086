import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { contractViolations } from '../contract.js';
import { ADMIN, ADMIN_TOKEN, fixture, readRecords, tempDir, testApp } from '../helpers.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  expect(contractViolations.splice(0), 'responses the OpenAPI document does not allow').toEqual([]);
});

/** Reads that stay open to loopback clients: states and counts, never a task's output. */
const OPEN_ON_LOOPBACK = ['GET /v1/queue', 'GET /v1/tasks'];
/** Open to anyone who can reach the port: no task data and no secret. */
const PUBLIC = ['GET /healthz', 'GET /readyz', 'GET /metrics', 'GET /openapi.yaml', 'GET /docs'];

async function app(env: Record<string, string> = {}) {
  const records = path.join(await tempDir(), 'records');
  const built = await testApp({ TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), ...env }, { env: { ...process.env, RECORD_FILE: records } });
  apps.push(built.app);
  await built.app.ready();
  return { app: built.app, records: () => readRecords(records) };
}

/** Every operation of the document, so an endpoint added later is held to the same rule. */
function operations(a: FastifyInstance): Array<{ key: string; method: string; url: string }> {
  const document = a.swagger() as { paths: Record<string, Record<string, unknown>> };
  return Object.entries(document.paths).flatMap(([route, methods]) =>
    Object.keys(methods).map((method) => ({ key: `${method.toUpperCase()} ${route}`, method: method.toUpperCase(), url: route.replace(/\{\w+\}/g, '7') })),
  );
}

const json = { 'content-type': 'application/json' };

describe('operator access', () => {
  it('refuses every change and every read of task output to a loopback client without the token, and runs nothing', async () => {
    for (const token of [ADMIN_TOKEN, '']) {
      const { app: a, records } = await app({ TASKD_ADMIN_TOKEN: token });
      a.taskd.scheduler.pause();
      a.taskd.scheduler.submit({ nid: 7, rid: 1, source: 'operator', confirmedAt: null });
      const guarded = operations(a).filter((op) => !OPEN_ON_LOOPBACK.includes(op.key) && !PUBLIC.includes(op.key));
      expect(guarded.map((op) => op.key)).toEqual(
        expect.arrayContaining(['POST /v1/tasks', 'DELETE /v1/tasks/{nid}', 'POST /v1/queue/pause', 'POST /v1/queue/resume', 'POST /v1/reconcile', 'GET /v1/tasks/{nid}', 'GET /v1/tasks/{nid}/log']),
      );
      for (const op of guarded) {
        for (const remoteAddress of ['127.0.0.1', '::1', '::ffff:127.0.0.1']) {
          for (const headers of [json, { ...json, authorization: 'Bearer not-the-admin-token-at-all' }, { ...json, authorization: 'Basic YWRtaW46YWRtaW4=' }]) {
            const payload = op.method === 'POST' ? JSON.stringify({ nid: 8, rid: 2 }) : undefined;
            const response = await a.inject({ method: op.method as 'GET', url: op.url, headers, remoteAddress, ...(payload ? { payload } : {}) });
            expect(response.statusCode, `${op.key} from ${remoteAddress} with ${JSON.stringify(headers)}`).toBe(401);
          }
        }
      }
      // Nothing changed: the task is still queued, the queue still paused, nothing new queued or run.
      expect(a.taskd.scheduler.get(7)?.state).toBe('queued');
      expect(a.taskd.scheduler.get(8)).toBeUndefined();
      expect(a.taskd.scheduler.stats().paused).toBe(true);
      expect(await records()).toEqual([]);
    }
  });

  it('lets the token through for every change, from anywhere', async () => {
    const { app: a } = await app();
    a.taskd.scheduler.pause();
    for (const [method, url, payload] of [
      ['POST', '/v1/tasks', JSON.stringify({ nid: 9, rid: 3 })],
      ['DELETE', '/v1/tasks/9', undefined],
      ['POST', '/v1/queue/resume', undefined],
      ['POST', '/v1/queue/pause', undefined],
    ] as const) {
      const response = await a.inject({ method, url, headers: { ...json, ...ADMIN }, remoteAddress: '192.0.2.7', ...(payload ? { payload } : {}) });
      expect(response.statusCode, `${method} ${url}`).toBeLessThan(300);
    }
    // No frontend: the request is authorised, and then refused for what it is.
    expect((await a.inject({ method: 'POST', url: '/v1/reconcile', headers: ADMIN })).json().error).toBe('TASKD_ERR_FRONTEND_NOT_CONFIGURED');
  });

  it('keeps queue and task states readable on loopback without the token, and nowhere else', async () => {
    const { app: a } = await app();
    for (const url of ['/v1/queue', '/v1/tasks']) {
      expect((await a.inject({ url })).statusCode, url).toBe(200);
      expect((await a.inject({ url, remoteAddress: '192.0.2.7' })).statusCode, url).toBe(401);
      expect((await a.inject({ url, remoteAddress: '192.0.2.7', headers: ADMIN })).statusCode, url).toBe(200);
    }
    for (const route of PUBLIC) {
      const url = route.split(' ')[1]!;
      expect((await a.inject({ url, remoteAddress: '192.0.2.7' })).statusCode, url).not.toBe(401);
    }
  });
});
