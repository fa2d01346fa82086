import path from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { HttpFrontend } from '../src/frontend.js';
import { createMetrics } from '../src/metrics.js';
import { FakeFrontend } from '../src/simulation/fake-frontend.js';
import { ADMIN, ADMIN_TOKEN, TEST_KEY, TEST_SECRET, repoRoot, testConfig } from './helpers.js';

export const fakeHostingTask = path.join(repoRoot, 'dist', 'simulation', 'fake-hosting-task.js');
export const fakeHostingDispatch = path.join(repoRoot, 'dist', 'simulation', 'fake-hosting-dispatch.js');
/** TASKD_DISPATCH_COMMAND for the simulated hosting-dispatch. */
export const fakeDispatchCommand = JSON.stringify([process.execPath, fakeHostingDispatch]);

/**
 * The simulated frontend alone and a client of it with short timeouts, for a room of the service
 * tested without the rest; `closers` gets what ends both.
 */
export async function fakeFrontendClient(closers: Array<() => unknown>) {
  const sim = new FakeFrontend({ key: TEST_KEY });
  await sim.listen();
  const frontend = new HttpFrontend({ baseUrl: sim.baseUrl, key: TEST_KEY, responseTimeoutMs: 500, connectTimeoutMs: 500 });
  closers.push(
    () => sim.close(),
    () => frontend.close(),
  );
  return { sim, frontend };
}

/** Metrics for a room tested without a scheduler: the queue gauges read as empty. */
export const idleMetrics = () => createMetrics(() => ({ queued: 0, running: 0, lanes: 0, orphans: 0, paused: false }), false);

/** A simulated Aegir frontend and a service wired to it, listening on loopback. */
export async function simulatedAegir(env: Record<string, string> = {}, options: { retryDelaysMs?: number[]; slowMs?: number; frontendTimeoutMs?: number; loggerInstance?: FastifyBaseLogger; childEnv?: Record<string, string>; before?: (sim: FakeFrontend) => void } = {}) {
  const sim = new FakeFrontend({ key: TEST_KEY, slowMs: options.slowMs ?? 3000 });
  await sim.listen();
  options.before?.(sim);
  const config = await testConfig({
    TASKD_SECRET: TEST_SECRET,
    TASKD_FRONTEND_URL: sim.baseUrl,
    TASKD_COMMAND: JSON.stringify([process.execPath, fakeHostingTask, '{nid}']),
    TASKD_RECONCILE_INTERVAL: '0.2',
    TASKD_CONCURRENCY: '4',
    ...(process.env.DEBUG_TASKD_LOG ? { TASKD_LOG_LEVEL: 'info' } : {}),
    ...env,
  });
  const timeoutMs = options.frontendTimeoutMs;
  const app: FastifyInstance = await buildApp({
    config,
    ...(timeoutMs ? { frontend: new HttpFrontend({ baseUrl: sim.baseUrl, key: TEST_KEY, responseTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs }) } : {}),
    defaultMetrics: false,
    ...(options.loggerInstance ? { loggerInstance: options.loggerInstance } : {}),
    env: { ...process.env, AEGIR_SIM_URL: sim.url, ...options.childEnv },
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
