import { afterEach, describe, expect, it } from 'vitest';
import { AegirStatus } from '../../src/frontend.js';
import { ACTIVE_STATES } from '../../src/task.js';
import type { Fault } from '../../src/simulation/fake-frontend.js';
import { ADMIN, signedHeaders, waitFor } from '../helpers.js';
import { simulatedAegir } from '../simulation.js';
import { metric, printSummaryAfterAll, seconds, summary } from './chaos.js';

printSummaryAfterAll();

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const RESPONSE_TIMEOUT_MS = 800;

/** The simulated Aegir and a service wired to it, with a short frontend timeout so that 'slow' is a timeout. */
async function setup() {
  const s = await simulatedAegir({ TASKD_RECONCILE_INTERVAL: '0.5' }, { slowMs: 3 * RESPONSE_TIMEOUT_MS, frontendTimeoutMs: RESPONSE_TIMEOUT_MS });
  closers.push(() => s.close());
  const port = Number(new URL(s.sim.url).port);
  const metrics = async () => (await s.app.inject({ url: '/metrics' })).body;
  return { sim: s.sim, app: s.app, port, metrics, task: s.task };
}

type Mode = Fault | 'refused';
const cases: Array<{ mode: Mode; kind: string }> = [
  { mode: 'slow', kind: 'timeout' },
  { mode: 'error', kind: 'http_status' },
  // A proxy's (or a wrong base URL's) HTML 404 is a failing frontend, never "Aegir has no such task".
  { mode: 'proxy-404', kind: 'http_status' },
  { mode: 'invalid-json', kind: 'bad_response' },
  { mode: 'huge', kind: 'too_large' },
  { mode: 'bad-signature', kind: 'unauthorized' },
  { mode: 'down', kind: 'unreachable' },
  { mode: 'refused', kind: 'unreachable' },
];

describe('frontend faults', () => {
  for (const { mode, kind } of cases) {
    it(`counts '${mode}' as a ${kind} reconcile error, keeps running webhook tasks, and recovers once the frontend does`, async () => {
      const began = Date.now();
      const { sim, app, port, metrics, task } = await setup();
      await waitFor(async () => (await app.inject({ url: '/readyz' })).statusCode === 200, { what: 'the first good reconcile' });
      const before = await metrics();
      const errorsBefore = metric(before, 'taskd_frontend_errors_total', { operation: 'reconcile', kind });
      const failedRunsBefore = metric(before, 'taskd_reconcile_runs_total', { result: 'error' });

      if (mode === 'refused') await sim.close();
      else sim.fault = mode;
      const manual = await app.inject({ method: 'POST', url: '/v1/reconcile', headers: ADMIN });
      expect(manual.statusCode).toBe(502);
      expect(manual.json().error).toBe('TASKD_ERR_FRONTEND_FAILED');
      await waitFor(async () => metric(await metrics(), 'taskd_frontend_errors_total', { operation: 'reconcile', kind }) >= errorsBefore + 2, {
        timeoutMs: 20_000,
        what: `two reconcile errors of kind ${kind}`,
      });
      await waitFor(async () => (await app.inject({ url: '/readyz' })).statusCode === 503, { timeoutMs: 20_000, what: 'not ready while the frontend fails' });
      expect(app.taskd.reconciler!.consecutiveFailures).toBeGreaterThanOrEqual(2);

      // A signed webhook needs no look-up to start: tasks still run while the frontend fails; their outcome waits for it.
      const during = sim.state.addTask({ rid: 1, behaviour: 'warning', seconds: 0.05 });
      if (mode === 'refused') {
        // The fake hosting-task talks to the simulated Aegir too: with it gone, only intake can be shown to work.
        const body = JSON.stringify({ nid: during.nid, rid: 1 });
        expect((await app.inject({ method: 'POST', url: '/v1/tasks', payload: body, headers: signedHeaders(body) })).statusCode).toBe(202);
        await waitFor(async () => !ACTIVE_STATES.includes((await task(during.nid)).state), { timeoutMs: 20_000, what: 'the task to end' });
        await sim.listen(port);
        // Its hosting-task could not reach Aegir either, so Aegir still has it queued: a reconcile runs it again.
      } else {
        await sim.sendWebhook(during.nid);
        await waitFor(async () => !ACTIVE_STATES.includes((await task(during.nid)).state), { timeoutMs: 20_000, what: 'the task to end' });
        expect(await task(during.nid)).toMatchObject({ outcomeConfirmed: false });
        sim.fault = null;
      }

      // Queued with no webhook: only a reconcile can find it, so its run proves the reconciler recovered on its own.
      const lost = sim.state.addTask({ rid: 2, behaviour: 'success', seconds: 0.05 });
      await waitFor(async () => (await task(lost.nid)).state === 'succeeded', { timeoutMs: 20_000, what: 'the reconciler to recover' });
      await waitFor(async () => (await app.inject({ url: '/readyz' })).statusCode === 200, { timeoutMs: 20_000, what: 'ready again' });
      await waitFor(() => sim.state.tasks.get(during.nid)!.status !== AegirStatus.queued, { timeoutMs: 20_000, what: 'the task queued during the fault to run' });
      // The outcome taken from the exit code during the fault is corrected from Aegir once it answers.
      await waitFor(async () => (await task(during.nid)).outcomeConfirmed === true && (await task(during.nid)).state === 'warning', {
        timeoutMs: 20_000,
        what: 'the outcome of the task run during the fault to be confirmed',
      });

      const after = await metrics();
      const errors = metric(after, 'taskd_frontend_errors_total', { operation: 'reconcile', kind }) - errorsBefore;
      const failedRuns = metric(after, 'taskd_reconcile_runs_total', { result: 'error' }) - failedRunsBefore;
      const otherErrors = ['outcome', 'confirm', 'lane_lookup'].map((operation) => `${operation} ${metric(after, 'taskd_frontend_errors_total', { operation })}`).join(', ');
      summary(`frontend ${mode}: reconcile errors (${kind}) ${errors}, failed reconciles ${failedRuns}, other frontend errors: ${otherErrors}; recovered, ${seconds(began)} s`);
      expect(failedRuns).toBeGreaterThanOrEqual(errors);
      expect(errors).toBeGreaterThanOrEqual(2);
      expect(sim.state.tasks.get(during.nid)!.claims).toBe(1);
      expect(sim.state.tasks.get(lost.nid)!.claims).toBe(1);
    });
  }
});
