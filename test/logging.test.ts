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
});
