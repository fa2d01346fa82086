import { afterEach, describe, expect, it } from 'vitest';
import { AegirStatus } from '../src/frontend.js';
import { LANE_UNKNOWN_MESSAGE, LaneLookups } from '../src/lane-lookup.js';
import { newTask, type Task } from '../src/task.js';
import { waitFor } from './helpers.js';
import { fakeFrontendClient, idleMetrics } from './simulation.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function lookups() {
  const { sim, frontend } = await fakeFrontendClient(closers);
  const timers = new Set<NodeJS.Timeout>();
  closers.push(() => timers.forEach(clearTimeout));
  const found: Array<{ nid: number; rid: number | null }> = [];
  const gone: Array<{ nid: number; reason: string }> = [];
  const metrics = idleMetrics();
  const laneLookups = new LaneLookups({
    frontend,
    metrics,
    found: (task, rid) => found.push({ nid: task.nid, rid }),
    gone: (task, reason) => gone.push({ nid: task.nid, reason }),
    // Short backoff steps: the lookups' own delays are seconds.
    later: (ms, fn) => {
      const timer = setTimeout(fn, Math.min(ms, 50));
      timers.add(timer);
    },
  });
  return { sim, laneLookups, found, gone, metrics };
}

const announced = (nid: number): Task =>
  newTask({ nid, rid: null, type: null, vid: null, changed: null, lane: null, state: 'queued', source: 'operator', receivedAt: Date.now(), confirmedAt: null }, Date.now());

describe('lane look-ups for tasks announced without a rid', () => {
  it("takes the rid, type, revision and changed time from Aegir's row, and says why the task waits meanwhile", async () => {
    const { sim, laneLookups, found } = await lookups();
    const row = sim.state.addTask({ rid: 42, type: 'verify' });
    const task = announced(row.nid);
    laneLookups.start(task);
    expect(laneLookups.has(task)).toBe(true);
    expect(task.message).toBe(LANE_UNKNOWN_MESSAGE);
    await waitFor(() => found.length === 1, { what: 'the rid to be found' });
    expect(found).toEqual([{ nid: row.nid, rid: 42 }]);
    expect(task).toMatchObject({ type: 'verify', vid: row.vid, message: null });
    expect(task.confirmedAt).not.toBeNull();
    expect(laneLookups.size).toBe(0);
  });

  it('drops a task Aegir does not have, or no longer has queued', async () => {
    const { sim, laneLookups, gone, found } = await lookups();
    const ended = sim.state.addTask({ rid: 1 });
    ended.status = AegirStatus.success;
    laneLookups.start(announced(999_999));
    laneLookups.start(announced(ended.nid));
    await waitFor(() => gone.length === 2, { what: 'both to be dropped' });
    expect(gone.sort((a, b) => a.nid - b.nid)).toEqual([
      { nid: ended.nid, reason: `Aegir no longer has it queued (status ${AegirStatus.success})` },
      { nid: 999_999, reason: 'Aegir has no such task' },
    ]);
    expect(found).toEqual([]);
  });

  it('keeps asking while the frontend fails, counting each failure, and says so in the task', async () => {
    const { sim, laneLookups, found, metrics } = await lookups();
    const row = sim.state.addTask({ rid: 5 });
    sim.fault = 'error';
    const task = announced(row.nid);
    laneLookups.start(task);
    const failures = async () => Number(/^taskd_frontend_errors_total\{operation="lane_lookup",kind="http_status"\} (\d+)$/m.exec(await metrics.registry.metrics())?.[1] ?? 0);
    await waitFor(async () => (await failures()) >= 2, { what: 'two failed look-ups' });
    expect(task.message).toMatch(/^waiting for the frontend to tell its rid \(.*\); retrying in \d+s$/);
    sim.fault = null;
    await waitFor(() => found.length === 1, { what: 'the rid once the frontend answers' });
    expect(found).toEqual([{ nid: row.nid, rid: 5 }]);
  });

  it('does nothing for a task whose look-up was stopped while the frontend was being asked', async () => {
    const { sim, laneLookups, found, gone } = await lookups();
    const row = sim.state.addTask({ rid: 6 });
    const task = announced(row.nid);
    laneLookups.start(task);
    // Its request is on the way: the answer that comes back must find nothing to do.
    expect(laneLookups.stop(task)).toBe(true);
    expect(laneLookups.stop(task)).toBe(false);
    laneLookups.start(announced(row.nid));
    await waitFor(() => found.length === 1, { what: 'the second one to be found' });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(found).toHaveLength(1);
    expect(gone).toEqual([]);
  });
});
