// The benchmark suite: `npm run bench` (builds first). Prints one table and writes it, with the machine
// it ran on, to bench/results.md. Only 127.0.0.1 is ever contacted, and every loop is bounded.
//
//   BENCH_QUICK=1           smaller counts, about a minute and a half; results.md says so and History is left alone
//   BENCH_IDLE_SECONDS=N    length of the idle window (default 60, 10 when quick)
//   BENCH_ONLY=a,b          only these sections (latency, throughput, idle, scale, dispatch); prints, writes nothing
//   BENCH_DISPATCH_SECONDS=N  length of the dispatch window, one scaled hour at 60 (default 60, 20 when quick)
//   BENCH_CPU_PROF=dir      every node service started here writes a .cpuprofile into dir when it stops
//   BENCH_TASKD_LOG_LEVEL   the services' TASKD_LOG_LEVEL (default info, as in production)
//   BENCH_LATENCY_ROUNDS=N  run each latency row N times, the services in turn, and pool the samples (default 1)
//   BENCH_KEEP=1            keep the scratch folder (service logs, task logs, start records)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LATENCY_PACING, checkClocks, latencyPaces, measureFixtureFloor, measureTaskdLatency, measureWebhookLatency, modelledWaits, summarizeSamples } from './latency.mjs';
import { CASES as DISPATCH_CASES, measureDispatch, TIME_SCALE } from './dispatch.mjs';
import { measureIdle, measureTaskdLeak, measureWebhookLeak } from './idle.mjs';
import {
  describeCommit,
  describeMachine,
  formatNumber,
  machineBusyPercent,
  formatRatio,
  megabytes,
  ratio,
  readHistory,
  renderResults,
  renderTable,
  triple,
  withUnit,
} from './report.mjs';
import { measureChoosing, measureQueuedService } from './scale.mjs';
import { benchDir, ensureWebhook, logLevel, repoRoot, webhookVersion } from './services.mjs';
import { makeSecret } from './signing.mjs';
import { median } from './stats.mjs';
import { measureBareFastify, measureTaskdDuplicates, measureTaskdNewNids, measureWebhookIntake } from './throughput.mjs';

const quick = process.env.BENCH_QUICK === '1';
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null;

/** Counts for a full run (about seven minutes on 2 cores) and for a quick one (about a minute and a half). */
const plan = {
  latency: {
    count: quick ? 200 : 1000,
    warmup: quick ? 20 : 50,
    ...LATENCY_PACING,
    floorCount: quick ? 100 : 300,
    bursts: quick ? 4 : 10,
    rounds: Number(process.env.BENCH_LATENCY_ROUNDS) || 1,
    // The one-at-a-time row in segments, the journal on and off in turn and each first as often as
    // last: one service after another, the same build's p50 moved by 15 % from a minute to the next,
    // more than the journal's own cost, and the run with it on always came first.
    segments: quick ? 2 : 4,
  },
  // Five rounds: the median of three moved by 5 % between runs on this 2-core machine.
  throughput: { seconds: quick ? 2 : 3, warmupSeconds: 1, rounds: quick ? 1 : 5 },
  // 30 s of settling: a service just started spends about 250 ms of CPU between 10 and 20 s after it is
  // ready (V8 finishing its start-up work), then next to nothing; a window opened at 10 s measured that tail.
  idle: { seconds: Number(process.env.BENCH_IDLE_SECONDS) || (quick ? 10 : 60), settleSeconds: 30 },
  leak: { tasks: quick ? 1000 : 10_000, warmupTasks: quick ? 200 : 1000 },
  scale: { tasks: quick ? 30_000 : 100_000, sizes: [1000, 10_000, 100_000], batch: 50, rounds: quick ? 6 : 12 },
  dispatch: { seconds: Number(process.env.BENCH_DISPATCH_SECONDS) || (quick ? 20 : 60) },
};

const SCALE_TARGET_TASKS = 100_000;

const TARGETS = {
  p99Ms: 10,
  webhookP50Ratio: 1.2,
  intakePerSecond: 5000,
  shareOfBareFastify: 0.5,
  timesWebhook: 10,
  idleCpuPercent: 0.1,
  idleRssMB: 80,
  leakMB: 5,
  scaleRssMB: 250,
  chooseGrowth: 2,
  journalLatencyRatio: 1.1,
  journalShareOfBareFastify: 0.45,
  idleDrushStarts: 0,
};

/** What the baselines do in an hour, whatever is due: the cron line starts drush every minute; hosting_queued polls the database every second. */
const CRON_DRUSH_STARTS_PER_HOUR = 60;
const QUEUED_POLLS_PER_HOUR = 3600;

function step(message) {
  process.stderr.write(`bench: ${message}\n`);
}

const ms = (values) => triple(values, 'ms');
const ratios = (ours, theirs) => (theirs ? ours.map((v, i) => formatRatio(ratio(v, theirs[i]))).join(' / ') : '—');
const count = (n) => n.toLocaleString('en-US');

// ---- 1. queue-to-start latency ---------------------------------------------------------

async function latencySection({ workDir, secret, key, webhook }) {
  const { count: tasks, warmup, gapMs, pacedPerSecond, floorCount, burstSize, bursts, burstGapMs, rounds, segments } = plan.latency;
  const clocks = checkClocks();
  if (!clocks.agree) throw new Error('the bench clock and `date +%s%N` disagree; queue-to-start cannot be measured on this machine');
  step(`latency: fixture floor (${floorCount} direct spawns)`);
  const floor = await measureFixtureFloor({ workDir, count: floorCount });
  const { oneAtATime, paced, burst, burstSettings } = latencyPaces;
  // Each row's services run in turn, aegir-taskd then adnanh/webhook, round after round, so a noisy
  // minute of the machine lands on both; the rounds' samples are pooled.
  const runs = { taskd: [], noJournal: [], hook: [], taskdPaced: [], hookPaced: [], taskdBurst: [], hookBurst: [] };
  const perSegment = Math.ceil(tasks / segments);
  const oneAtATimeTasks = perSegment * segments * rounds;
  for (let round = 1; round <= rounds; round += 1) {
    const of = rounds > 1 ? ` (round ${round} of ${rounds})` : '';
    for (let segment = 1; segment <= segments; segment += 1) {
      const part = `${round}.${segment}`;
      const ofSegment = ` (segment ${segment} of ${segments}${rounds > 1 ? `, round ${round} of ${rounds}` : ''})`;
      const withJournal = async () => {
        step(`latency: aegir-taskd, ${count(perSegment)} tasks one at a time${ofSegment}`);
        runs.taskd.push(await measureTaskdLatency({ workDir, secret, key, count: perSegment, warmup, pace: oneAtATime, round: part }));
      };
      const withoutJournal = async () => {
        step(`latency: aegir-taskd with TASKD_JOURNAL=off, ${count(perSegment)} tasks one at a time${ofSegment}`);
        runs.noJournal.push(await measureTaskdLatency({ workDir, secret, key, count: perSegment, warmup, pace: oneAtATime, settings: { TASKD_JOURNAL: 'off' }, round: part }));
      };
      // On, webhook, off; then off, webhook, on: each build as often first as last.
      const [first, last] = segment % 2 === 1 ? [withJournal, withoutJournal] : [withoutJournal, withJournal];
      await first();
      step(`latency: adnanh/webhook, ${count(perSegment)} tasks one at a time${ofSegment}`);
      if (webhook) runs.hook.push(await measureWebhookLatency({ workDir, count: perSegment, warmup, pace: oneAtATime, round: part }));
      await last();
    }
    step(`latency: aegir-taskd, ${count(tasks)} tasks at ${pacedPerSecond}/s${of}`);
    runs.taskdPaced.push(await measureTaskdLatency({ workDir, secret, key, count: tasks, warmup, pace: paced, round }));
    step(`latency: adnanh/webhook, ${count(tasks)} tasks at ${pacedPerSecond}/s${of}`);
    if (webhook) runs.hookPaced.push(await measureWebhookLatency({ workDir, count: tasks, warmup, pace: paced, round }));
    step(`latency: aegir-taskd, ${bursts} bursts of ${burstSize}${of}`);
    runs.taskdBurst.push(await measureTaskdLatency({ workDir, secret, key, count: bursts * burstSize, warmup: burstSize, pace: burst, settings: burstSettings, round }));
    step(`latency: adnanh/webhook, ${bursts} bursts of ${burstSize}${of}`);
    if (webhook) runs.hookBurst.push(await measureWebhookLatency({ workDir, count: bursts * burstSize, warmup: burstSize, pace: burst, round }));
  }
  const pooled = (list) => (list.length ? summarizeSamples(list.flatMap((r) => r.samples), list.reduce((sum, r) => sum + r.missing, 0)) : null);
  const taskd = pooled(runs.taskd);
  const taskdNoJournal = pooled(runs.noJournal);
  const hook = pooled(runs.hook);
  const model = modelledWaits();
  const pick = (r) => (r ? [r.p50, r.p95, r.p99] : null);
  const webhookName = webhook ? `adnanh/webhook ${webhook}` : 'adnanh/webhook (not installed)';
  const parityTarget = `p99 ≤ adnanh/webhook's, p50 ≤ ${TARGETS.webhookP50Ratio}× its`;
  /** The target of issue-level parity: as fast as adnanh/webhook measured beside it, not an absolute figure. */
  const parity = (ours, theirs) => (theirs === null ? null : ours.missing === 0 && ours.p99 <= theirs.p99 && ours.p50 <= TARGETS.webhookP50Ratio * theirs.p50);
  const latencyRows = [
    { key: 'one at a time', measure: `Queue-to-start p50 / p95 / p99, ${count(oneAtATimeTasks)} tasks sent one at a time`, ours: taskd, theirs: hook },
    { key: `${pacedPerSecond}/s`, measure: `Queue-to-start p50 / p95 / p99, ${count(tasks * rounds)} tasks at ${pacedPerSecond}/s (open loop)`, ours: pooled(runs.taskdPaced), theirs: pooled(runs.hookPaced) },
    {
      key: `bursts of ${burstSize}`,
      measure: `Queue-to-start p50 / p95 / p99, ${count(bursts * rounds)} bursts of ${burstSize} webhooks for ${burstSize} sites sent at once (TASKD_CONCURRENCY=${burstSize}), from the burst's first send`,
      ours: pooled(runs.taskdBurst),
      theirs: pooled(runs.hookBurst),
    },
  ];
  const rows = latencyRows.map((row) => ({
    measure: row.measure,
    ours: ms(pick(row.ours)),
    baseline: webhookName,
    theirs: row.theirs ? ms(pick(row.theirs)) : '—',
    ratio: ratios(pick(row.ours), pick(row.theirs)),
    target: parityTarget,
    met: parity(row.ours, row.theirs),
  }));
  const measure = latencyRows[0].measure;
  const target = `p99 ≤ ${TARGETS.p99Ms} ms`;
  const met = taskd.missing === 0 && taskd.p99 <= TARGETS.p99Ms;
  const ours = pick(taskd);
  rows.splice(
    1,
    0,
    { measure, ours: ms(ours), baseline: 'cron dispatcher, once a minute (modelled)', theirs: ms(pick(model.cron)), ratio: ratios(ours, pick(model.cron)), target, met },
    { measure, ours: ms(ours), baseline: 'one-second poller, 1 s sleep per task (modelled)', theirs: ms(pick(model.poller)), ratio: ratios(ours, pick(model.poller)), target, met },
  );
  const journalCost = [ratio(taskd.p50, taskdNoJournal.p50), ratio(taskd.p99, taskdNoJournal.p99)];
  rows.push({
    measure: `Queue-to-start p50 / p99 with the journal on, ${count(oneAtATimeTasks)} tasks one at a time`,
    ours: ms([taskd.p50, taskd.p99]),
    baseline: 'the same build, TASKD_JOURNAL=off',
    theirs: ms([taskdNoJournal.p50, taskdNoJournal.p99]),
    ratio: journalCost.map(formatRatio).join(' / '),
    target: `≤ ${TARGETS.journalLatencyRatio}× at p50 and p99`,
    met: journalCost.every((r) => r !== null && r <= TARGETS.journalLatencyRatio),
  });
  const missing = Object.values(runs).flat().reduce((sum, r) => sum + r.missing, 0);
  const perRound = (list) => list.map((r) => `${formatNumber(r.p50)} / ${formatNumber(r.p99)}`).join(', ');
  const spread =
    rounds > 1 || segments > 1
      ? ` p50 / p99 of each service run (one at a time: each segment), ms: ${latencyRows.map((row, i) => `${row.key}: aegir-taskd ${perRound([runs.taskd, runs.taskdPaced, runs.taskdBurst][i])}; adnanh/webhook ${perRound([runs.hook, runs.hookPaced, runs.hookBurst][i])}`).join('; ')}.`
      : '';
  const notes = [
    `Queue-to-start: from just before the bench sends the signed webhook to the fixture's own \`date +%s%N\` as its first act (bench/fixtures/record-start.sh, run through /bin/sh by both services, with distinct nids and rids, TASKD_CONCURRENCY=64 unless said otherwise, rate limit off). The bench reads the same wall clock in nanoseconds (performance.timeOrigin + performance.now()); a \`date\` call bracketed by two readings agreed. "One at a time": each webhook goes out once the previous task has started, plus ${gapMs} ms. ${warmup} warm-up tasks first, not counted (one burst before the bursts). Bursts: ${burstSize} webhooks sent at once over ${burstSize} connections, each timed from the burst's first send; the next burst ${burstGapMs} ms after the last of one started. ${rounds} round(s), each service in turn within a round, samples pooled; within a round the one-at-a-time row runs in ${segments} segments of ${count(perSegment)} tasks, fresh services each, in the order journal on, adnanh/webhook, journal off, then the reverse, so that the journal's ratio compares the same minutes of the machine.${spread} Max: aegir-taskd ${withUnit(taskd.max, 'ms')}, adnanh/webhook ${hook ? withUnit(hook.max, 'ms') : '—'}.${missing ? ` ${missing} task(s) never recorded a start.` : ''}`,
    `The fixture's own floor (the bench spawning it directly, spawn call to its clock reading; a ${os.cpus().length}-core machine with the bench on it): p50 ${withUnit(floor.p50, 'ms')}, p99 ${withUnit(floor.p99, 'ms')}. Every queue-to-start figure includes it.`,
    'Modelled baselines are analytic, not sampled: the cron dispatcher waits U(0, 60 s) for the next minute (quantile q is 60·q s); the one-second poller waits U(0, 1 s) for its next poll and then sleeps 1 s before each task (1 + q s). Neither counts the time drush takes to boot.',
  ];
  const latency = latencyRows.map((row) => ({ key: row.key, ours: row.ours && [row.ours.p50, row.ours.p99], theirs: row.theirs && [row.theirs.p50, row.theirs.p99], met: parity(row.ours, row.theirs) }));
  return { rows, notes, summary: { p99: taskd.p99, latency, journalCost } };
}

// ---- 2. intake throughput ---------------------------------------------------------------

async function throughputSection({ workDir, secret, key, webhook }) {
  const { seconds, warmupSeconds, rounds } = plan.throughput;
  const runs = { bare: [], fresh: [], noJournal: [], duplicates: [], hook: [] };
  for (let round = 1; round <= rounds; round += 1) {
    step(`throughput: round ${round} of ${rounds} (${seconds} s each: bare fastify, new nids, duplicates${webhook ? ', adnanh/webhook' : ''})`);
    runs.bare.push(await measureBareFastify({ workDir, key, seconds, warmupSeconds }));
    runs.fresh.push(await measureTaskdNewNids({ workDir, secret, key, seconds, warmupSeconds }));
    runs.noJournal.push(await measureTaskdNewNids({ workDir, secret, key, seconds, warmupSeconds, settings: { TASKD_JOURNAL: 'off' } }));
    runs.duplicates.push(await measureTaskdDuplicates({ workDir, secret, key, seconds, warmupSeconds }));
    if (webhook) runs.hook.push(await measureWebhookIntake({ workDir, seconds, warmupSeconds }));
  }
  const rate = (list) => (list.length ? median(list.map((r) => r.requestsPerSecond)) : null);
  const cpu = (list) => (list.length ? median(list.map((r) => r.serverCpu * 100)) : null);
  const bare = rate(runs.bare);
  const hook = rate(runs.hook);
  const perSecond = (v) => withUnit(v, '/s');
  const rows = [];
  for (const [kind, list] of [['new nids', runs.fresh], ['duplicate nids', runs.duplicates]]) {
    const ours = rate(list);
    const share = ratio(ours, bare);
    const times = ratio(ours, hook);
    const measure = `Signed intake, ${kind} (requests/s, rate limit off, queue paused)`;
    rows.push({
      measure,
      ours: perSecond(ours),
      baseline: 'bare fastify route, same fastify',
      theirs: perSecond(bare),
      ratio: formatRatio(share),
      target: `≥ ${count(TARGETS.intakePerSecond)}/s and ≥ ${TARGETS.shareOfBareFastify}×`,
      met: ours >= TARGETS.intakePerSecond && share !== null && share >= TARGETS.shareOfBareFastify,
    });
    rows.push({
      measure,
      ours: perSecond(ours),
      baseline: webhook ? `adnanh/webhook ${webhook}, HMAC rule` : 'adnanh/webhook (not installed)',
      theirs: perSecond(hook),
      ratio: formatRatio(times),
      target: `≥ ${TARGETS.timesWebhook}×`,
      met: times === null ? null : times >= TARGETS.timesWebhook,
    });
  }
  const fresh = rate(runs.fresh);
  rows.push({
    measure: 'Signed intake, new nids, journal on (requests/s, rate limit off, queue paused)',
    ours: perSecond(fresh),
    baseline: 'the same build, TASKD_JOURNAL=off; and bare fastify',
    theirs: `${perSecond(rate(runs.noJournal))}; ${perSecond(bare)}`,
    ratio: `${formatRatio(ratio(fresh, rate(runs.noJournal)))}; ${formatRatio(ratio(fresh, bare))}`,
    target: `≥ ${TARGETS.journalShareOfBareFastify}× bare fastify`,
    met: ratio(fresh, bare) !== null && ratio(fresh, bare) >= TARGETS.journalShareOfBareFastify,
  });
  const unexpected = [...runs.fresh, ...runs.noJournal, ...runs.duplicates, ...runs.bare, ...runs.hook].reduce((sum, r) => sum + r.unexpected, 0);
  const each = (list) => list.map((r) => formatNumber(r.requestsPerSecond)).join(', ');
  const notes = [
    `Intake: autocannon, 16 connections, no pipelining, ${rounds} round(s) of ${seconds} s after a ${warmupSeconds} s warm-up, fresh processes each round; the median round is shown (per round, /s: bare fastify ${each(runs.bare)}; new nids ${each(runs.fresh)}; new nids without the journal ${each(runs.noJournal)}; duplicates ${each(runs.duplicates)}${webhook ? `; adnanh/webhook ${each(runs.hook)}` : ''}). Every request is signed before the run, each with its own webhook-id. New nids answer 202; duplicates (1,000 queued nids sent again, as Aegir re-sends) answer 200. Unexpected answers or errors: ${unexpected}.`,
    `aegir-taskd runs with TASKD_RATE_LIMIT=0, TASKD_LOG_LEVEL=${logLevel()} (its log goes to a file) and its queue paused (POST /v1/queue/pause), so intake alone is measured. adnanh/webhook has no queue: each request it accepts checks a hex HMAC-SHA256 of the body (payload-hmac-sha256) and runs \`/bin/true <nid>\` at once.`,
    `Client and servers share the machine's ${os.cpus().length} cores. Server CPU during the runs, median, % of one core: bare fastify ${formatNumber(cpu(runs.bare))}, aegir-taskd new nids ${formatNumber(cpu(runs.fresh))}, duplicates ${formatNumber(cpu(runs.duplicates))}${webhook ? `, adnanh/webhook ${formatNumber(cpu(runs.hook))} (its children not counted)` : ''}. A server well under 100% was waiting on the client, so its figure is a floor.`,
  ];
  return { rows, notes, summary: { fresh: rate(runs.fresh), duplicates: rate(runs.duplicates), shareOfBare: ratio(fresh, bare) } };
}

// ---- 3. idle cost and leak check -----------------------------------------------------------

async function idleSection({ workDir, secret, key, webhook }) {
  step(`idle: ${plan.idle.seconds} s, aegir-taskd${webhook ? ' and adnanh/webhook side by side' : ''}`);
  const idle = await measureIdle({ workDir, secret, seconds: plan.idle.seconds, settleSeconds: plan.idle.settleSeconds, withWebhook: Boolean(webhook) });
  step(`leak check: aegir-taskd, ${count(plan.leak.warmupTasks)} + ${count(plan.leak.tasks)} tasks`);
  const leak = await measureTaskdLeak({ workDir, secret, key, ...plan.leak });
  step(`leak check: adnanh/webhook, ${count(plan.leak.warmupTasks)} + ${count(plan.leak.tasks)} tasks`);
  const hookLeak = webhook ? await measureWebhookLeak({ workDir, ...plan.leak }) : null;
  const baseline = webhook ? `adnanh/webhook ${webhook}` : 'adnanh/webhook (not installed)';
  const mb = (bytes) => withUnit(megabytes(bytes), 'MB');
  const rows = [
    {
      measure: `Idle CPU over ${plan.idle.seconds} s (% of one core), the service and its waiting start processes`,
      ours: withUnit(idle.taskd.cpuPercentOfCore, '%'),
      baseline,
      theirs: idle.webhook ? withUnit(idle.webhook.cpuPercentOfCore, '%') : '—',
      ratio: formatRatio(ratio(idle.taskd.cpuPercentOfCore, idle.webhook?.cpuPercentOfCore ?? null)),
      target: `≤ ${TARGETS.idleCpuPercent}%`,
      met: idle.taskd.cpuPercentOfCore <= TARGETS.idleCpuPercent,
    },
    {
      measure: 'Idle RSS, end of the idle window, the service and its waiting start processes',
      ours: mb(idle.taskd.rssBytes),
      baseline,
      theirs: idle.webhook ? mb(idle.webhook.rssBytes) : '—',
      ratio: formatRatio(ratio(idle.taskd.rssBytes, idle.webhook?.rssBytes ?? null)),
      target: `≤ ${TARGETS.idleRssMB} MB`,
      met: megabytes(idle.taskd.rssBytes) <= TARGETS.idleRssMB,
    },
    {
      measure: `RSS growth over ${count(plan.leak.tasks)} tasks run, after ${count(plan.leak.warmupTasks)} warm-up tasks; both readings after a full GC`,
      ours: mb(leak.growth),
      baseline: null,
      theirs: null,
      ratio: null,
      target: `≤ ${TARGETS.leakMB} MB`,
      met: megabytes(leak.growth) <= TARGETS.leakMB,
    },
    {
      measure: `RSS growth over the same ${count(plan.leak.tasks)} tasks, as found (no forced GC)`,
      ours: mb(leak.growthAsFound),
      baseline,
      theirs: hookLeak ? mb(hookLeak.growthAsFound) : '—',
      ratio: formatRatio(ratio(leak.growthAsFound, hookLeak?.growthAsFound ?? null)),
      target: null,
      met: null,
    },
    {
      measure: `RSS after those ${count(plan.leak.tasks)} tasks, as found`,
      ours: mb(leak.after.rss),
      baseline,
      theirs: hookLeak ? mb(hookLeak.rssAfter) : '—',
      ratio: formatRatio(ratio(leak.after.rss, hookLeak?.rssAfter ?? null)),
      target: null,
      met: null,
    },
  ];
  const notes = [
    `Idle: utime + stime from /proc/<pid>/stat and VmRSS from /proc/<pid>/status over ${plan.idle.seconds} s, summed over the process and its children (aegir-taskd: the service ${mb(idle.taskd.ownRssBytes)} and ${idle.taskd.children} waiting start process${idle.taskd.children === 1 ? '' : 'es'} (TASKD_WARM_STARTS) ${mb(idle.taskd.rssBytes - idle.taskd.ownRssBytes)}, shared library pages counted in each; adnanh/webhook has no children while idle), no requests, opened ${idle.settleSeconds} s after the service was ready (aegir-taskd used ${withUnit(idle.taskd.startupCpu, 's')} of CPU to start and ${withUnit(idle.taskd.settlingCpu * 1000, 'ms')} in those ${idle.settleSeconds} s); aegir-taskd with its defaults apart from port, secret, log folder and command (no frontend, so no reconcile timer). Highest RSS seen in the window: aegir-taskd ${mb(idle.taskd.rssMaxBytes)}${idle.webhook ? `, adnanh/webhook ${mb(idle.webhook.rssMaxBytes)}` : ''}.`,
    `Leak check: signed webhooks, 16 in flight, distinct nids and rids, TASKD_CONCURRENCY=64, command \`true <nid>\`; memory read 2 s after the queue is empty. The full GC is HeapProfiler.collectGarbage through the inspector (the leak-check service alone runs with --inspect on loopback), so garbage V8 had not yet collected does not count as growth. aegir-taskd: RSS ${mb(leak.rssStart)} at start; after the warm-up ${mb(leak.before.rss)} as found, ${mb(leak.before.rssAfterGc)} after GC, live JS heap ${mb(leak.before.heapUsed)}; after the counted tasks ${mb(leak.after.rss)}, ${mb(leak.after.rssAfterGc)}, heap ${mb(leak.after.heapUsed)} (heap growth ${mb(leak.heapGrowth)}; ${formatNumber(leak.tasksPerSecond)} tasks/s run).${hookLeak ? ` adnanh/webhook (Go, no GC forced): ${mb(hookLeak.rssStart)} at start, ${mb(hookLeak.rssBefore)} after the warm-up, ${mb(hookLeak.rssAfter)} after the counted tasks.` : ''}`,
  ];
  return { rows, notes, summary: { idleCpu: idle.taskd.cpuPercentOfCore, idleRss: idle.taskd.rssBytes, growth: leak.growth } };
}

// ---- 4. scale ----------------------------------------------------------------------------

async function scaleSection({ workDir, secret, key }) {
  const { tasks, sizes, batch, rounds } = plan.scale;
  step(`scale: ${count(tasks)} signed webhooks into a paused aegir-taskd`);
  const service = await measureQueuedService({ workDir, secret, key, tasks });
  step(`scale: choosing the next task at ${sizes.map(count).join(', ')} queued`);
  const choosing = await measureChoosing({ workDir, sizes, batch, rounds });
  const rows = [
    {
      measure: `Accept ${count(tasks)} signed webhooks over ${count(service.lanes)} lanes (queue paused)`,
      ours: `${withUnit(service.seconds, 's')} (${withUnit(service.perSecond, '/s')})`,
      baseline: null,
      theirs: null,
      ratio: null,
      target: null,
      met: service.queued === tasks ? null : false,
    },
    {
      measure: `RSS with ${count(service.queued)} tasks queued over ${count(service.laneCount)} lanes`,
      ours: withUnit(megabytes(service.rss), 'MB'),
      baseline: null,
      theirs: null,
      ratio: null,
      // The target is set for 100,000 queued; a quick run queues fewer and is not judged.
      target: tasks === SCALE_TARGET_TASKS ? `≤ ${TARGETS.scaleRssMB} MB` : null,
      met: service.queued !== tasks ? false : tasks === SCALE_TARGET_TASKS ? megabytes(service.rss) <= TARGETS.scaleRssMB : null,
    },
  ];
  for (const size of choosing) {
    rows.push({
      measure: `Choose the next task, ${count(size.queued)} queued over ${count(size.lanes)} lanes (µs per task started)`,
      ours: withUnit(size.taskdMicros, 'µs'),
      baseline: 'linear scan for the oldest free lane head',
      theirs: withUnit(size.scanMicros, 'µs'),
      ratio: formatRatio(ratio(size.taskdMicros, size.scanMicros)),
      target: null,
      met: null,
    });
  }
  const first = choosing[0];
  const last = choosing.at(-1);
  const growth = ratio(last.taskdMicros, first.taskdMicros);
  const scanGrowth = ratio(last.scanMicros, first.scanMicros);
  rows.push({
    measure: `Growth of choosing time, ${count(first.queued)} → ${count(last.queued)} queued`,
    ours: formatRatio(growth),
    baseline: 'linear scan',
    theirs: formatRatio(scanGrowth),
    ratio: formatRatio(ratio(growth, scanGrowth)),
    target: `≤ ${TARGETS.chooseGrowth}× (flat)`,
    met: growth <= TARGETS.chooseGrowth,
  });
  const notes = [
    `Scale: autocannon sends ${count(tasks)} signed webhooks (distinct nids, rids round-robin over ${count(service.lanes)} lanes) to a paused service; time from the first request to the last answer (answers: ${JSON.stringify(service.statusCounts)}; queue depth after: ${count(service.queued)}). RSS 2 s later, of the service and its waiting start processes; ${withUnit(megabytes(service.rssIdle), 'MB')} before the first webhook.`,
    `Choosing the next task is measured in-process on the built Scheduler (dist/scheduler.js, as the tests build it): ${sizes.map(count).join(', ')} tasks queued while paused, 10 per lane; then resume() with TASKD_CONCURRENCY=${batch} starts ${batch} tasks, and its time over ${batch} is the cost of one choice plus the synchronous start of its attempt up to its first await: a stand-in for Aegir confirms each task queued just before it starts (that is the await; a confirmed task would start in the same turn, fork included, which is not choosing), and the spawn happens after, outside the figure. Median of ${rounds} rounds after one warm-up round, and a whole discarded pass at ${count(sizes[0])} first, so the first size is not timed on unoptimised code; each round queues ${batch} new tasks so the size holds. Queuing one task in-process (submit) took ${choosing.map((c) => withUnit(c.submitMicros, 'µs')).join(', ')} at those sizes.`,
    'The baseline is what a polling daemon asks its database for each time: the oldest queued row whose lane has nothing running, found by looking at every row (bench/scale.mjs, chooseByScan), at the same sizes.',
  ];
  return { rows, notes, summary: { scaleRss: service.rss, chooseMicros: last.taskdMicros } };
}

// ---- 5. dispatching hosting's other queues -------------------------------------------------

async function dispatchSection({ workDir, secret, key }) {
  const { seconds } = plan.dispatch;
  const hours = (seconds * TIME_SCALE) / 3600;
  step(`dispatch: ${DISPATCH_CASES.length} services side by side for ${seconds} s (${formatNumber(hours)} h with every time ÷${TIME_SCALE})`);
  const cases = await measureDispatch({ workDir, secret, key, windowSeconds: seconds });
  const rows = [];
  for (const c of cases) {
    const idle = c.name === 'nothing due';
    rows.push({
      measure: `Drush starts an hour, ${c.name}, default settings (scaled window)`,
      ours: formatNumber(c.drushStartsPerHour),
      baseline: 'cron line: hosting-dispatch every minute (modelled)',
      theirs: count(CRON_DRUSH_STARTS_PER_HOUR),
      ratio: formatRatio(ratio(c.drushStartsPerHour, CRON_DRUSH_STARTS_PER_HOUR)),
      target: idle ? `${TARGETS.idleDrushStarts} while nothing is due` : null,
      met: idle ? c.drushStartsPerHour === TARGETS.idleDrushStarts : null,
    });
    rows.push({
      measure: `Frontend requests an hour (web requests, not drush starts), ${c.name}`,
      ours: formatNumber(c.frontendRequestsPerHour),
      baseline: 'hosting_queued: a database poll every second (modelled)',
      theirs: `${count(QUEUED_POLLS_PER_HOUR)} polls`,
      ratio: formatRatio(ratio(c.frontendRequestsPerHour, QUEUED_POLLS_PER_HOUR)),
      target: null,
      met: null,
    });
  }
  const detail = cases.map((c) => `${c.name}: ${c.drushStarts} drush starts and ${c.frontendRequests} frontend requests in the window, queue runs ${JSON.stringify(c.queueRuns)}`).join('; ');
  const notes = [
    `Dispatch: a measured window of ${seconds} s scaled to an hour by dividing every time by ${TIME_SCALE}: the service's defaults (TASKD_RECONCILE_INTERVAL 60 s, TASKD_DISPATCH_MIN_INTERVAL 60 s, TASKD_CONFIRM_MAX_AGE 5 s, TASKD_DISPATCH_TIMEOUT 600 s) and the queues' frequencies, so ${seconds} s stand for ${formatNumber(hours)} h and the counts are multiplied by ${formatNumber(1 / hours)}. One built service per case, side by side, each against its own simulated Aegir (src/simulation: the module's queue listing with due times, and a fake hosting-dispatch that runs what is due as drush_hosting_dispatch() does); a drush start is one run of that fake the service started, a frontend request one signed GET that reached the module's endpoints. "Nothing due": cron every 7,200 s and backup daily, both just run. "Cron queue due every 600 s": hosting_cron's batch queue of an hour over its 6 threads at least. "Always due": calc_frequency 0, as a batch queue over many sites; the cron line would run it every minute too. In the window: ${detail}.`,
    `Baselines are modelled, not run: the cron line Aegir installs (\`*/1 * * * *\` hosting-dispatch) starts drush and bootstraps the hostmaster 60 times an hour whatever is due; hosting_queued polls the database once a second, 3,600 times an hour. Each frontend request is one of the service's reconciles (every 60 s plus up to 10 % jitter), a look-up just before a dispatch when the last listing is older than TASKD_CONFIRM_MAX_AGE, and the read right after each run.`,
  ];
  const idle = cases.find((c) => c.name === 'nothing due');
  return { rows, notes, summary: { idleDrushStarts: idle?.drushStartsPerHour, idleFrontendRequests: idle?.frontendRequestsPerHour } };
}

// ---- the run -------------------------------------------------------------------------------

const SECTIONS = [
  ['latency', latencySection],
  ['throughput', throughputSection],
  ['idle', idleSection],
  ['scale', scaleSection],
  ['dispatch', dispatchSection],
];

const BUSY_WARNING_PERCENT = 20;

/** What makes a run's figures suspect, said in the results rather than left for a reader to guess. */
function runWarnings({ busyBefore, builtBefore, builtAfter }) {
  const warnings = [];
  if (busyBefore !== null && busyBefore > BUSY_WARNING_PERCENT) {
    warnings.push(`the machine was already ${formatNumber(busyBefore)}% busy before the run began, so these figures are noisy.`);
  }
  if (builtAfter !== builtBefore) warnings.push(`dist/ was rebuilt during the run (at ${builtAfter}), so these figures mix two builds.`);
  return warnings;
}

function historyLine({ date, commit, summary }) {
  const mb = (bytes) => (bytes === undefined ? '—' : withUnit(megabytes(bytes), 'MB'));
  const vs = (row) => `${row.key} ${row.ours ? row.ours.map(formatNumber).join(' / ') : '—'} against ${row.theirs ? row.theirs.map(formatNumber).join(' / ') : '—'} ms (${row.met === true ? 'met' : row.met === false ? 'missed' : '—'})`;
  const parts = [
    summary.latency ? `queue-to-start p50 / p99 against adnanh/webhook: ${summary.latency.map(vs).join(', ')}` : `p99 queue-to-start ${withUnit(summary.p99, 'ms')}`,
    ...(summary.journalCost ? [`journal on against off ${summary.journalCost.map(formatRatio).join(' / ')} at p50 / p99`] : []),
    `intake ${withUnit(summary.fresh, '/s')} new (${formatRatio(summary.shareOfBare)} bare fastify), ${withUnit(summary.duplicates, '/s')} duplicates`,
    `idle ${withUnit(summary.idleCpu, '%')} CPU, ${mb(summary.idleRss)}`,
    `RSS growth ${mb(summary.growth)}`,
    `${mb(summary.scaleRss)} at ${count(plan.scale.tasks)} queued`,
    `choose ${withUnit(summary.chooseMicros, 'µs')} at ${count(plan.scale.sizes.at(-1))}`,
    `idle hour ${formatNumber(summary.idleDrushStarts)} drush starts, ${formatNumber(summary.idleFrontendRequests)} frontend requests`,
  ];
  return `- ${date.slice(0, 10)}, ${commit ?? 'commit unknown'}: ${parts.join('; ')}.`;
}

/** When dist/ was last built: the figures are of that build, which may be newer than the commit. */
function distBuiltAt() {
  const dist = path.join(repoRoot, 'dist');
  let newest = 0;
  for (const entry of fs.readdirSync(dist, { recursive: true })) {
    if (String(entry).endsWith('.js')) newest = Math.max(newest, fs.statSync(path.join(dist, String(entry))).mtimeMs);
  }
  return new Date(newest).toISOString();
}

function packageVersion() {
  try {
    return JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

async function main() {
  if (!fs.existsSync(path.join(repoRoot, 'dist', 'cli.js'))) throw new Error('dist/ is missing: run `npm run build` first (`npm run bench` does)');
  const machine = describeMachine();
  const busyBefore = await machineBusyPercent();
  const builtBefore = distBuiltAt();
  const date = new Date().toISOString();
  const webhook = ensureWebhook() ? webhookVersion() : null;
  if (!webhook) step('adnanh/webhook could not be installed: its columns stay empty');
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegir-taskd-bench-'));
  const { secret, key } = makeSecret();
  const context = { workDir, secret, key, webhook };
  const rows = [];
  const notes = [];
  const summary = {};
  let failed = false;
  try {
    for (const [name, section] of SECTIONS) {
      if (only && !only.has(name)) continue;
      try {
        const result = await section(context);
        rows.push(...result.rows);
        notes.push(...result.notes);
        Object.assign(summary, result.summary);
      } catch (error) {
        failed = true;
        step(`${name} failed: ${error.stack ?? error}`);
        rows.push({ measure: `${name}: failed (${error.message})`, ours: '—', met: false });
      }
    }
  } finally {
    if (process.env.BENCH_KEEP === '1') step(`scratch folder kept: ${workDir}`);
    else fs.rmSync(workDir, { recursive: true, force: true });
  }

  const commit = describeCommit(repoRoot);
  const warnings = runWarnings({ busyBefore, builtBefore, builtAfter: distBuiltAt() });
  for (const warning of warnings) step(`warning: ${warning}`);
  const machineLine =
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${formatNumber(machine.memoryGiB)} GiB memory; Node ${machine.node}; ${machine.os}. ` +
    `Before the run the cores were ${formatNumber(busyBefore)}% busy; 1-minute load average when it began: ${formatNumber(machine.loadAverage)}, when it ended: ${formatNumber(os.loadavg()[0])}.`;
  const runLine =
    `${quick ? 'Quick run (BENCH_QUICK=1: smaller counts; not comparable with full runs)' : 'Full run'} of \`npm run bench\` on ${date}: ` +
    `aegir-taskd ${packageVersion()} (${commit ? `commit ${commit}` : 'commit unknown'}; dist/ built ${builtBefore})${webhook ? `, adnanh/webhook ${webhook}` : ''}. ` +
    'Ratios are aegir-taskd ÷ baseline.' +
    warnings.map((warning) => ` **Warning: ${warning}**`).join('');
  const table = renderTable(rows);
  process.stdout.write(`\n${runLine}\n\n${machineLine}\n\n${table}\n\n`);

  if (only) {
    step('BENCH_ONLY set: results.md left as it was');
  } else {
    const resultsFile = path.join(benchDir, 'results.md');
    const history = readHistory(resultsFile);
    if (!quick && !failed && warnings.length === 0) history.push(historyLine({ date, commit, summary }));
    fs.writeFileSync(resultsFile, renderResults({ title: 'aegir-taskd benchmarks', machineLine, runLine, table, notes, history }));
    step(`written to ${path.relative(process.cwd(), resultsFile) || resultsFile}`);
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`bench: ${error.stack ?? error}\n`);
    process.exitCode = 1;
  },
);
