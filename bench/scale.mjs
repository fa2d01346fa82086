import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../dist/config.js';
import { AegirStatus } from '../dist/frontend.js';
import { createMetrics } from '../dist/metrics.js';
import { Scheduler } from '../dist/scheduler.js';
import { runAutocannon, newNidPool } from './throughput.mjs';
import { pauseQueue, readQueue, readTreeRssBytes, settle, startTaskd } from './services.mjs';
import { median, sleep, waitUntil } from './stats.mjs';

const TASKS_PER_LANE = 10;

// ---- the running service -----------------------------------------------------

/** Signed webhooks into a paused service until `tasks` are queued over tasks/10 lanes; how long that takes, and what it costs in memory. */
export async function measureQueuedService({ workDir, secret, key, tasks }) {
  const lanes = Math.max(1, Math.floor(tasks / TASKS_PER_LANE));
  const service = await startTaskd({
    workDir,
    name: 'scale-taskd',
    secret,
    settings: { TASKD_RATE_LIMIT: '0', TASKD_COMMAND: JSON.stringify(['true', '{nid}']) },
  });
  try {
    await pauseQueue(service);
    await settle(1000);
    const rssIdle = readTreeRssBytes(service.pid);
    // Spare entries: autocannon builds a request or two per connection beyond the amount it sends.
    const pool = newNidPool(key, tasks + 64, 1, lanes);
    const run = await runAutocannon({ url: `${service.url}/v1/tasks`, pool, amount: tasks, pid: service.pid });
    const seconds = run.secondsToLastAnswer;
    const queue = await readQueue(service);
    await settle(2000);
    return { tasks, lanes, seconds, perSecond: tasks / seconds, queued: queue.depth, laneCount: queue.laneCount, rssIdle, rss: readTreeRssBytes(service.pid), statusCounts: run.statusCounts };
  } finally {
    await service.stop();
  }
}

// ---- the scheduler in-process --------------------------------------------------

const silentLog = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * Stands in for Aegir: each task is confirmed queued just before it starts, which is its attempt's
 * first await, so what is timed ends there, before any fork; after its run it reads as succeeded.
 */
function confirmingAegir() {
  const confirmed = new Set();
  return {
    listQueue: async () => [],
    getTask: async (nid) => {
      const status = confirmed.has(nid) ? AegirStatus.success : AegirStatus.queued;
      confirmed.add(nid);
      return { nid, status };
    },
    close: async () => undefined,
  };
}

function buildScheduler(logDir, concurrency) {
  const config = loadConfig({ TASKD_LOG_DIR: logDir, TASKD_COMMAND: JSON.stringify(['true', '{nid}']), TASKD_CONCURRENCY: String(concurrency) });
  let scheduler;
  const metrics = createMetrics(() => scheduler.stats(), false);
  scheduler = new Scheduler({ config, env: process.env, metrics, log: silentLog, frontend: confirmingAegir() });
  return scheduler;
}

/** The n-th task of a run: lanes round-robin, each task newer than the one before, as Aegir queues them. */
function nthTask(n, lanes, changedBase) {
  return { nid: n + 1, rid: 1 + (n % lanes), changed: changedBase + n, source: 'webhook', confirmedAt: null };
}

async function waitForNoneRunning(scheduler) {
  await waitUntil(() => scheduler.stats().running + scheduler.stats().starting === 0, { timeoutMs: 60_000, intervalMs: 5, what: 'the started tasks to end' });
}

/**
 * What resume() costs per task it starts, with `queued` tasks waiting: choosing the oldest ready lane
 * head and the synchronous start of its attempt, up to its first await (see buildScheduler).
 * Each round starts `batch` tasks and queues `batch` new ones, so the queue stays at its size.
 */
async function measureSchedulerAt({ queued, batch, rounds, logDir }) {
  const lanes = Math.max(1, Math.floor(queued / TASKS_PER_LANE));
  const scheduler = buildScheduler(logDir, batch);
  const changedBase = 1_700_000_000;
  let next = 0;
  try {
    scheduler.pause();
    const submitStart = process.hrtime.bigint();
    for (; next < queued; next += 1) scheduler.submit(nthTask(next, lanes, changedBase));
    const submitMicros = Number(process.hrtime.bigint() - submitStart) / 1000 / queued;
    const perChoice = [];
    for (let round = 0; round <= rounds; round += 1) {
      const before = process.hrtime.bigint();
      scheduler.resume();
      const micros = Number(process.hrtime.bigint() - before) / 1000;
      scheduler.pause();
      // Each waits for the stand-in's confirmation: starting, not yet running.
      const { starting, running } = scheduler.stats();
      const started = starting + running;
      if (started !== batch) throw new Error(`resume() started ${started} tasks, expected ${batch}`);
      // Round 0 warms the code paths up and is not counted.
      if (round > 0) perChoice.push(micros / batch);
      await waitForNoneRunning(scheduler);
      for (let i = 0; i < batch; i += 1, next += 1) scheduler.submit(nthTask(next, lanes, changedBase));
    }
    return { queued, lanes, submitMicros, chooseMicros: median(perChoice) };
  } finally {
    scheduler.close();
  }
}

// ---- the baseline: a poller's linear scan --------------------------------------

/** Oldest queued task whose lane is free, by looking at every row, as `ORDER BY changed LIMIT 1` on an unindexed table does. */
export function chooseByScan(tasks, busyLanes) {
  let best = -1;
  for (let i = 0; i < tasks.length; i += 1) {
    const task = tasks[i];
    if (task.state !== 'queued' || busyLanes.has(task.lane)) continue;
    if (best < 0 || task.changed < tasks[best].changed || (task.changed === tasks[best].changed && task.nid < tasks[best].nid)) best = i;
  }
  return best;
}

/** One row of the poller's table; a class keeps every row one shape, so the scan is as fast as plain JavaScript gets. */
class Row {
  constructor(n, lanes) {
    this.nid = n + 1;
    this.lane = 1 + (n % lanes);
    this.changed = n;
    this.state = 'queued';
  }
}

/** Fewer choices at larger sizes: one scan of 100,000 rows takes tens of milliseconds. */
function measureScanAt({ queued, rounds }) {
  const lanes = Math.max(1, Math.floor(queued / TASKS_PER_LANE));
  const batch = Math.max(5, Math.min(50, Math.floor(2_000_000 / queued)));
  const tasks = [];
  let next = 0;
  for (; next < queued; next += 1) tasks.push(new Row(next, lanes));
  const perChoice = [];
  for (let round = 0; round <= rounds; round += 1) {
    const busyLanes = new Set();
    const chosen = [];
    const before = process.hrtime.bigint();
    for (let i = 0; i < batch; i += 1) {
      const index = chooseByScan(tasks, busyLanes);
      tasks[index].state = 'running';
      busyLanes.add(tasks[index].lane);
      chosen.push(index);
    }
    const micros = Number(process.hrtime.bigint() - before) / 1000;
    if (round > 0) perChoice.push(micros / batch);
    // The ended rows make room for new queued ones, so the table keeps its size.
    for (const index of chosen) {
      tasks[index] = new Row(next, lanes);
      next += 1;
    }
  }
  return { queued, chooseMicros: median(perChoice) };
}

export async function measureChoosing({ workDir, sizes, batch, rounds }) {
  // The first size measured would otherwise time code V8 has not optimised yet: one round of warm-up
  // inside a size is 50 starts, far too few (1,000 queued read 15.9 µs cold and 4.9 µs right after).
  const warmupDir = path.join(workDir, 'scheduler-warmup');
  fs.mkdirSync(warmupDir, { recursive: true });
  await measureSchedulerAt({ queued: sizes[0], batch, rounds, logDir: warmupDir });
  measureScanAt({ queued: sizes[0], rounds: Math.min(rounds, 4) });
  const results = [];
  for (const queued of sizes) {
    const logDir = path.join(workDir, `scheduler-${queued}`);
    fs.mkdirSync(logDir, { recursive: true });
    const scheduler = await measureSchedulerAt({ queued, batch, rounds, logDir });
    const scan = measureScanAt({ queued, rounds: Math.min(rounds, 4) });
    results.push({ queued, lanes: scheduler.lanes, submitMicros: scheduler.submitMicros, taskdMicros: scheduler.chooseMicros, scanMicros: scan.chooseMicros });
    await sleep(100);
  }
  return results;
}
