// Where queue-to-start goes, stage by stage (run on its own, after npm run build):
//   node bench/stages.mjs            BENCH_STAGES_COUNT=N (default 500), BENCH_TASKD_DIST=dir for another build
// One webhook at a time, as the latency bench's first row. The built service runs with
// bench/stage-probe.mjs preloaded, which notes the wall clock at each stage; the command is
// `date +%s%N {nid}` itself, so "gate to exec" ends at the command's first clock reading, without the
// latency fixture's shell and its fork of date. adnanh/webhook runs the same command (its answer
// carries the output), for the same end-to-end figure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import { startTaskd, startWebhook, benchDir } from './services.mjs';
import { hexSignedTask, makeSecret, signedTask } from './signing.mjs';
import { ascending, percentile, sleep, wallClockNs, waitUntil } from './stats.mjs';

const count = Number(process.env.BENCH_STAGES_COUNT) || 500;
const warmup = 30;
const gapMs = 15;
const dateArgv = ['/bin/date', '+%s%N {nid}'];

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegir-taskd-stages-'));
const ms = (a, b) => Number(b - a) / 1e6;

/** The command's own clock reading, from its log; read after a pause, so that polling takes no core from the gate while it starts. */
async function readStart(logDir, nid) {
  await sleep(20);
  return waitUntil(
    () => {
      let text = '';
      try {
        text = fs.readFileSync(path.join(logDir, `${nid}.log`), 'utf8');
      } catch {
        return null;
      }
      const match = new RegExp(`^(\\d+) ${nid}$`, 'm').exec(text);
      return match ? BigInt(match[1]) : null;
    },
    { timeoutMs: 5000, intervalMs: 10, what: `task ${nid} to start` },
  );
}

async function measureTaskd() {
  const { secret, key } = makeSecret();
  const stageFile = path.join(workDir, 'stages.txt');
  const service = await startTaskd({
    workDir,
    name: 'stages-taskd',
    secret,
    settings: { TASKD_COMMAND: JSON.stringify(dateArgv), TASKD_CONCURRENCY: '64', TASKD_RATE_LIMIT: '0', BENCH_STAGE_FILE: stageFile },
    nodeArgs: ['--import', path.join(benchDir, 'stage-probe.mjs')],
  });
  const sent = new Map();
  const started = new Map();
  const answered = new Map();
  try {
    for (let i = 0; i < warmup + count; i += 1) {
      const nid = 1000 + i;
      const { body, headers } = signedTask(key, nid, nid);
      const at = wallClockNs();
      const response = await request(`${service.url}/v1/tasks`, { method: 'POST', body, headers });
      await response.body.dump();
      const answer = wallClockNs();
      if (response.statusCode !== 202) throw new Error(`answered ${response.statusCode}`);
      const start = await readStart(service.logDir, nid);
      if (i >= warmup) {
        sent.set(nid, at);
        started.set(nid, start);
        answered.set(nid, answer);
      }
      await sleep(gapMs);
    }
    await sleep(200);
  } finally {
    await service.stop();
  }
  const rows = fs.readFileSync(stageFile, 'utf8').trim().split('\n').map((line) => line.split(' '));
  const stages = { socket: [], verify: [], queue: [], handoff: [], exec: [], total: [], answer: [], after: [] };
  for (const [nidText, req, body, checked, take, written, turnEnd] of rows) {
    const nid = Number(nidText);
    if (!sent.has(nid) || take === '-' || written === '-') continue;
    const at = sent.get(nid);
    stages.socket.push(ms(at, BigInt(body)));
    stages.verify.push(ms(BigInt(body), BigInt(checked)));
    stages.queue.push(ms(BigInt(checked), BigInt(take)));
    stages.handoff.push(ms(BigInt(take), BigInt(written)));
    stages.exec.push(ms(BigInt(written), started.get(nid)));
    stages.total.push(ms(at, started.get(nid)));
    stages.answer.push(ms(at, answered.get(nid)));
    if (turnEnd !== '-') stages.after.push(ms(BigInt(written), BigInt(turnEnd)));
    stages.parse ??= [];
    stages.parse.push(ms(at, BigInt(req)));
  }
  return stages;
}

async function measureWebhook() {
  const secret = 'bench-webhook-secret';
  const hooks = [
    {
      id: 'task',
      'execute-command': dateArgv[0],
      'include-command-output-in-response': true,
      'http-methods': ['POST'],
      'pass-arguments-to-command': [{ source: 'string', name: '+%s%N' }],
      'trigger-rule': { match: { type: 'payload-hmac-sha256', secret, parameter: { source: 'header', name: 'X-Signature' } } },
    },
  ];
  const service = await startWebhook({ workDir, name: 'stages-webhook', hooks });
  const total = [];
  try {
    for (let i = 0; i < warmup + count; i += 1) {
      const { body, headers } = hexSignedTask(secret, 1000 + i, 1000 + i);
      const at = wallClockNs();
      const response = await request(service.hookUrl, { method: 'POST', body, headers });
      const text = await response.body.text();
      if (response.statusCode !== 200) throw new Error(`webhook answered ${response.statusCode}: ${text}`);
      if (i >= warmup) total.push(ms(at, BigInt(text.trim())));
      await sleep(gapMs);
    }
  } finally {
    await service.stop();
  }
  return total;
}

/**
 * The floors, with nothing else running: a waiting gate of the build handed its task by this small,
 * idle process (gate to exec without a service around it), and this process spawning the command
 * itself (a fork of a small process, the exec, and the command's start).
 */
async function measureFloors() {
  const dist = process.env.BENCH_TASKD_DIST ? path.resolve(process.env.BENCH_TASKD_DIST) : path.join(benchDir, '..', 'dist');
  const { encodeGateTask, spawnGate, handTask } = await import(pathToFileURL(path.join(dist, 'start-gate.js')).href);
  // A build from before the start time was read at the fork takes its task as it is.
  const hand = handTask ?? ((waiting, task) => waiting.stdin.end(task));
  const logDir = path.join(workDir, 'floor-logs');
  fs.mkdirSync(logDir, { recursive: true });
  const gate = [];
  const direct = [];
  for (let i = 0; i < Math.min(count, 200); i += 1) {
    const nid = 1 + i;
    const waiting = spawnGate(logDir, process.env);
    await sleep(gapMs);
    const header = `--- aegir-taskd: attempt started ${new Date().toISOString()} ${JSON.stringify(dateArgv)}`;
    const meta = JSON.stringify({ rid: nid, lane: `rid:${nid}`, type: null, vid: null, changed: null, receivedAt: Date.now(), attempts: 1, nid, startedAt: Date.now() });
    const at = wallClockNs();
    hand(waiting, encodeGateTask({ nid, header, meta, argv: [dateArgv[0], dateArgv[1].replace('{nid}', String(nid))] }));
    await waiting;
    gate.push(ms(at, await readStart(logDir, nid)));
    const spawnedAt = wallClockNs();
    const child = spawn(dateArgv[0], ['+%s%N'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    await new Promise((resolve) => child.once('close', resolve));
    direct.push(ms(spawnedAt, BigInt(out.trim())));
  }
  return { gate, direct };
}

const q = (values, p) => percentile(ascending(values), p);
const f = (v) => v.toFixed(3);
try {
  const taskd = await measureTaskd();
  const hook = await measureWebhook();
  const floors = await measureFloors();
  const lines = [
    '| Stage | p50 ms | p99 ms |',
    '| --- | --- | --- |',
    ['send → headers parsed (client, loopback, HTTP parser)', taskd.parse],
    ['send → body read and routed ("socket to handler")', taskd.socket],
    ['verify: signature, JSON, schema', taskd.verify],
    ['queue: handler, submit, journal, pump, attempt, run record', taskd.queue],
    ['hand-off: take a waiting gate, write the task to its pipe', taskd.handoff],
    ['gate to exec: the gate reads its task, writes its files, execs; the command reads the clock', taskd.exec],
    ['aegir-taskd, send → the command\'s clock (sum of the above)', taskd.total],
    ['(overlapping gate to exec) the rest of the main thread\'s turn after the hand-off: the answer, the log, metrics', taskd.after],
    ['aegir-taskd, send → answer received', taskd.answer],
    ['adnanh/webhook, send → the same command\'s clock', hook],
    ['floor: a waiting gate handed its task by a small idle process, to the command\'s clock', floors.gate],
    ['floor: a small idle process spawning the command itself, to its clock', floors.direct],
  ].map((row) => (Array.isArray(row) ? `| ${row[0]} | ${f(q(row[1], 50))} | ${f(q(row[1], 99))} |` : row));
  process.stdout.write(`${count} webhooks one at a time, ${gapMs} ms after each start, ${os.cpus().length} cores:\n\n${lines.join('\n')}\n`);
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}
