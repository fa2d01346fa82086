import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, waitFor } from '../helpers.js';
import { simulatedAegir } from '../simulation.js';
import { FLOOD, printSummaryAfterAll, random, SEED, seconds, summary } from './chaos.js';

printSummaryAfterAll();

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const TASKS = Math.max(20, Math.round(FLOOD / 10));
const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

describe('races', () => {
  it(`never runs two tasks of one Aegir rid at once when intake names random wrong rids (${TASKS} tasks)`, async () => {
    const began = Date.now();
    const rand = random(SEED);
    const s = await simulatedAegir({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_CONCURRENCY: '8', TASKD_RECONCILE_INTERVAL: '0.2', TASKD_CONFIRM_MAX_AGE: '0' });
    closers.push(() => s.close());
    const tasks = Array.from({ length: TASKS }, () => s.sim.state.addTask({ rid: 1 + Math.floor(rand() * 4), seconds: 0.02 + rand() * 0.05 }));
    let wrong = 0;
    await Promise.all(
      tasks.map(async (t) => {
        const roll = rand();
        const rid = roll < 0.4 ? 1 + Math.floor(rand() * 9) : roll < 0.6 ? undefined : t.rid;
        if (rid !== undefined && rid !== t.rid) wrong += 1;
        const response = await fetch(`${s.url}/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ nid: t.nid, ...(rid === undefined ? {} : { rid }) }) });
        expect([200, 202]).toContain(response.status);
      }),
    );
    await waitFor(() => tasks.every((t) => t.finishedAt !== null), { timeoutMs: 120_000, what: 'every task to finish in Aegir' });
    let overlaps = 0;
    for (const rid of [1, 2, 3, 4]) {
      const runs = tasks.filter((t) => t.rid === rid).sort((a, b) => a.claimedAt! - b.claimedAt!);
      for (let i = 1; i < runs.length; i += 1) if (runs[i]!.claimedAt! < runs[i - 1]!.finishedAt!) overlaps += 1;
    }
    const twice = tasks.filter((t) => t.claims !== 1).length;
    summary(`wrong rids: seed ${SEED}, tasks ${TASKS}, wrong rid at intake ${wrong}, overlapping runs of one rid ${overlaps}, claimed other than once ${twice}, ${seconds(began)} s`);
    expect(overlaps).toBe(0);
    expect(twice).toBe(0);
  });

  it('keeps every re-queued nid runnable while its look-ups race cancels', async () => {
    const began = Date.now();
    const rand = random(SEED + 1);
    const s = await simulatedAegir({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_CONCURRENCY: '4', TASKD_RECONCILE_INTERVAL: '60' }, { slowMs: 60 });
    closers.push(() => s.close());
    const nids = Array.from({ length: 10 }, () => s.sim.state.addTask({ rid: 1 + Math.floor(rand() * 3), seconds: 0.02 }).nid);
    s.app.taskd.scheduler.pause();
    s.sim.fault = 'slow';
    let cancels = 0;
    for (let round = 0; round < TASKS; round += 1) {
      const nid = nids[Math.floor(rand() * nids.length)]!;
      await fetch(`${s.url}/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ nid }) });
      if (rand() < 0.6) {
        const response = await fetch(`${s.url}/v1/tasks/${nid}`, { method: 'DELETE', headers: auth });
        if (response.status === 200) cancels += 1;
      }
      await new Promise((r) => setTimeout(r, rand() * 30));
    }
    // Every nid queued once more, its look-up still to answer, before the frontend is quick again.
    for (const nid of nids) await fetch(`${s.url}/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ nid }) });
    s.sim.fault = null;
    s.app.taskd.scheduler.resume();
    await waitFor(() => nids.every((nid) => s.sim.state.tasks.get(nid)!.finishedAt !== null), { timeoutMs: 60_000, what: 'every nid to run' });
    await waitFor(() => s.app.taskd.scheduler.stats().awaitingLane === 0 && nids.every((nid) => !s.app.taskd.scheduler.isActive(nid)), { timeoutMs: 20_000, what: 'nothing left waiting' });
    const twice = nids.filter((nid) => s.sim.state.tasks.get(nid)!.claims !== 1).length;
    const wrongLane = nids.filter((nid) => s.app.taskd.scheduler.get(nid)!.lane !== `rid:${s.sim.state.tasks.get(nid)!.rid}`).length;
    summary(`look-ups racing cancels: seed ${SEED}, rounds ${TASKS}, cancels ${cancels}, nids claimed other than once ${twice}, in a wrong lane ${wrongLane}, ${seconds(began)} s`);
    expect(twice).toBe(0);
    expect(wrongLane).toBe(0);
  });
});
