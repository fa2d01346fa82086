import path from 'node:path';
import { repoRoot, startTaskd } from './services.mjs';
import { sleep, waitUntil } from './stats.mjs';

const { FakeFrontend } = await import(path.join(repoRoot, 'dist', 'simulation', 'fake-frontend.js'));
const fakeDispatch = path.join(repoRoot, 'dist', 'simulation', 'fake-hosting-dispatch.js');

/** Every time setting and every queue frequency is divided by this, so a window of 60 s stands for an hour. */
export const TIME_SCALE = 60;

/** The service's defaults that decide how often it asks the frontend and starts hosting-dispatch, in seconds. */
const DEFAULTS = { reconcileInterval: 60, dispatchMinInterval: 60, confirmMaxAge: 5, dispatchTimeout: 600 };

const scaled = (seconds) => String(seconds / TIME_SCALE);

/**
 * The queues of each case, in Aegir's seconds (divided by TIME_SCALE before they reach the fake frontend).
 * hosting_cron's queue is a batch queue of an hour over at least 6 threads: calc_frequency 600 s.
 */
export const CASES = [
  {
    name: 'nothing due',
    queues: (now) => [
      { name: 'cron', frequency: 7200, last: now },
      { name: 'backup', frequency: 86_400, last: now },
    ],
  },
  {
    name: 'cron queue due every 600 s',
    queues: (now) => [
      { name: 'cron', frequency: 600, last: now },
      { name: 'backup', frequency: 86_400, last: now },
    ],
  },
  { name: 'a queue always due', queues: () => [{ name: 'cron', frequency: 0, last: 0 }] },
];

/**
 * One service with the default settings, scaled, against a simulated Aegir per case, all in the same
 * window: drush starts are the simulated hosting-dispatch's runs the service started, frontend
 * requests the signed GETs that reached the module's endpoints. Counts are scaled to an hour.
 */
export async function measureDispatch({ workDir, secret, key, windowSeconds }) {
  const nowScaled = () => Math.floor(Date.now() / 1000);
  const runs = [];
  try {
    for (const [i, c] of CASES.entries()) {
      const sim = new FakeFrontend({ key });
      await sim.listen();
      const now = nowScaled();
      for (const q of c.queues(now)) {
        // Times are moved into the scaled clock: a queue last run at `now` stays so; frequencies shrink.
        sim.state.addQueue({ name: q.name, frequency: Math.round(q.frequency / TIME_SCALE), last: q.last === 0 ? 0 : now });
      }
      const service = await startTaskd({
        workDir,
        name: `dispatch-${i}`,
        secret,
        settings: {
          TASKD_FRONTEND_URL: sim.baseUrl,
          TASKD_COMMAND: JSON.stringify(['true', '{nid}']),
          TASKD_DISPATCH_COMMAND: JSON.stringify([process.execPath, fakeDispatch]),
          TASKD_RECONCILE_INTERVAL: scaled(DEFAULTS.reconcileInterval),
          TASKD_DISPATCH_MIN_INTERVAL: scaled(DEFAULTS.dispatchMinInterval),
          TASKD_CONFIRM_MAX_AGE: scaled(DEFAULTS.confirmMaxAge),
          TASKD_DISPATCH_TIMEOUT: scaled(DEFAULTS.dispatchTimeout),
          AEGIR_SIM_URL: sim.url,
        },
      });
      runs.push({ case: c, sim, service });
    }
    // The window opens once every service has read its first listing, as it does at start-up.
    await waitUntil(() => runs.every((r) => r.sim.requests >= 1), { timeoutMs: 20_000, what: 'the first listing of every service' });
    const opened = runs.map((r) => ({ requests: r.sim.requests, startedAt: Date.now() }));
    await sleep(windowSeconds * 1000);
    const perHour = (3600 / TIME_SCALE) / windowSeconds;
    return runs.map((r, i) => {
      const inWindow = r.sim.state.dispatchRuns.filter((run) => run.byService && run.atMs >= opened[i].startedAt);
      return {
        name: r.case.name,
        drushStarts: inWindow.length,
        drushStartsPerHour: inWindow.length * perHour,
        frontendRequests: r.sim.requests - opened[i].requests,
        frontendRequestsPerHour: (r.sim.requests - opened[i].requests) * perHour,
        queueRuns: Object.fromEntries([...r.sim.state.queues.values()].map((q) => [q.name, q.runs])),
      };
    });
  } finally {
    for (const r of runs) {
      await r.service.stop();
      await r.sim.close();
    }
  }
}
