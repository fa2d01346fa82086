import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, expect } from 'vitest';
import { contractViolations } from '../contract.js';
import { TEST_SECRET, fixture, readRecords, tempDir, testApp } from '../helpers.js';

/**
 * Apps for route tests: the fixture records each run, every app is closed after its test, and every
 * response it sent must have been one the OpenAPI document allows. Call once per test file.
 */
export function useRouteApps() {
  const apps: FastifyInstance[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    expect(contractViolations.splice(0), 'responses the OpenAPI document does not allow').toEqual([]);
  });
  return async function intakeApp(env: Record<string, string> = {}) {
    const recordFile = path.join(await tempDir(), 'records');
    const { app, config } = await testApp(
      { TASKD_SECRET: TEST_SECRET, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), ...env },
      { env: { ...process.env, RECORD_FILE: recordFile, SLEEP_SECONDS: '0.05' } },
    );
    apps.push(app);
    return { app, config, records: () => readRecords(recordFile) };
  };
}

export const body = (value: unknown) => JSON.stringify(value);

export function post(app: FastifyInstance, payload: string, headers: Record<string, string>, remoteAddress = '127.0.0.1') {
  return app.inject({ method: 'POST', url: '/v1/tasks', payload, headers, remoteAddress });
}
