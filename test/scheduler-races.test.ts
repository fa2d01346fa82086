import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { AegirStatus, FrontendError, type AegirTask, type Frontend } from '../src/frontend.js';
import { createMetrics } from '../src/metrics.js';
import { Reconciler } from '../src/reconciler.js';
import { Scheduler, type SchedulerOptions, type TaskSubmission } from '../src/scheduler.js';
import { AegirState } from '../src/simulation/aegir-state.js';
import { spawn } from 'node:child_process';
import { readProcessStartTime } from '../src/runner.js';
import { ACTIVE_STATES, newTask } from '../src/task.js';
import { fixture, readRecords, silentLog, tempDir, waitFor } from './helpers.js';
import { simulatedAegir } from './simulation.js';

/**
 * Aegir's task table behind a frontend whose answers can be held back, one call at a time, or fail
 * for chosen nids: how a slow or failing hostmaster looks to the service while other things happen.
 */
class HeldFrontend implements Frontend {
  readonly state = new AegirState();
  readonly calls: number[] = [];
  readonly failing = new Set<number>();
  #holding = false;
  readonly #held: Array<() => void> = [];

  hold(): void {
    this.#holding = true;
  }

  /** Lets the oldest held call answer, with what Aegir's table says at that moment. */
  releaseOne(): void {
    this.#held.shift()?.();
  }

  get heldCount(): number {
    return this.#held.length;
  }

  async getTask(nid: number): Promise<AegirTask | null> {
    this.calls.push(nid);
    if (this.#holding) await new Promise<void>((resolve) => this.#held.push(resolve));
    if (this.failing.has(nid)) throw new FrontendError('http_status', 'the frontend answered 500');
    return this.state.getTask(nid);
  }

  async listQueue(): Promise<AegirTask[]> {
    return this.state.listQueue();
  }

  async close(): Promise<void> {}
}

const schedulers: Scheduler[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of schedulers.splice(0)) s.close();
  for (const close of closers.splice(0)) await close();
});

async function setup(frontend: Frontend | undefined, options: Partial<SchedulerOptions> = {}, env: Record<string, string> = {}) {
  const dir = await tempDir();
  const recordFile = path.join(dir, 'records');
  const config = loadConfig({ TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), TASKD_CONCURRENCY: '4', ...env });
  let scheduler!: Scheduler;
  const metrics = createMetrics(() => scheduler.stats(), false);
  scheduler = new Scheduler({ config, env: { ...process.env, RECORD_FILE: recordFile, SLEEP_SECONDS: '0.05' }, metrics, log: silentLog, frontend, retryDelaysMs: [], ...options });
  schedulers.push(scheduler);
  return { scheduler, metrics, records: () => readRecords(recordFile) };
}

const operator = (nid: number, extra: Partial<TaskSubmission> = {}): TaskSubmission => ({ nid, source: 'operator', confirmedAt: null, ...extra });
const settle = (ms = 150) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Scheduler with a frontend: the lane is Aegir\'s rid', () => {
  it('never runs two tasks of one site at once when intake names the wrong rid', async () => {
    const s = await simulatedAegir({ TASKD_RECONCILE_INTERVAL: '60' });
    closers.push(() => s.close());
    const first = s.sim.state.addTask({ rid: 1, seconds: 0.4 });
    const second = s.sim.state.addTask({ rid: 1, seconds: 0.1 });
    const { scheduler } = s.app.taskd;
    scheduler.submit({ nid: first.nid, rid: 1, source: 'webhook', confirmedAt: Date.now() });
    scheduler.submit({ nid: second.nid, rid: 999, source: 'operator', confirmedAt: null });
    await waitFor(() => [first, second].every((t) => !scheduler.isActive(t.nid)), { timeoutMs: 10_000, what: 'both tasks to end' });
    expect(second.claimedAt!).toBeGreaterThanOrEqual(first.finishedAt!);
    expect(scheduler.get(second.nid)).toMatchObject({ lane: 'rid:1', rid: 1, state: 'succeeded' });
  });

  it('never runs two tasks of one Aegir rid at once, whatever rids intake and reconcile name (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ rid: fc.integer({ min: 1, max: 2 }), claimed: fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }), signed: fc.boolean() }), { minLength: 2, maxLength: 5 }),
        async (specs) => {
          const s = await simulatedAegir({ TASKD_RECONCILE_INTERVAL: '0.05', TASKD_CONFIRM_MAX_AGE: '0' });
          try {
            s.app.taskd.scheduler.pause();
            const tasks = specs.map((spec) => ({ spec, aegir: s.sim.state.addTask({ rid: spec.rid, seconds: 0.05 }) }));
            for (const { spec, aegir } of tasks) {
              s.app.taskd.scheduler.submit({ nid: aegir.nid, rid: spec.claimed, source: spec.signed ? 'webhook' : 'operator', confirmedAt: spec.signed ? Date.now() : null });
            }
            s.app.taskd.scheduler.resume();
            await waitFor(() => tasks.every(({ aegir }) => aegir.finishedAt !== null), { timeoutMs: 15_000, what: 'every task to finish in Aegir' });
            for (const { aegir } of tasks) expect(aegir.claims).toBe(1);
            for (const rid of [1, 2]) {
              const runs = tasks.filter((t) => t.aegir.rid === rid).map((t) => [t.aegir.claimedAt!, t.aegir.finishedAt!] as const).sort((a, b) => a[0] - b[0]);
              for (let i = 1; i < runs.length; i += 1) expect(runs[i]![0]).toBeGreaterThanOrEqual(runs[i - 1]![1]);
            }
          } finally {
            await s.close();
          }
        },
      ),
      { numRuns: 5 },
    );
  });
});

describe('Scheduler: async work that resumes acts on the same task, never on a nid', () => {
  it('does not let a stale rid look-up take over the same nid queued again', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 5, rid: 3 });
    frontend.hold();
    const { scheduler, records } = await setup(frontend);
    const a = scheduler.submit(operator(5)).task;
    expect(scheduler.cancel(5, false).outcome).toBe('cancelled');
    const b = scheduler.submit(operator(5)).task;
    expect(b).not.toBe(a);
    await waitFor(() => frontend.heldCount === 2, { what: 'both look-ups to be asked' });
    frontend.releaseOne();
    await settle(50);
    expect(a.state).toBe('cancelled');
    expect(scheduler.get(5)).toBe(b);
    frontend.releaseOne();
    await waitFor(() => b.lane === 'rid:3', { what: 'the second task to learn its lane' });
    // Its own confirmation before the start is held like every call.
    await waitFor(() => frontend.heldCount === 1, { what: 'the confirmation before the start' });
    frontend.releaseOne();
    await waitFor(async () => (await records()).filter((r) => r.nid === 5 && r.event === 'end').length === 1, { what: 'the second task to run' });
    expect(a.lane).toBeNull();
  });

  it('drops the queued task of a nid Aegir says is gone, not the one queued after it', async () => {
    const frontend = new HeldFrontend();
    frontend.hold();
    const { scheduler } = await setup(frontend);
    scheduler.submit(operator(6));
    scheduler.cancel(6, false);
    const b = scheduler.submit(operator(6)).task;
    await waitFor(() => frontend.heldCount === 2, { what: 'both look-ups to be asked' });
    // Aegir has no task 6 when the first look-up answers: that concerns the cancelled task only.
    frontend.releaseOne();
    await settle(50);
    expect(scheduler.get(6)).toBe(b);
    expect(b.state).toBe('queued');
    expect(scheduler.isActive(6)).toBe(true);
  });
});

describe('Scheduler: a task between queued and running is starting', () => {
  it('shows a task whose confirmation is in flight as starting, and starts nothing after close()', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 7, rid: 1 });
    frontend.hold();
    const { scheduler, records } = await setup(frontend);
    const { task } = scheduler.submit(operator(7, { rid: 1 }));
    expect(task.state).toBe('starting');
    expect(scheduler.stats()).toMatchObject({ queued: 0, starting: 1, running: 0 });
    expect(task.pid).toBeNull();
    await waitFor(() => frontend.heldCount === 1, { what: 'the confirmation to be asked' });
    scheduler.close();
    frontend.releaseOne();
    await settle();
    expect(await records()).toEqual([]);
    expect(task).toMatchObject({ state: 'queued', attempts: 0, message: 'not started: the service was stopping' });
    expect(scheduler.stats()).toMatchObject({ queued: 1, starting: 0, running: 0 });
  });

  it('lets drain() finish once a start it stopped has gone back to its lane', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 8, rid: 1 });
    frontend.hold();
    const { scheduler, records } = await setup(frontend);
    scheduler.submit(operator(8, { rid: 1 }));
    await waitFor(() => frontend.heldCount === 1, { what: 'the confirmation to be asked' });
    const drained = scheduler.drain(10_000);
    frontend.releaseOne();
    expect(await drained).toEqual({ stillRunning: [] });
    expect(await records()).toEqual([]);
    expect(scheduler.get(8)?.state).toBe('queued');
  });

  it('drops a starting task on a plain DELETE, before its process exists', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 9, rid: 1 });
    frontend.hold();
    const { scheduler, records } = await setup(frontend);
    scheduler.submit(operator(9, { rid: 1 }));
    await waitFor(() => frontend.heldCount === 1, { what: 'the confirmation to be asked' });
    expect(scheduler.cancel(9, false).outcome).toBe('stopping');
    frontend.releaseOne();
    await waitFor(() => !ACTIVE_STATES.includes(scheduler.get(9)!.state), { what: 'the task to end' });
    expect(scheduler.get(9)).toMatchObject({ state: 'cancelled', attempts: 0, message: 'removed by an operator before it started' });
    expect(await records()).toEqual([]);
  });

  it('is running, with its pid, as soon as the process has its task', async () => {
    const frontend = new HeldFrontend();
    const { scheduler } = await setup(frontend, {}, { TASKD_WARM_STARTS: '1', TASKD_CONCURRENCY: '1' });
    scheduler.prepareStarts();
    // The first start learns where the command is; once known, a start needs no await.
    scheduler.submit({ nid: 1, rid: 1, source: 'webhook', confirmedAt: Date.now() });
    await waitFor(() => !scheduler.isActive(1), { what: 'the first task to end' });
    const { task } = scheduler.submit({ nid: 2, rid: 1, source: 'webhook', confirmedAt: Date.now() });
    expect(task.state).toBe('running');
    expect(task.pid).toEqual(expect.any(Number));
  });
});

describe('Scheduler after a restart', () => {
  it('starts no queued task of a lane before the child that survived in it is adopted, whatever the journal order', async () => {
    const { scheduler, records } = await setup(undefined, { adoptionPollMs: 50 }, { TASKD_CONCURRENCY: '4' });
    const survivor = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
    closers.push(async () => {
      survivor.kill('SIGKILL');
    });
    // The journal had B queued before A started, so B comes back first.
    scheduler.restoreQueued(newTask({ nid: 2, rid: 5, type: 'verify', vid: null, changed: null, lane: null, state: 'queued', source: 'webhook', receivedAt: 1, confirmedAt: null }, 1));
    expect(await scheduler.adopt({ nid: 1, pid: survivor.pid!, processStart: await readProcessStartTime(survivor.pid!), startedAt: Date.now(), rid: 5, lane: 'rid:5' })).toBe('adopted');
    scheduler.recovered();
    await settle(300);
    expect(await records()).toEqual([]);
    expect(scheduler.waitingFor(scheduler.get(2)!)).toMatchObject({ reason: 'lane_busy', nid: 1 });
    survivor.kill('SIGKILL');
    await waitFor(async () => (await records()).filter((r) => r.nid === 2 && r.event === 'end').length === 1, { timeoutMs: 10_000, what: 'B to run once the survivor ended' });
  });
});

describe('Scheduler: a re-adopted run', () => {
  it('is held to TASKD_TASK_TIMEOUT from its own start: SIGTERM to its group, SIGKILL after the grace, and it ends timed out', async () => {
    const { scheduler } = await setup(undefined, { adoptionPollMs: 50 }, { TASKD_TASK_TIMEOUT: '1', TASKD_KILL_GRACE: '0.3' });
    // Its own group, as a start gate makes one; it ignores SIGTERM, as a drush stuck in a PHP call may.
    const survivor = spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { stdio: 'ignore', detached: true });
    closers.push(async () => {
      try {
        process.kill(-survivor.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => survivor.on('exit', (_code, signal) => resolve(signal)));
    // Started by the last run of the service 0.5 s ago: half a second of its timeout is left.
    expect(await scheduler.adopt({ nid: 3, pid: survivor.pid!, processStart: await readProcessStartTime(survivor.pid!), startedAt: Date.now() - 500, rid: 7 })).toBe('adopted');
    expect(scheduler.get(3)).toMatchObject({ state: 'running', lane: 'rid:7' });
    await settle(200);
    expect(scheduler.get(3)?.state).toBe('running');
    expect(await exited).toBe('SIGKILL');
    await waitFor(() => !scheduler.isActive(3), { timeoutMs: 5_000, what: 'the adopted task to end' });
    expect(scheduler.get(3)).toMatchObject({ state: 'timed_out', message: 'killed after 1s (TASKD_TASK_TIMEOUT), re-adopted' });
  });
});

describe('Scheduler: an operator cancels a queued task Aegir still lists', () => {
  it('holds it against the reconciler until Aegir changes it, and across a compacted journal', async () => {
    const frontend = new HeldFrontend();
    const queued = frontend.state.addTask({ rid: 1 });
    const { scheduler, metrics, records } = await setup(frontend);
    const reconciler = new Reconciler({ frontend, scheduler, metrics, log: silentLog, intervalMs: 60_000 });
    scheduler.pause();
    await reconciler.runOnce();
    expect(scheduler.get(queued.nid)?.state).toBe('queued');
    expect(scheduler.cancel(queued.nid, false).outcome).toBe('cancelled');
    expect(scheduler.get(queued.nid)?.message).toMatch(/Aegir still shows it queued/);
    expect([...scheduler.journalEntries()]).toContainEqual({ task: expect.objectContaining({ nid: queued.nid, state: 'cancelled' }), stuck: true });
    scheduler.resume();
    await reconciler.runOnce();
    await settle(200);
    expect(scheduler.get(queued.nid)?.state).toBe('cancelled');
    expect(await records()).toEqual([]);
    // Queued again in Aegir (a new revision): that is a new request, and it runs.
    frontend.state.requeue(queued.nid);
    await reconciler.runOnce();
    await waitFor(async () => (await records()).some((r) => r.nid === queued.nid && r.event === 'end'), { what: 'the re-queued task to run' });
  });
});

describe('Reconciler: a listing applied is a reconcile that succeeded', () => {
  it('succeeds although an outcome look-up fails, and gives that nid up after three runs', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 11, rid: 1 });
    frontend.failing.add(11);
    const { scheduler, metrics } = await setup(frontend);
    scheduler.submit({ nid: 11, rid: 1, source: 'webhook', confirmedAt: Date.now() });
    await waitFor(() => !scheduler.isActive(11), { what: 'the task to end' });
    expect(scheduler.get(11)?.outcomeConfirmed).toBe(false);
    frontend.state.finish(11, AegirStatus.success);
    const reconciler = new Reconciler({ frontend, scheduler, metrics, log: silentLog, intervalMs: 60_000 });
    const lookups = () => frontend.calls.filter((nid) => nid === 11).length;
    const before = lookups();
    for (let run = 0; run < 5; run += 1) await expect(reconciler.runOnce()).resolves.toMatchObject({ corrected: [] });
    expect(lookups() - before).toBe(3);
    expect(reconciler.lastSuccessAt).not.toBeNull();
    expect(reconciler.isFresh()).toBe(true);
    expect(reconciler.consecutiveFailures).toBe(0);
  });

  it('does not look up the outcome of a nid Aegir still lists as processing, and corrects it once it is final', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 12, rid: 1 });
    frontend.failing.add(12);
    const { scheduler, metrics } = await setup(frontend);
    scheduler.submit({ nid: 12, rid: 1, source: 'webhook', confirmedAt: Date.now() });
    await waitFor(() => !scheduler.isActive(12), { what: 'the task to end' });
    frontend.failing.delete(12);
    frontend.state.tasks.get(12)!.status = AegirStatus.processing;
    const reconciler = new Reconciler({ frontend, scheduler, metrics, log: silentLog, intervalMs: 60_000 });
    const before = frontend.calls.length;
    await reconciler.runOnce();
    expect(frontend.calls.length).toBe(before);
    frontend.state.finish(12, AegirStatus.warning);
    await expect(reconciler.runOnce()).resolves.toMatchObject({ corrected: [12] });
    expect(scheduler.get(12)).toMatchObject({ state: 'warning', outcomeConfirmed: true });
  });

  it('reports no orphan for a task that ended here after the listing was taken', async () => {
    const frontend = new HeldFrontend();
    frontend.state.addTask({ nid: 13, rid: 1 });
    const { scheduler } = await setup(frontend);
    const requestedAt = Date.now();
    scheduler.submit({ nid: 13, rid: 1, source: 'webhook', confirmedAt: requestedAt }, requestedAt);
    await waitFor(() => !scheduler.isActive(13), { what: 'the task to end' });
    const report = scheduler.reconcile([{ nid: 13, rid: 1, vid: 1, type: 'verify', status: AegirStatus.processing, changed: 1, executed: 1 }], requestedAt);
    expect(report.orphans).toEqual([]);
    expect(scheduler.orphans()).toEqual([]);
  });

  it('moves a queued task to the lane of the rid Aegir lists for it', async () => {
    const frontend = new HeldFrontend();
    const { scheduler } = await setup(frontend);
    scheduler.pause();
    const { task } = scheduler.submit({ nid: 14, rid: 999, source: 'webhook', confirmedAt: 0 }, 0);
    scheduler.reconcile([{ nid: 14, rid: 4, vid: 1, type: 'verify', status: AegirStatus.queued, changed: 1, executed: null }], Date.now());
    expect(task).toMatchObject({ rid: 4, lane: 'rid:4', state: 'queued' });
    expect(scheduler.lanesSnapshot()).toEqual([{ lane: 'rid:4', queued: 1, running: null }]);
  });
});
