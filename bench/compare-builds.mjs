// Two builds of the service side by side, on the three queue-to-start rows (run on its own, after npm run build):
//   BENCH_COMPARE_DIST=dir node bench/compare-builds.mjs     dir: the other build, inside the checkout so its imports resolve
//   BENCH_COMPARE_SEGMENTS=N (default 6), BENCH_COMPARE_TASKS=N per segment (default 200), BENCH_COMPARE_BURSTS=N per segment (default 2)
//   BENCH_COMPARE_NODE_ARGS="--flag …" node's own flags for this build's services only (BENCH_COMPARE_DIST=dist compares a flag on one build)
// A change worth a few hundred microseconds is smaller than the drift of this machine from one minute
// to the next, which full runs one after the other cannot tell apart. Here each row runs in segments,
// fresh services each, in the order A B, B A, A B…, so both builds see the same minutes; the samples
// of each build are pooled. It prints a table and one line for the History in results.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LATENCY_PACING, latencyPaces, measureTaskdLatency, summarizeSamples } from './latency.mjs';
import { formatNumber, formatRatio, ratio } from './report.mjs';
import { benchDir } from './services.mjs';
import { makeSecret } from './signing.mjs';

const other = process.env.BENCH_COMPARE_DIST;
if (!other) throw new Error('BENCH_COMPARE_DIST must name the other build (for example a dist/ of the commit before, copied inside the checkout)');
const segments = Number(process.env.BENCH_COMPARE_SEGMENTS) || 6;
const tasks = Number(process.env.BENCH_COMPARE_TASKS) || 200;
const bursts = Number(process.env.BENCH_COMPARE_BURSTS) || 2;
const { burstSize, pacedPerSecond } = LATENCY_PACING;
const thisNodeArgs = (process.env.BENCH_COMPARE_NODE_ARGS ?? '').split(' ').filter(Boolean);
const builds = [
  { label: 'this', dist: path.join(benchDir, '..', 'dist'), nodeArgs: thisNodeArgs },
  { label: 'other', dist: path.resolve(other), nodeArgs: [] },
];
const rows = [
  { key: 'one at a time', pace: latencyPaces.oneAtATime, count: tasks, warmup: 20, settings: {} },
  { key: `${pacedPerSecond}/s`, pace: latencyPaces.paced, count: tasks, warmup: 20, settings: {} },
  { key: `bursts of ${burstSize}`, pace: latencyPaces.burst, count: bursts * burstSize, warmup: burstSize, settings: latencyPaces.burstSettings },
];

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegir-taskd-compare-'));
const { secret, key } = makeSecret();
const f = formatNumber;
try {
  const lines = ['| Row | this build p50 / p99 ms | other build p50 / p99 ms | this ÷ other |', '| --- | --- | --- | --- |'];
  const history = [];
  for (const row of rows) {
    const samples = { this: [], other: [] };
    let missing = 0;
    for (let segment = 1; segment <= segments; segment += 1) {
      const order = segment % 2 === 1 ? builds : [...builds].reverse();
      for (const build of order) {
        process.stderr.write(`${row.key}: ${build.label} build, segment ${segment} of ${segments}\n`);
        const result = await measureTaskdLatency({ workDir, secret, key, count: row.count, warmup: row.warmup, pace: row.pace, settings: row.settings, round: segment, dist: build.dist, label: build.label, nodeArgs: build.nodeArgs });
        samples[build.label].push(...result.samples);
        missing += result.missing;
      }
    }
    const mine = summarizeSamples(samples.this);
    const theirs = summarizeSamples(samples.other);
    const ratios = `${formatRatio(ratio(mine.p50, theirs.p50))} / ${formatRatio(ratio(mine.p99, theirs.p99))}`;
    lines.push(`| ${row.key} (${segments} segments of ${row.count} each) | ${f(mine.p50)} / ${f(mine.p99)} | ${f(theirs.p50)} / ${f(theirs.p99)} | ${ratios}${missing ? `, ${missing} never started` : ''} |`);
    history.push(`${row.key} ${f(mine.p50)} / ${f(mine.p99)} against ${f(theirs.p50)} / ${f(theirs.p99)} ms (${ratios})`);
  }
  process.stdout.write(`${lines.join('\n')}\n\nFor the History: builds interleaved in ${segments} segments (A B, B A…), this build${thisNodeArgs.length ? ` with node ${thisNodeArgs.join(' ')}` : ''} against ${other}, p50 / p99: ${history.join('; ')}.\n`);
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}
