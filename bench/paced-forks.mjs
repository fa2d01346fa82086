// Why the 100/s row's tail is long (run on its own, after npm run build):
//   node bench/paced-forks.mjs      BENCH_PACED_COUNT=N (default 1000), BENCH_TASKD_DIST=dir for another build,
//   BENCH_PACED_NODE_ARGS="--flag …" for node itself in the service
// The latency bench's 100/s row, once, with bench/spawn-probe.mjs preloaded into the built service.
// Each replacement gate is a fork of the service, which holds its event loop until the child has
// exec'd; this sets every sample beside those spawns. A sample is slow when it is above the run's
// p90; for the slow ones and for the rest it counts how many had a spawn of the service running
// before their hand-off (the take of a warm gate), and after it until their command's clock, and how
// long each of the two parts took.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { latencyPaces, measureTaskdLatency } from './latency.mjs';
import { formatNumber } from './report.mjs';
import { benchDir } from './services.mjs';
import { makeSecret } from './signing.mjs';
import { ascending, percentile } from './stats.mjs';

const count = Number(process.env.BENCH_PACED_COUNT) || 1000;
const warmup = 50;
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegir-taskd-paced-forks-'));
const spawnFile = path.join(workDir, 'spawns.txt');
const ms = (from, to) => Number(to - from) / 1e6;
const f = formatNumber;

function readEvents() {
  const spawns = [];
  const takes = new Map();
  let misses = 0;
  for (const line of fs.readFileSync(spawnFile, 'utf8').trim().split('\n')) {
    const [kind, at, rest] = line.split(' ');
    if (kind === 'spawn') spawns.push({ from: BigInt(at), to: BigInt(rest) });
    else if (kind === 'take') takes.set(Number(rest), BigInt(at));
    else if (kind === 'miss') misses += 1;
  }
  return { spawns, takes, misses };
}

/** The samples file the latency bench keeps beside its records: nid, sent, started (ns), ms. */
function readSamples() {
  const name = fs.readdirSync(workDir).find((file) => file.endsWith('.records.samples'));
  return fs
    .readFileSync(path.join(workDir, name), 'utf8')
    .trim()
    .split('\n')
    .map((line) => line.split(' '))
    .filter(([, , started]) => started !== '-')
    .map(([nid, sent, started, latency]) => ({ nid: Number(nid), sent: BigInt(sent), started: BigInt(started), ms: Number(latency) }));
}

const p = (values, q) => f(percentile(ascending(values), q));

try {
  const { secret, key } = makeSecret();
  // services.mjs already starts BENCH_TASKD_DIST's build when it is set; named here for the report.
  const dist = process.env.BENCH_TASKD_DIST;
  const summary = await measureTaskdLatency({
    workDir,
    secret,
    key,
    count,
    warmup,
    pace: latencyPaces.paced,
    settings: { BENCH_SPAWN_FILE: spawnFile },
    nodeArgs: [...(process.env.BENCH_PACED_NODE_ARGS ?? '').split(' ').filter(Boolean), '--import', path.join(benchDir, 'spawn-probe.mjs')],
  });
  // The service flushes the probe's last lines as it exits, which it has once measureTaskdLatency returns.
  const { spawns, takes, misses } = readEvents();
  const samples = readSamples();
  const slowFrom = percentile(ascending(samples.map((s) => s.ms)), 90);
  const groups = { slow: [], rest: [] };
  for (const sample of samples) {
    // A start that found no gate waiting forked its own: it has no hand-off of its own to split at.
    const handedAt = takes.get(sample.nid);
    if (handedAt === undefined) continue;
    const before = spawns.some((s) => s.to > sample.sent && s.from < handedAt);
    const after = spawns.some((s) => s.to > handedAt && s.from < sample.started);
    (sample.ms > slowFrom ? groups.slow : groups.rest).push({ ...sample, handedAt, before, after });
  }
  const held = spawns.map((s) => ms(s.from, s.to));
  const lines = [
    `${count} tasks at 100/s${dist ? ` (${dist})` : ''}${process.env.BENCH_PACED_NODE_ARGS ? ` (node ${process.env.BENCH_PACED_NODE_ARGS})` : ''}: p50 / p99 ${f(summary.p50)} / ${f(summary.p99)} ms; ${spawns.length} spawns of the service, each holding its loop ${p(held, 50)} / ${p(held, 90)} / ${p(held, 99)} ms at p50 / p90 / p99 (longest ${f(Math.max(...held))} ms), ${f((held.reduce((a, b) => a + b, 0) / ((count + warmup) * 10)) * 100)} % of the row's time; ${misses} of ${takes.size + misses} starts found no warm gate`,
    '',
    '| Samples | count | a spawn of the service between send and hand-off | send → hand-off p50 / p90 ms | a spawn between hand-off and start | hand-off → start p50 / p90 ms |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const [label, group] of [
    [`slow (above the run's p90, ${f(slowFrom)} ms)`, groups.slow],
    ['the rest', groups.rest],
  ]) {
    const waited = group.map((s) => ms(s.sent, s.handedAt));
    const started = group.map((s) => ms(s.handedAt, s.started));
    lines.push(
      `| ${label} | ${group.length} | ${group.filter((s) => s.before).length} | ${p(waited, 50)} / ${p(waited, 90)} | ${group.filter((s) => s.after).length} | ${p(started, 50)} / ${p(started, 90)} |`,
    );
  }
  console.log(lines.join('\n'));
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}
