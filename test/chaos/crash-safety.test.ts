import fs from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { AegirStatus } from '../../src/frontend.js';
import type { Behaviour } from '../../src/simulation/aegir-state.js';
import { FakeFrontend } from '../../src/simulation/fake-frontend.js';
import { ADMIN, TEST_KEY, TEST_SECRET, fixture, readRecords, signedHeaders, tempDir, waitFor } from '../helpers.js';
import { serviceEnvFor } from '../simulation.js';
import { startService, type ServiceProcess } from '../e2e/service-process.js';
import { KILL_CYCLES, SEED, printSummaryAfterAll, random, seconds, summary } from './chaos.js';
import { intervals, overlappingPairs, peakOverlap, groupBy } from '../intervals.js';

printSummaryAfterAll();

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ended = (status: number) => status !== AegirStatus.queued && status !== AegirStatus.processing;

describe('crash safety: SIGKILL to the service while webhooks keep arriving', () => {
  it(`runs every task Aegir queued exactly once, never two of a lane at once, and never restarts a task that was running at a kill (${KILL_CYCLES} kill cycles)`, async () => {
    const began = Date.now();
    const rand = random();
    const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
    const sim = new FakeFrontend({ key: TEST_KEY });
    await sim.listen();
    cleanup.push(() => sim.close());
    const logDir = await tempDir('taskd-chaos-crash-');
    const env = serviceEnvFor(sim, logDir);
    const services: ServiceProcess[] = [];
    cleanup.push(() => {
      for (const s of services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    });
    const start = async () => {
      const s = await startService(env);
      services.push(s);
      sim.serviceUrl = s.url;
      return s;
    };

    const runningAtKill = new Set<number>();
    let killsWithRunningTasks = 0;
    let webhooksLost = 0;
    const behaviours: Behaviour[] = ['success', 'success', 'success', 'warning', 'error'];
    const addTasks = (n: number) =>
      Array.from({ length: n }, () =>
        sim.addTask({ rid: 1 + Math.floor(rand() * 6), behaviour: pick(behaviours), seconds: 0.05 + rand() * 0.8, webhook: rand() > 0.25 }),
      );

    for (let cycle = 0; cycle < KILL_CYCLES; cycle += 1) {
      const service = await start();
      // Webhooks still in flight at the kill are part of the test: some of them are lost with the process.
      const sending = addTasks(2 + Math.floor(rand() * 6));
      if (cycle % 2 === 0) {
        // Every other kill waits for a task to be running, so that even a short run kills some mid-task.
        const long = await sim.addTask({ rid: 1 + Math.floor(rand() * 6), behaviour: 'success', seconds: 1 + rand() });
        await waitFor(() => sim.state.tasks.get(long.nid)!.status !== AegirStatus.queued, { timeoutMs: 30_000, what: `task ${long.nid} to start` });
      } else {
        await sleep(100 + rand() * 700);
      }
      const processing = [...sim.state.tasks.values()].filter((t) => t.status === AegirStatus.processing).map((t) => t.nid);
      service.child.kill('SIGKILL');
      expect((await service.exited).signal).toBe('SIGKILL');
      for (const nid of processing) runningAtKill.add(nid);
      if (processing.length > 0) killsWithRunningTasks += 1;
      await Promise.all(sending);
      // Queued while the service is down: these webhooks meet a closed port.
      await Promise.all(addTasks(Math.floor(rand() * 3)));
    }
    webhooksLost = sim.webhookResults.filter((r) => typeof r.status !== 'number' || r.status >= 500).length;

    const last = await start();
    const tasks = [...sim.state.tasks.values()];
    await waitFor(() => tasks.every((t) => ended(t.status)), {
      timeoutMs: 120_000,
      intervalMs: 100,
      what: `every task to end; still open: ${JSON.stringify(tasks.filter((t) => !ended(t.status)).map((t) => [t.nid, t.status]))}`,
    });

    const startedTwice = tasks.filter((t) => t.claims > 1).map((t) => t.nid);
    const neverRun = tasks.filter((t) => t.claims === 0).map((t) => t.nid);
    // Every hosting-task that got to run says so in <nid>.log, by starting or by refusing: more than one means
    // the service started the command again. (The header the service writes first does not count: a kill may
    // land between writing it and spawning.)
    const spawns = new Map<number, number>();
    for (const t of tasks) {
      const log = await fs.readFile(path.join(logDir, `${t.nid}.log`), 'utf8').catch(() => '');
      spawns.set(t.nid, log.match(/^(\[notice\] Task starts processing|This task is (not queued|already running))/gm)?.length ?? 0);
    }
    const spawnedTwice = [...spawns].filter(([, n]) => n > 1).map(([nid]) => nid);
    const laneOverlaps = [...groupBy(tasks, (t) => t.rid).values()].reduce(
      (sum, lane) => sum + overlappingPairs(lane.map((t) => ({ start: t.claimedAt!, end: t.finishedAt! }))),
      0,
    );
    const restartedAfterKill = [...runningAtKill].filter((nid) => sim.state.tasks.get(nid)!.claims !== 1 || spawns.get(nid) !== 1);
    const queue = (await (await request(`${last.url}/v1/queue`)).body.json()) as { orphans: unknown[] };

    summary(
      `crash safety: seed ${SEED}, kill cycles ${KILL_CYCLES}, tasks ${tasks.length}, webhooks lost ${webhooksLost}, ` +
        `kills with tasks running ${killsWithRunningTasks}, tasks running at a kill ${runningAtKill.size}, ` +
        `never run ${neverRun.length}, started twice ${startedTwice.length}, spawned twice ${spawnedTwice.length}, ` +
        `restarted after a kill ${restartedAfterKill.length}, lane overlaps ${laneOverlaps}, orphans ${queue.orphans.length}, ${seconds(began)} s`,
    );
    expect(neverRun).toEqual([]);
    expect(startedTwice).toEqual([]);
    expect(laneOverlaps).toBe(0);
    expect(restartedAfterKill).toEqual([]);
    const logsOf = async (nids: number[]) =>
      (await Promise.all(nids.map(async (nid) => `${nid}.log:\n${await fs.readFile(path.join(logDir, `${nid}.log`), 'utf8').catch(() => '')}`))).join('\n');
    expect(spawnedTwice, await logsOf(spawnedTwice)).toEqual([]);
    expect(queue.orphans).toEqual([]);
    // Some kill must have hit running tasks, or the run proved nothing about them.
    expect(runningAtKill.size).toBeGreaterThan(0);
  });

  it('holds the lane of a task whose child was spawned just before the crash, before its pid file was written', async () => {
    const dir = await tempDir('taskd-chaos-window-');
    const recordFile = path.join(dir, 'records');
    const env = {
      TASKD_SECRET: TEST_SECRET,
      TASKD_LOG_DIR: dir,
      TASKD_COMMAND: JSON.stringify([fixture('chaos-crash-at-spawn.sh'), '{nid}']),
      TASKD_CONCURRENCY: '4',
      RECORD_FILE: recordFile,
      CRASH_NID: '1',
      SLEEP_SECONDS: '1.5',
    };
    const post = async (url: string, task: Record<string, unknown>) => {
      const body = JSON.stringify(task);
      const response = await request(`${url}/v1/tasks`, { method: 'POST', body, headers: signedHeaders(body) }).catch((error: Error) => error);
      if (!(response instanceof Error)) await response.body.dump();
    };
    const first = await startService(env);
    cleanup.push(() => first.child.exitCode === null && first.child.signalCode === null && first.child.kill('SIGKILL'));
    await post(first.url, { nid: 1, rid: 1 });
    expect((await first.exited).signal).toBe('SIGKILL');
    const window = (await fs.readFile(path.join(dir, '1.window'), 'utf8')).trim();

    const second = await startService(env);
    cleanup.push(() => second.child.exitCode === null && second.child.kill('SIGKILL'));
    // The next task of the same site: it must wait for the child that survived the crash.
    await post(second.url, { nid: 2, rid: 1 });
    await waitFor(async () => (await readRecords(recordFile)).filter((r) => r.event === 'end').length === 2, { timeoutMs: 10_000, what: 'both tasks to end' });
    const runs = intervals(await readRecords(recordFile));
    const view = (await (await request(`${second.url}/v1/tasks/1`, { headers: ADMIN })).body.json()) as Record<string, unknown>;
    summary(`crash between spawn and pid file: pid file ${window} at the crash, task 1 after restart ${JSON.stringify(view.state ?? view.error)}, lane overlaps ${peakOverlap(runs) - 1}`);
    expect(runs.map((r) => r.nid).sort()).toEqual([1, 2]);
    expect(peakOverlap(runs), `pid file ${window} at the crash; task 1 after the restart: ${JSON.stringify(view)}`).toBe(1);
  });
});
