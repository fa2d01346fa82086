import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { HttpFrontend } from '../src/frontend.js';
import { FakeFrontend } from '../src/simulation/fake-frontend.js';
import { ADMIN, ADMIN_TOKEN, TEST_KEY, TEST_SECRET, repoRoot, testConfig } from './helpers.js';

export const fakeHostingTask = path.join(repoRoot, 'dist', 'simulation', 'fake-hosting-task.js');

/** A simulated Aegir frontend and a service wired to it, listening on loopback. */
export async function simulatedAegir(env: Record<string, string> = {}, options: { retryDelaysMs?: number[]; slowMs?: number; frontendTimeoutMs?: number } = {}) {
  const sim = new FakeFrontend({ key: TEST_KEY, slowMs: options.slowMs ?? 3000 });
  await sim.listen();
  const config = await testConfig({
    TASKD_SECRET: TEST_SECRET,
    TASKD_FRONTEND_URL: sim.baseUrl,
    TASKD_COMMAND: JSON.stringify([process.execPath, fakeHostingTask, '{nid}']),
    TASKD_RECONCILE_INTERVAL: '0.2',
    TASKD_CONCURRENCY: '4',
    ...env,
  });
  const timeoutMs = options.frontendTimeoutMs;
  const app: FastifyInstance = await buildApp({
    config,
    ...(timeoutMs ? { frontend: new HttpFrontend({ baseUrl: sim.baseUrl, key: TEST_KEY, responseTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs }) } : {}),
    defaultMetrics: false,
    env: { ...process.env, AEGIR_SIM_URL: sim.url },
    retryDelaysMs: options.retryDelaysMs ?? [50, 100],
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  sim.serviceUrl = url;
  return {
    sim,
    app,
    config,
    url,
    task: async (nid: number) => (await app.inject({ url: `/v1/tasks/${nid}`, headers: ADMIN })).json(),
    async close() {
      await app.close();
      await sim.close();
    },
  };
}

/** The environment for a service process wired to a simulated Aegir. */
export function serviceEnvFor(sim: FakeFrontend, logDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TASKD_SECRET: TEST_SECRET,
    TASKD_ADMIN_TOKEN: ADMIN_TOKEN,
    TASKD_LOG_DIR: logDir,
    TASKD_FRONTEND_URL: sim.baseUrl,
    TASKD_COMMAND: JSON.stringify([process.execPath, fakeHostingTask, '{nid}']),
    TASKD_RECONCILE_INTERVAL: '0.3',
    TASKD_CONCURRENCY: '4',
    AEGIR_SIM_URL: sim.url,
    ...extra,
  };
}
