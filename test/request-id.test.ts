import { describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { captureLogs, testConfig } from './helpers.js';

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('x-request-id', () => {
  it("keeps a client's plain id, and replaces anything else instead of echoing or logging it", async () => {
    const { lines, logger } = captureLogs();
    const app = await buildApp({ config: await testConfig(), loggerInstance: logger, defaultMetrics: false, env: process.env });
    const hostile = ['x" injected="1', '} {"level":60,"msg":"forged', 'a'.repeat(4096), '../../etc/passwd', ' lead', 'ünïcode'];
    for (const id of hostile) {
      const response = await app.inject({ url: '/healthz', headers: { 'x-request-id': id } });
      expect(response.headers['x-request-id']).toMatch(uuid);
    }
    const kept = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'req-7f3a.b2:c9_x' } });
    expect(kept.headers['x-request-id']).toBe('req-7f3a.b2:c9_x');
    await app.close();
    const all = lines.join('\n');
    expect(all).toContain('"reqId":"req-7f3a.b2:c9_x"');
    for (const id of hostile) expect(all).not.toContain(JSON.stringify(id).slice(1, -1));
  });
});
