import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, TEST_SECRET, fixture, readRecords, signedHeaders, tempDir, waitFor } from '../helpers.js';
import { groupBy, intervals, peakOverlap } from '../intervals.js';
import { newTask } from '../../src/task.js';
import { cliPath, startService, type ServiceProcess } from '../e2e/service-process.js';
import { KILL_CYCLES, SEED, printSummaryAfterAll, random, seconds, summary } from './chaos.js';

printSummaryAfterAll();

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const bearer = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

/** No frontend: the journal alone must bring back whatever was answered 202. */
async function serviceWithoutFrontend(extra: Record<string, string> = {}) {
  const dir = await tempDir('taskd-chaos-journal-');
  const recordFile = path.join(dir, 'records');
  const stateDir = path.join(dir, 'state');
  const env = {
    TASKD_SECRET: TEST_SECRET,
    TASKD_ADMIN_TOKEN: ADMIN_TOKEN,
    TASKD_LOG_DIR: path.join(dir, 'logs'),
    TASKD_STATE_DIR: stateDir,
    TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']),
    TASKD_CONCURRENCY: '4',
    RECORD_FILE: recordFile,
    SLEEP_SECONDS: '0.05',
    ...extra,
  };
  const services: ServiceProcess[] = [];
  cleanup.push(() => {
    for (const s of services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  });
  const start = async (more: Record<string, string> = {}) => {
    const s = await startService({ ...env, ...more });
    services.push(s);
    return s;
  };
  return { dir, stateDir, env, start, records: () => readRecords(recordFile) };
}

/** Posts one task, signed as the module would or with the operator's token; answers the status. */
async function post(url: string, nid: number, rid: number, signed: boolean): Promise<number> {
  const body = JSON.stringify({ nid, rid });
  try {
    const response = await fetch(`${url}/v1/tasks`, { method: 'POST', headers: signed ? signedHeaders(body) : bearer, body });
    await response.body?.cancel();
    return response.status;
  } catch {
    return 0;
  }
}

/** Every task answered 202 ran exactly once (one start per 202), and no two of one lane overlapped. */
async function checkRuns(records: () => ReturnType<typeof readRecords>, accepted: Map<number, number>, rids: Map<number, number>) {
  const starts = new Map<number, number>();
  for (const r of await records()) if (r.event === 'start') starts.set(r.nid, (starts.get(r.nid) ?? 0) + 1);
  const lost = [...accepted].filter(([nid, n]) => (starts.get(nid) ?? 0) < n).map(([nid]) => nid);
  const twice = [...accepted].filter(([nid, n]) => (starts.get(nid) ?? 0) > n).map(([nid]) => nid);
  const byLane = groupBy(intervals(await records()), (r) => rids.get(r.nid));
  const laneOverlaps = [...byLane.values()].filter((runs) => peakOverlap(runs) > 1).length;
  return { lost, twice, laneOverlaps };
}

describe('the journal under SIGKILL, compaction and a full disk (no frontend)', () => {
  it(`runs every task answered 202 exactly once across ${KILL_CYCLES} SIGKILL cycles, while compaction runs all the time`, async () => {
    const began = Date.now();
    const rand = random(SEED + 7);
    // A tiny compaction threshold rewrites the journal every few records, so kills land during compactions too.
    const s = await serviceWithoutFrontend({ TASKD_JOURNAL_COMPACT: '2048' });
    const accepted = new Map<number, number>();
    const rids = new Map<number, number>();
    let nextNid = 1;
    let refused = 0;
    let killsMidCompaction = 0;
    for (let cycle = 0; cycle < KILL_CYCLES; cycle += 1) {
      const service = await s.start();
      const inFlight: Array<Promise<void>> = [];
      const burst = 3 + Math.floor(rand() * 8);
      for (let i = 0; i < burst; i += 1) {
        // Now and then the same nid twice in a row: the second is a duplicate unless the first already ended.
        const nid = rand() < 0.2 && nextNid > 1 ? nextNid - 1 : nextNid++;
        const rid = rids.get(nid) ?? 1 + Math.floor(rand() * 6);
        rids.set(nid, rid);
        inFlight.push(
          post(service.url, nid, rid, rand() < 0.7).then((status) => {
            if (status === 202) accepted.set(nid, (accepted.get(nid) ?? 0) + 1);
            else if (status !== 200) refused += 1;
          }),
        );
        if (rand() < 0.5) await sleep(rand() * 30);
      }
      // Some kills while answers are on their way: what was not answered 202 is not owed a run.
      if (rand() < 0.5) await Promise.all(inFlight);
      else await sleep(rand() * 40);
      service.child.kill('SIGKILL');
      await service.exited;
      await Promise.all(inFlight);
      // The next start removes it: a temporary file now means this kill cut a compaction short.
      const names = await fs.readdir(s.stateDir);
      if (names.some((n) => n.startsWith('journal.jsonl.'))) killsMidCompaction += 1;
    }
    const last = await s.start();
    await waitFor(
      async () => {
        const q = (await (await fetch(`${last.url}/v1/queue`, { headers: bearer })).json()) as { depth: number; starting: number; running: number };
        return q.depth + q.starting + q.running === 0;
      },
      { timeoutMs: 120_000, intervalMs: 100, what: 'every accepted task to end' },
    );
    const { lost, twice, laneOverlaps } = await checkRuns(s.records, accepted, rids);
    summary(
      `journal kill cycles: seed ${SEED}, kill cycles ${KILL_CYCLES}, answered 202 ${[...accepted.values()].reduce((a, b) => a + b, 0)}, not answered ${refused}, kills that left a compaction's temporary file ${killsMidCompaction}, lost ${lost.length}, run twice ${twice.length}, lane overlaps ${laneOverlaps}, ${seconds(began)} s`,
    );
    expect(lost).toEqual([]);
    expect(twice).toEqual([]);
    expect(laneOverlaps).toBe(0);
  });

  it('keeps a whole journal when the service is killed in the middle of a compaction', async () => {
    const began = Date.now();
    const s = await serviceWithoutFrontend();
    await fs.mkdir(s.stateDir, { recursive: true, mode: 0o700 });
    // Enough queued tasks that the compaction at start-up takes a while to write.
    const count = 30_000;
    const lines = Array.from({ length: count }, (_, i) =>
      JSON.stringify({ task: { ...newTask({ nid: i + 1, rid: 1 + (i % 50), type: 'verify', vid: null, changed: null, lane: null, state: 'queued', source: 'webhook', receivedAt: 1, confirmedAt: null }, 1_000) } }),
    );
    const file = path.join(s.stateDir, 'journal.jsonl');
    await fs.writeFile(file, `${lines.join('\n')}\n`, { mode: 0o600 });
    const pauseFile = path.join(s.dir, 'maintenance');
    await fs.writeFile(pauseFile, '');
    const child = spawn(process.execPath, [cliPath], { env: { PATH: process.env.PATH, TASKD_PORT: '0', ...s.env, TASKD_PAUSE_FILE: pauseFile }, stdio: 'ignore' });
    cleanup.push(() => child.exitCode === null && child.kill('SIGKILL'));
    let caught = false;
    for (let i = 0; i < 20_000 && child.exitCode === null; i += 1) {
      if ((await fs.readdir(s.stateDir)).some((n) => n.startsWith('journal.jsonl.'))) {
        child.kill('SIGKILL');
        caught = true;
        break;
      }
      await sleep(1);
    }
    await new Promise((resolve) => (child.exitCode === null && child.signalCode === null ? child.on('exit', resolve) : resolve(null)));
    expect(caught).toBe(true);
    const again = await s.start({ TASKD_PAUSE_FILE: pauseFile });
    const depth = ((await (await fetch(`${again.url}/v1/queue`, { headers: bearer })).json()) as { depth: number }).depth;
    summary(`journal killed mid-compaction: ${count} queued tasks in the journal, killed while its temporary file existed ${caught}, queued after the restart ${depth}, ${seconds(began)} s`);
    expect(depth).toBe(count);
  });

  it('answers 503 TASKD_ERR_JOURNAL_UNAVAILABLE on a full disk, and loses nothing it accepted before', async (context) => {
    const began = Date.now();
    const s = await serviceWithoutFrontend();
    await fs.mkdir(s.stateDir, { recursive: true });
    // A filesystem of its own, 128 KiB, so that the journal really meets a full disk.
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k,mode=0700', 'tmpfs', s.stateDir], { stdio: 'pipe' });
    } catch (error) {
      summary(`journal on a full disk: skipped, a small tmpfs cannot be mounted here (${(error as Error).message.split('\n')[0]})`);
      context.skip();
      return;
    }
    cleanup.push(() => execFileSync('umount', ['-l', s.stateDir]));
    const pauseFile = path.join(s.dir, 'maintenance');
    await fs.writeFile(pauseFile, '');
    const service = await s.start({ TASKD_PAUSE_FILE: pauseFile });
    const accepted = new Map<number, number>();
    const rids = new Map<number, number>();
    let firstRefusal: number | null = null;
    let refusals = 0;
    let code: string | null = null;
    for (let nid = 1; nid <= 3000 && refusals < 20; nid += 1) {
      rids.set(nid, 1 + (nid % 5));
      const body = JSON.stringify({ nid, rid: rids.get(nid) });
      const response = await fetch(`${service.url}/v1/tasks`, { method: 'POST', headers: bearer, body });
      const answer = (await response.json()) as { error?: string };
      if (response.status === 202) accepted.set(nid, 1);
      else {
        expect(response.status).toBe(503);
        code = answer.error ?? null;
        firstRefusal ??= nid;
        refusals += 1;
      }
    }
    expect(code).toBe('TASKD_ERR_JOURNAL_UNAVAILABLE');
    // A refused task was withdrawn, not left queued behind its 503: the live queue is what was accepted.
    const liveDepth = ((await (await fetch(`${service.url}/v1/queue`, { headers: bearer })).json()) as { depth: number }).depth;
    expect(liveDepth).toBe(accepted.size);
    service.child.kill('SIGKILL');
    await service.exited;
    // Back on the same full disk: every task answered 202 comes back, then runs once.
    const again = await s.start({ TASKD_PAUSE_FILE: pauseFile });
    const depth = ((await (await fetch(`${again.url}/v1/queue`, { headers: bearer })).json()) as { depth: number }).depth;
    expect(depth).toBe(accepted.size);
    await fs.rm(pauseFile);
    await waitFor(async () => (await s.records()).filter((r) => r.event === 'end').length >= accepted.size, { timeoutMs: 120_000, what: 'every accepted task to run' });
    const { lost, twice, laneOverlaps } = await checkRuns(s.records, accepted, rids);
    summary(`journal on a full disk: accepted ${accepted.size}, first refusal at request ${firstRefusal}, refused ${refusals} with ${code}, back after a SIGKILL ${depth}, lost ${lost.length}, run twice ${twice.length}, lane overlaps ${laneOverlaps}, ${seconds(began)} s`);
    expect(lost).toEqual([]);
    expect(twice).toEqual([]);
  });
});
