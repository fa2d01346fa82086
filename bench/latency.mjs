import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { startTaskd, startWebhook, webhookHooks, benchDir } from './services.mjs';
import { hexSignedTask, signedTask } from './signing.mjs';
import { ascending, percentile, sleep, wallClockNs } from './stats.mjs';

const fixture = path.join(benchDir, 'fixtures', 'record-start.sh');
/** Through sh, so the fixture needs no execute bit wherever the repo is checked out. */
const fixtureArgv = (recordFile) => ['/bin/sh', fixture, recordFile];

/**
 * The bench's send time and the fixture's `date +%s%N` must be one clock. Brackets a `date` call
 * between two readings of ours; a reading outside the bracket means the clocks disagree.
 */
export function checkClocks() {
  const before = wallClockNs();
  const date = BigInt(execFileSync('date', ['+%s%N'], { encoding: 'utf8' }).trim());
  const after = wallClockNs();
  const slackNs = 200_000n;
  return { agree: date >= before - slackNs && date <= after + slackNs, bracketMs: Number(after - before) / 1e6 };
}

/**
 * Follows the fixture's record file as it grows (inotify, with a slow poll as a safety net), so the
 * bench learns of each start without polling hard on the cores it is measuring.
 */
class StartRecords {
  #fd;
  #rest = '';
  #watcher;
  #poll;
  #waiters = new Map();
  starts = new Map();

  constructor(file) {
    fs.writeFileSync(file, '');
    this.#fd = fs.openSync(file, 'r');
    this.#watcher = fs.watch(file, () => this.#read());
    this.#poll = setInterval(() => this.#read(), 50);
  }

  #read() {
    const buffer = Buffer.alloc(64 * 1024);
    for (;;) {
      const bytes = fs.readSync(this.#fd, buffer, 0, buffer.length, null);
      if (bytes === 0) break;
      this.#rest += buffer.toString('utf8', 0, bytes);
    }
    const lines = this.#rest.split('\n');
    this.#rest = lines.pop();
    for (const line of lines) {
      const [nid, ns] = line.split(' ');
      if (!nid || !ns) continue;
      this.starts.set(Number(nid), BigInt(ns));
      this.#waiters.get(Number(nid))?.();
    }
  }

  /** Resolves true once nid has started, false after timeoutMs. */
  waitFor(nid, timeoutMs) {
    if (this.starts.has(nid)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(nid);
        resolve(false);
      }, timeoutMs);
      this.#waiters.set(nid, () => {
        clearTimeout(timer);
        this.#waiters.delete(nid);
        resolve(true);
      });
    });
  }

  async waitForAll(nids, timeoutMs) {
    await Promise.all(nids.map((nid) => this.waitFor(nid, timeoutMs)));
  }

  close() {
    this.#watcher.close();
    clearInterval(this.#poll);
    fs.closeSync(this.#fd);
  }
}

async function postTimed(url, { body, headers }, expectedStatus) {
  const sentAt = wallClockNs();
  const response = await request(url, { method: 'POST', body, headers });
  await response.body.dump();
  if (response.statusCode !== expectedStatus) throw new Error(`POST ${url} answered ${response.statusCode}, expected ${expectedStatus}`);
  return sentAt;
}

function summarize(records, sentAt) {
  const latenciesMs = [];
  for (const [nid, at] of sentAt) {
    const startedAt = records.starts.get(nid);
    if (startedAt !== undefined) latenciesMs.push(Number(startedAt - at) / 1e6);
  }
  return summarizeSamples(latenciesMs, sentAt.size - latenciesMs.length);
}

/** Percentiles of samples in ms, pooled over rounds when there are several; `samples` is kept for pooling. */
export function summarizeSamples(latenciesMs, missing = 0) {
  const sorted = ascending(latenciesMs);
  return {
    samples: sorted,
    count: sorted.length,
    missing,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.at(-1),
  };
}

/**
 * One task at a time: each webhook goes out once the previous task has started and a short gap has
 * let the runner finish its bookkeeping, so every sample starts from an idle service.
 */
async function sendSequentially({ total, gapMs, post, records }) {
  for (let i = 0; i < total; i += 1) {
    const nid = await post(i);
    await records.waitFor(nid, 5_000);
    await sleep(gapMs);
  }
}

/** Open loop: send i is due at start + i × interval, whatever the previous one cost, as a burst of Aegir tasks would arrive. */
async function sendPaced({ total, intervalMs, post }) {
  const start = performance.now();
  for (let i = 0; i < total; i += 1) {
    const wait = start + i * intervalMs - performance.now();
    if (wait > 0) await sleep(wait);
    await post(i);
  }
}

/**
 * Bursts: `size` webhooks for `size` different sites sent at once, as Aegir queues a batch (a
 * platform's migrate, a server's verify of every site); every task of a burst is timed from the
 * burst's first send, so the figure is how long the last of them waited. The next burst goes out once
 * all of this one have started and `gapMs` more have passed.
 */
async function sendBursts({ total, size, gapMs, post, records }) {
  for (let first = 0; first < total; first += size) {
    const burstStart = wallClockNs();
    const nids = await Promise.all(Array.from({ length: Math.min(size, total - first) }, (_, k) => post(first + k, burstStart)));
    await records.waitForAll(nids, 10_000);
    await sleep(gapMs);
  }
}

/** Distinct nids, and rids equal to them, so no lane or concurrency limit ever holds a task back. */
async function measureTarget({ url, build, expectedStatus, recordFile, count, warmup, pace }) {
  const records = new StartRecords(recordFile);
  const sentAt = new Map();
  const firstNid = 100_000;
  // from: the time the sample counts from, when it is not the send of this very webhook (a burst's first send).
  const post = async (i, from) => {
    const nid = firstNid + i;
    const at = await postTimed(url, build(nid), expectedStatus);
    if (i >= warmup) sentAt.set(nid, from ?? at);
    return nid;
  };
  try {
    const total = warmup + count;
    if (pace.mode === 'sequential') await sendSequentially({ total, gapMs: pace.gapMs, post, records });
    else if (pace.mode === 'burst') await sendBursts({ total, size: pace.size, gapMs: pace.gapMs, post, records });
    else await sendPaced({ total, intervalMs: pace.intervalMs, post });
    await records.waitForAll([...sentAt.keys()], 30_000);
    writeSamples(`${recordFile}.samples`, records, sentAt);
    return summarize(records, sentAt);
  } finally {
    records.close();
  }
}

/** Every sample in send order (nid, sent, started, ms), kept with the scratch folder to look for a pattern in the slow ones. */
function writeSamples(file, records, sentAt) {
  const lines = [...sentAt].map(([nid, at]) => {
    const startedAt = records.starts.get(nid);
    return `${nid} ${at} ${startedAt ?? '-'} ${startedAt === undefined ? '-' : (Number(startedAt - at) / 1e6).toFixed(3)}`;
  });
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
}

/** How the three rows pace their webhooks: `npm run bench` and compare-builds.mjs measure the same rows. */
export const LATENCY_PACING = { gapMs: 15, pacedPerSecond: 100, burstSize: 50, burstGapMs: 300 };
export const latencyPaces = {
  oneAtATime: { mode: 'sequential', gapMs: LATENCY_PACING.gapMs },
  paced: { mode: 'paced', intervalMs: 1000 / LATENCY_PACING.pacedPerSecond },
  burst: { mode: 'burst', size: LATENCY_PACING.burstSize, gapMs: LATENCY_PACING.burstGapMs },
  burstSettings: { TASKD_CONCURRENCY: String(LATENCY_PACING.burstSize) },
};

/** settings: extra TASKD_* settings, e.g. TASKD_JOURNAL=off to measure the same build without its journal; dist: another build's folder; nodeArgs: for node itself. */
export async function measureTaskdLatency({ workDir, secret, key, count, warmup, pace, settings = {}, round = 1, dist = null, label = '', nodeArgs = [] }) {
  const name = `latency-taskd${label ? `-${label}` : ''}-${pace.mode}${settings.TASKD_JOURNAL === 'off' ? '-no-journal' : ''}-${round}`;
  const recordFile = path.join(workDir, `${name}.records`);
  const service = await startTaskd({
    workDir,
    name,
    secret,
    settings: { TASKD_COMMAND: JSON.stringify([...fixtureArgv(recordFile), '{nid}']), TASKD_CONCURRENCY: '64', TASKD_RATE_LIMIT: '0', ...settings },
    dist,
    nodeArgs,
  });
  try {
    return await measureTarget({
      count,
      warmup,
      pace,
      recordFile,
      url: `${service.url}/v1/tasks`,
      build: (nid) => signedTask(key, nid, nid),
      expectedStatus: 202,
    });
  } finally {
    await service.stop();
  }
}

export async function measureWebhookLatency({ workDir, count, warmup, pace, round = 1 }) {
  const name = `latency-webhook-${pace.mode}-${round}`;
  const recordFile = path.join(workDir, `${name}.records`);
  const hmacSecret = 'bench-webhook-secret';
  const service = await startWebhook({ workDir, name, hooks: webhookHooks({ secret: hmacSecret, argv: fixtureArgv(recordFile) }) });
  try {
    return await measureTarget({
      count,
      warmup,
      pace,
      recordFile,
      url: service.hookUrl,
      build: (nid) => hexSignedTask(hmacSecret, nid, nid),
      expectedStatus: 200,
    });
  } finally {
    await service.stop();
  }
}

/** What no runner can beat: the bench itself spawning the fixture, from the spawn call to the fixture's clock reading. */
export async function measureFixtureFloor({ workDir, count }) {
  const recordFile = path.join(workDir, 'latency-floor.records');
  const records = new StartRecords(recordFile);
  const sentAt = new Map();
  try {
    for (let i = 0; i < count; i += 1) {
      const nid = 1 + i;
      sentAt.set(nid, wallClockNs());
      const [command, ...args] = [...fixtureArgv(recordFile), String(nid)];
      const child = spawn(command, args, { stdio: 'ignore' });
      await new Promise((resolve) => child.once('exit', resolve));
    }
    await records.waitForAll([...sentAt.keys()], 10_000);
    return summarize(records, sentAt);
  } finally {
    records.close();
  }
}

/**
 * Modelled, analytically (no sampling): the cron dispatcher starts a task at the next whole minute,
 * a wait uniform on 0–60 s; the one-second poller waits uniform 0–1 s for its next poll, then
 * sleeps 1 s before each task (hosting_queued). Quantile q of U(a, b) is a + q·(b − a).
 */
export function modelledWaits() {
  const uniform = (from, to) => (q) => (from + q * (to - from)) * 1000;
  const cron = uniform(0, 60);
  const poller = uniform(1, 2);
  return {
    cron: { p50: cron(0.5), p95: cron(0.95), p99: cron(0.99) },
    poller: { p50: poller(0.5), p95: poller(0.95), p99: poller(0.99) },
  };
}
