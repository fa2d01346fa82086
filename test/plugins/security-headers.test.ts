import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { contractViolations } from '../contract.js';
import { ADMIN, testApp, waitFor } from '../helpers.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  expect(contractViolations.splice(0)).toEqual([]);
});

const noScripts = (policy: string | string[] | undefined) => {
  expect(typeof policy).toBe('string');
  expect(policy).toMatch(/(^|; )default-src 'none'(;|$)/);
  expect(policy).toMatch(/frame-ancestors 'none'/);
  expect(policy).not.toMatch(/script-src/);
};

describe('security headers', () => {
  it('sends nosniff and a policy that allows no script on a task log and its live follow, and only its own on /docs', async () => {
    const { app } = await testApp({ TASKD_COMMAND: JSON.stringify(['sh', '-c', 'echo "<script>alert(1)</script>"; sleep 0.3', 'x', '{nid}']) });
    apps.push(app);
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    // Swagger UI runs its own files from this service, and nothing inline or from elsewhere.
    for (const url of ['/docs', '/docs/static/swagger-ui-bundle.js']) {
      const docs = await app.inject({ url });
      expect(docs.headers['x-content-type-options']).toBe('nosniff');
      const policy = String(docs.headers['content-security-policy']);
      expect(policy).toMatch(/(^|; )default-src 'none'(;|$)/);
      expect(policy).toMatch(/(^|; )script-src 'self'(;|$)/);
      expect(policy).toMatch(/frame-ancestors 'none'/);
    }

    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: 81 }, headers: ADMIN });
    const follow = await request(`${url}/v1/tasks/81/log?follow=1`, { headers: ADMIN });
    expect(follow.headers['x-content-type-options']).toBe('nosniff');
    noScripts(follow.headers['content-security-policy']);
    expect(await follow.body.text()).toContain('<script>');
    await waitFor(() => app.taskd.scheduler.get(81)?.state === 'succeeded');
    const log = await app.inject({ url: '/v1/tasks/81/log' , headers: ADMIN });
    expect(log.headers['x-content-type-options']).toBe('nosniff');
    noScripts(log.headers['content-security-policy']);
    expect(log.headers['content-security-policy']).not.toMatch(/style-src/);
  });
});
