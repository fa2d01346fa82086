import fs from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createMetrics } from '../src/metrics.js';
import { Scheduler, type SchedulerOptions, type Task, type TaskSubmission } from '../src/scheduler.js';
import { fixture, readRecords, silentLog, tempDir, waitFor } from './helpers.js';
import { groupBy, intervals, peakOverlap } from './intervals.js';

const schedulers: Scheduler[] = [];
afterEach(() => {
  for (const s of schedulers.splice(0)) s.close();
});

async function setup(env: Record<string, string> = {}, options: Partial<SchedulerOptions> = {}, childEnv: Record<string, string> = {}) {
  const dir = await tempDir();
  const recordFile = path.join(dir, 'records');
  const config = loadConfig({ TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), ...env });
  let scheduler!: Scheduler;
  const metrics = createMetrics(() => scheduler.stats(), false);
  scheduler = new Scheduler({ config, env: { ...process.env, RECORD_FILE: recordFile, SLEEP_SECONDS: '0.05', ...childEnv }, metrics, log: silentLog, ...options });
  schedulers.push(scheduler);
  const idle = () => waitFor(() => {
    const s = scheduler.stats();
    return s.queued === 0 && s.starting === 0 && s.running === 0 && s.awaitingLane === 0;
  }, { timeoutMs: 20_000, what: 'the scheduler to go idle' });
  return { scheduler, metrics, recordFile, dir, idle, records: () => readRecords(recordFile) };
}

const submit = (nid: number, extra: Partial<TaskSubmission> = {}): TaskSubmission => ({ nid, source: 'webhook', confirmedAt: Date.now(), ...extra });

describe('Scheduler', () => {
  it('runs one task per lane at a time even when concurrency allows more', async () => {
    const { scheduler, idle, records } = await setup({ TASKD_CONCURRENCY: '4' });
    for (const nid of [1, 2, 3]) scheduler.submit(submit(nid, { rid: 7 }));
    await idle();
    const runs = intervals(await records());
    expect(runs.map((r) => r.nid)).toEqual([1, 2, 3]);
    expect(peakOverlap(runs)).toBe(1);
  });

  it('runs tasks of different lanes at once, up to the concurrency limit', async () => {
    const { scheduler, idle, records } = await setup({ TASKD_CONCURRENCY: '2' }, {}, { SLEEP_SECONDS: '0.3' });
    for (const nid of [1, 2, 3]) scheduler.submit(submit(nid, { rid: nid }));
    expect(scheduler.stats()).toMatchObject({ running: 2, queued: 1 });
    await idle();
    const runs = intervals(await records());
    expect(runs).toHaveLength(3);
    expect(peakOverlap(runs)).toBe(2);
  });

  it('orders a lane by changed, then nid, and picks the lane whose head is oldest', async () => {
    const { scheduler, idle, records } = await setup();
    scheduler.pause();
    scheduler.submit(submit(10, { rid: 1, changed: 300 }));
    scheduler.submit(submit(11, { rid: 1, changed: 100 }));
    scheduler.submit(submit(9, { rid: 2, changed: 200 }));
    scheduler.submit(submit(8, { rid: 2, changed: 100 }));
    scheduler.submit(submit(12, { rid: 3, changed: 150 }));
    scheduler.resume();
    await idle();
    expect(intervals(await records()).map((r) => r.nid)).toEqual([8, 11, 12, 9, 10]);
  });

  it('orders tasks without changed by the time they were received', async () => {
    const { scheduler, idle, records } = await setup();
    scheduler.pause();
    scheduler.submit(submit(30, { rid: 1 }), 3_000);
    scheduler.submit(submit(20, { rid: 1 }), 2_000);
    scheduler.submit(submit(10, { rid: 1 }), 4_000);
    scheduler.resume();
    await idle();
    expect(intervals(await records()).map((r) => r.nid)).toEqual([20, 30, 10]);
  });

  it('answers a nid that is queued or running as a duplicate, and queues it again once it ended', async () => {
    const { scheduler, idle, records } = await setup();
    const first = scheduler.submit(submit(5, { rid: 1 }));
    expect(first.duplicate).toBe(false);
    const again = scheduler.submit(submit(5, { rid: 1 }));
    expect(again).toEqual({ task: first.task, duplicate: true });
    await idle();
    expect(scheduler.get(5)?.state).toBe('succeeded');
    expect(scheduler.submit(submit(5, { rid: 1 })).duplicate).toBe(false);
    await idle();
    expect(intervals(await records()).map((r) => r.nid)).toEqual([5, 5]);
  });

  it('gives a task without rid a lane of its own when no frontend is configured', async () => {
    const { scheduler, idle } = await setup();
    const { task } = scheduler.submit(submit(44));
    expect(task.lane).toBe('nid:44');
    await idle();
  });

  it('starts nothing while paused, and everything on resume', async () => {
    const { scheduler, idle, records } = await setup();
    scheduler.pause();
    scheduler.submit(submit(1, { rid: 1 }));
    await new Promise((r) => setTimeout(r, 150));
    expect(await records()).toEqual([]);
    expect(scheduler.stats()).toMatchObject({ paused: true, queued: 1, running: 0 });
    scheduler.resume();
    await idle();
    expect((await records()).length).toBe(2);
  });

  it('holds starts back at the starts-per-minute limit', async () => {
    const { scheduler, records } = await setup({ TASKD_CONCURRENCY: '5', TASKD_MAX_STARTS_PER_MINUTE: '2' });
    for (const nid of [1, 2, 3]) scheduler.submit(submit(nid, { rid: nid }));
    await waitFor(async () => (await records()).filter((r) => r.event === 'end').length === 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(scheduler.stats()).toMatchObject({ queued: 1, running: 0, deferredBy: 'rate', startsLastMinute: 2 });
  });

  it('starts nothing while the pause file exists, and says so for each waiting task', async () => {
    const pauseFile = path.join(await tempDir(), 'maintenance');
    await fs.writeFile(pauseFile, '');
    const { scheduler, idle, records } = await setup({ TASKD_PAUSE_FILE: pauseFile }, { gateRecheckMs: 50 });
    const { task } = scheduler.submit(submit(1, { rid: 1 }));
    await new Promise((r) => setTimeout(r, 150));
    expect(await records()).toEqual([]);
    expect(scheduler.stats()).toMatchObject({ queued: 1, deferredBy: 'pause_file' });
    expect(scheduler.waitingFor(task)).toEqual({ reason: 'pause_file', path: pauseFile, message: `the pause file ${pauseFile} exists` });
    await fs.rm(pauseFile);
    await idle();
    expect((await records()).length).toBe(2);
    expect(scheduler.waitingFor(task)).toBeNull();
  });

  it('says why each queued task waits: its lane busy with a task, the concurrency limit, paused', async () => {
    const { scheduler, idle } = await setup({ TASKD_CONCURRENCY: '1' }, {}, { SLEEP_SECONDS: '0.3' });
    const first = scheduler.submit(submit(1, { rid: 1 })).task;
    const sameSite = scheduler.submit(submit(2, { rid: 1 })).task;
    const otherSite = scheduler.submit(submit(3, { rid: 2 })).task;
    expect(scheduler.waitingFor(first)).toBeNull();
    expect(scheduler.waitingFor(sameSite)).toMatchObject({ reason: 'lane_busy', nid: 1, message: 'its lane rid:1 is busy with task 1' });
    expect(scheduler.waitingFor(otherSite)).toMatchObject({ reason: 'concurrency', limit: 1 });
    scheduler.pause();
    expect(scheduler.waitingFor(otherSite)).toMatchObject({ reason: 'paused' });
    scheduler.resume();
    await idle();
  });

  it('defers starts while the load average is above the limit', async () => {
    let load = 9;
    const { scheduler, idle, records } = await setup({ TASKD_MAX_LOAD: '4' }, { loadAverage: () => load, gateRecheckMs: 50 });
    scheduler.submit(submit(1, { rid: 1 }));
    await new Promise((r) => setTimeout(r, 200));
    expect(scheduler.stats()).toMatchObject({ queued: 1, deferredBy: 'load' });
    expect(await records()).toEqual([]);
    load = 1;
    await idle();
    expect((await records()).length).toBe(2);
  });

  it('records failed, skipped and timed_out outcomes, and a command that cannot start', async () => {
    const dir = await tempDir();
    const command = path.join(dir, 'outcomes.sh');
    await fs.writeFile(command, `#!/bin/sh\ncase "$1" in 1) exit 3;; 2) exec ${fixture('refuse.sh')};; 3) sleep 30;; esac\n`, { mode: 0o755 });
    const { scheduler, idle } = await setup({ TASKD_COMMAND: JSON.stringify([command, '{nid}']), TASKD_TASK_TIMEOUT: '0.3', TASKD_KILL_GRACE: '0.2', TASKD_CONCURRENCY: '4' });
    for (const nid of [1, 2, 3]) scheduler.submit(submit(nid, { rid: nid }));
    await idle();
    expect(scheduler.get(1)).toMatchObject({ state: 'failed', exitCode: 3, message: 'exit code 3' });
    expect(scheduler.get(2)).toMatchObject({ state: 'skipped', message: 'hosting-task refused it: This task is not queued' });
    expect(scheduler.get(3)).toMatchObject({ state: 'timed_out', signal: 'SIGTERM' });
  });

  it('fails a task whose command cannot start, and carries on', async () => {
    const { scheduler, idle } = await setup({ TASKD_COMMAND: JSON.stringify(['/nonexistent/drush', '{nid}']) });
    scheduler.submit(submit(4, { rid: 4 }));
    scheduler.submit(submit(5, { rid: 4 }));
    await idle();
    expect(scheduler.get(4)).toMatchObject({ state: 'failed', message: 'command not found: /nonexistent/drush (check TASKD_COMMAND and PATH)' });
    expect(scheduler.get(5)?.state).toBe('failed');
  });

  it('cancels a queued task, refuses a running one without force, and stops it with force', async () => {
    const { scheduler, idle, records } = await setup({}, {}, { SLEEP_SECONDS: '10' });
    scheduler.submit(submit(1, { rid: 1 }));
    scheduler.submit(submit(2, { rid: 1 }));
    await waitFor(async () => (await records()).length === 1);
    expect(scheduler.cancel(2, false).outcome).toBe('cancelled');
    expect(scheduler.get(2)?.state).toBe('cancelled');
    expect(scheduler.cancel(1, false).outcome).toBe('running');
    expect(scheduler.cancel(1, true).outcome).toBe('stopping');
    await idle();
    expect(scheduler.get(1)).toMatchObject({ state: 'cancelled', message: 'stopped by an operator while running' });
    expect((await records()).filter((r) => r.nid === 2)).toEqual([]);
  });

  it('keeps a bounded history of ended tasks', async () => {
    const { scheduler, idle } = await setup({ TASKD_HISTORY_SIZE: '3' }, {}, { SLEEP_SECONDS: '0' });
    for (let nid = 1; nid <= 5; nid += 1) scheduler.submit(submit(nid, { rid: nid }));
    await idle();
    expect(scheduler.list().map((t) => t.nid)).toEqual([5, 4, 3]);
    expect(scheduler.get(1)).toBeUndefined();
  });
});

describe('Scheduler properties (fast-check, real child processes)', () => {
  type Op = { kind: 'submit'; nid: number; rid: number | null; changed: number | null } | { kind: 'cancel'; nid: number } | { kind: 'pause' } | { kind: 'resume' } | { kind: 'wait'; ms: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant('submit' as const), nid: fc.integer({ min: 1, max: 12 }), rid: fc.option(fc.integer({ min: 1, max: 4 }), { nil: null }), changed: fc.option(fc.integer({ min: 1, max: 50 }), { nil: null }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), nid: fc.integer({ min: 1, max: 12 }) }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'pause' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'resume' as const }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 40 }) }) },
  );

  it('never runs two tasks of a lane or one nid twice at once, never exceeds the limit, and drops nothing accepted', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(op, { minLength: 1, maxLength: 25 }), async (concurrency, ops) => {
        const { scheduler, idle, records } = await setup({ TASKD_CONCURRENCY: String(concurrency) }, {}, { SLEEP_SECONDS: '0.02' });
        const acceptedTasks: Task[] = [];
        let cancelled = 0;
        for (const o of ops) {
          if (o.kind === 'submit') {
            const { task, duplicate } = scheduler.submit(submit(o.nid, { rid: o.rid, changed: o.changed }));
            if (!duplicate) acceptedTasks.push(task);
          } else if (o.kind === 'cancel') {
            if (scheduler.cancel(o.nid, false).outcome === 'cancelled') cancelled += 1;
          } else if (o.kind === 'pause') scheduler.pause();
          else if (o.kind === 'resume') scheduler.resume();
          else await new Promise((r) => setTimeout(r, o.ms));
        }
        scheduler.resume();
        await idle();
        const runs = intervals(await records());
        // Every accepted task either ran to its end once or was cancelled before it started.
        expect(runs.length).toBe(acceptedTasks.length - cancelled);
        expect(acceptedTasks.filter((t) => t.state === 'cancelled')).toHaveLength(cancelled);
        expect(peakOverlap(runs)).toBeLessThanOrEqual(concurrency);
        const byNid = groupBy(runs, (r) => r.nid);
        for (const list of byNid.values()) expect(peakOverlap(list)).toBeLessThanOrEqual(1);
        // A nid may be accepted again once it ended, possibly in another lane: its k-th run belongs to its k-th task that ran.
        const laneOfRun = new Map<(typeof runs)[number], string>();
        for (const [nid, list] of byNid) {
          const ran = acceptedTasks.filter((t) => t.nid === nid && t.state !== 'cancelled');
          [...list].sort((a, b) => (a.start < b.start ? -1 : 1)).forEach((run, k) => laneOfRun.set(run, ran[k]!.lane!));
        }
        const byLane = groupBy(runs, (r) => laneOfRun.get(r)!);
        for (const list of byLane.values()) expect(peakOverlap(list)).toBeLessThanOrEqual(1);
        scheduler.close();
      }),
      { numRuns: 25 },
    );
  });

  it('starts tasks queued while paused in lane order: oldest (changed, nid) first', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.record({ nid: fc.integer({ min: 1, max: 500 }), rid: fc.integer({ min: 1, max: 5 }), changed: fc.integer({ min: 1, max: 20 }) }), { minLength: 1, maxLength: 12, selector: (t) => t.nid }),
        async (tasks) => {
          const { scheduler, idle, records } = await setup({}, {}, { SLEEP_SECONDS: '0' });
          scheduler.pause();
          for (const t of tasks) scheduler.submit(submit(t.nid, t));
          scheduler.resume();
          await idle();
          const expected = [...tasks].sort((a, b) => a.changed - b.changed || a.nid - b.nid).map((t) => t.nid);
          expect(intervals(await records()).map((r) => r.nid)).toEqual(expected);
          scheduler.close();
        },
      ),
      { numRuns: 20 },
    );
  });
});

describe('Scheduler with rid 0 from Aegir', () => {
  it('gives a task whose rid is 0 a lane of its own instead of one lane for all of them', async () => {
    const { scheduler, idle } = await setup();
    const a = scheduler.submit(submit(1, { rid: 0, source: 'reconcile' }));
    const b = scheduler.submit(submit(2, { rid: 0, source: 'reconcile' }));
    expect([a.task.lane, b.task.lane]).toEqual(['nid:1', 'nid:2']);
    await idle();
  });
});

describe('Scheduler metrics', () => {
  it('does not count a command that could not start as a start', async () => {
    const { scheduler, idle, metrics } = await setup({ TASKD_COMMAND: JSON.stringify(['/nonexistent/drush', '{nid}']) });
    scheduler.submit(submit(1, { rid: 1 }));
    await idle();
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^taskd_tasks_started_total 0$/m);
    expect(text).toMatch(/^taskd_tasks_ended_total\{outcome="failed"\} 1$/m);
  });
});

describe('Scheduler re-queuing', () => {
  it('keeps the lane it knew for a nid that comes back without a rid', async () => {
    const { scheduler, idle } = await setup({}, {}, { SLEEP_SECONDS: '0' });
    scheduler.submit(submit(3, { rid: 1 }));
    await idle();
    expect(scheduler.submit(submit(3)).task.lane).toBe('rid:1');
    await idle();
  });
});
