import { describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ADMIN_TOKEN, TEST_SECRET, captureLogs, signedHeaders, testConfig, waitFor } from './helpers.js';

describe('logs', () => {
  it('never contain the secret, the admin token or a signature, whatever the request', async () => {
    const { lines, logger } = captureLogs();
    const config = await testConfig({
      TASKD_SECRET: TEST_SECRET,
      TASKD_ADMIN_TOKEN: ADMIN_TOKEN,
      TASKD_COMMAND: JSON.stringify(['sh', '-c', 'echo "$TASKD_SECRET$TASKD_ADMIN_TOKEN"; exit 2', 'x', '{nid}']),
      TASKD_LOG_LEVEL: 'trace',
    });
    const app = await buildApp({ config, loggerInstance: logger, defaultMetrics: false, env: { ...process.env, TASKD_SECRET: TEST_SECRET, TASKD_ADMIN_TOKEN: ADMIN_TOKEN } });
    app.log.info({ config }, 'configuration');
    const payload = JSON.stringify({ nid: 77 });
    const headers = signedHeaders(payload);
    await app.inject({ method: 'POST', url: '/v1/tasks', payload, headers });
    await app.inject({ method: 'POST', url: '/v1/tasks', payload, headers: { ...headers, 'webhook-signature': 'v1,' + 'A'.repeat(43) + '=' } });
    await app.inject({ method: 'GET', url: '/v1/tasks/77', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await app.inject({ method: 'GET', url: '/v1/queue', headers: { authorization: 'Bearer wrong-token-attempt' } });
    await waitFor(() => app.taskd.scheduler.get(77)?.state === 'failed');
    await app.close();
    const all = lines.join('\n');
    expect(lines.length).toBeGreaterThan(5);
    expect(all).toContain('"nid":77');
    for (const secret of [TEST_SECRET, TEST_SECRET.slice(6), ADMIN_TOKEN, headers['webhook-signature'].slice(3), 'wrong-token-attempt']) {
      expect(all).not.toContain(secret);
    }
  });

  it('at the default level, write the task lifecycle and refusals but no line per successful request', async () => {
    const { lines, logger } = captureLogs();
    const config = await testConfig({ TASKD_SECRET: TEST_SECRET, TASKD_COMMAND: JSON.stringify(['true', '{nid}']), TASKD_LOG_LEVEL: 'info' });
    expect(config.logLevel).toBe('info');
    logger.level = config.logLevel;
    const app = await buildApp({ config, loggerInstance: logger, defaultMetrics: false, env: process.env });
    for (let nid = 1; nid <= 20; nid += 1) {
      const payload = JSON.stringify({ nid, rid: nid });
      expect((await app.inject({ method: 'POST', url: '/v1/tasks', payload, headers: signedHeaders(payload) })).statusCode).toBe(202);
    }
    await waitFor(() => app.taskd.scheduler.stats().running === 0 && app.taskd.scheduler.stats().queued === 0, { what: 'every task to end' });
    for (let i = 0; i < 50; i += 1) await app.inject({ url: '/v1/queue' });
    await app.inject({ url: '/healthz' });
    await app.inject({ url: '/no/such/page' });
    await app.inject({ method: 'POST', url: '/v1/queue/pause' });
    await app.close();
    const messages = lines.map((l) => JSON.parse(l) as { msg: string; statusCode?: number; level: number });
    expect(messages.filter((m) => m.msg === 'task started')).toHaveLength(20);
    expect(messages.filter((m) => m.msg === 'task ended')).toHaveLength(20);
    expect(messages.filter((m) => m.msg === 'request completed')).toEqual([]);
    expect(messages.filter((m) => m.msg === 'request refused').map((m) => m.statusCode)).toEqual([401]);
    // 20 webhooks and 52 reads wrote no line of their own: the lifecycle is what an operator reads.
    expect(messages.length).toBeLessThan(45);
  });
});
