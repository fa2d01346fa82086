import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, WebSocket } from 'undici';
import { sleep, waitUntil } from './stats.mjs';

export const benchDir = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.dirname(benchDir);
// BENCH_TASKD_DIST=dir measures another build of the service (a copy of dist/ inside the checkout, so its imports resolve) beside this one.
const cliPath = path.join(process.env.BENCH_TASKD_DIST ? path.resolve(process.env.BENCH_TASKD_DIST) : path.join(repoRoot, 'dist'), 'cli.js');
const bareFastifyPath = path.join(benchDir, 'bare-fastify.mjs');

// ---- processes ---------------------------------------------------------------

let profiles = 0;

/** With BENCH_CPU_PROF=<dir>, node processes started here write a CPU profile there when they exit, numbered in start order. */
function profileArgs(name) {
  const dir = process.env.BENCH_CPU_PROF;
  if (!dir) return [];
  profiles += 1;
  return ['--cpu-prof', `--cpu-prof-dir=${path.resolve(dir)}`, `--cpu-prof-name=${String(profiles).padStart(2, '0')}-${name}.cpuprofile`];
}

const started = new Set();

/** Whatever happens to the run, no service it started outlives it. */
process.once('exit', () => {
  for (const child of started) child.kill('SIGKILL');
});

/** Output goes to a file, not a pipe: a pipe would make the bench's own event loop part of what is measured. */
function spawnLogged(command, args, { env, logFile }) {
  const fd = fs.openSync(logFile, 'a');
  try {
    const child = spawn(command, args, { env, stdio: ['ignore', fd, fd] });
    started.add(child);
    child.once('exit', () => started.delete(child));
    return child;
  } finally {
    fs.closeSync(fd);
  }
}

/** Stops a service that did not come up, then passes the failure on. */
async function readyOrStopped(child, waitForReady) {
  try {
    return await waitForReady();
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

async function waitForLogLine(logFile, child, match, what) {
  let found;
  await waitUntil(
    () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${what} exited before it was ready:\n${readText(logFile).slice(-2000)}`);
      }
      for (const line of readText(logFile).split('\n')) {
        const value = parseJsonLine(line);
        if (value && match(value)) {
          found = value;
          return true;
        }
      }
      return false;
    },
    { timeoutMs: 20_000, intervalMs: 20, what },
  );
  return found;
}

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function parseJsonLine(line) {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

export async function stopProcess(child, timeoutMs = 15_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

// ---- aegir-taskd -------------------------------------------------------------

/** Every operator request needs the token, from loopback too. */
export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

/** The outer environment minus any TASKD_* setting, so a developer's own configuration never leaks into a run. */
function taskdEnvironment(settings) {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('TASKD_')) env[name] = value;
  return { ...env, TASKD_HOST: '127.0.0.1', TASKD_PORT: '0', TASKD_SHUTDOWN_GRACE: '2', TASKD_LOG_LEVEL: logLevel(), ...settings };
}

/** Production's default is info; BENCH_TASKD_LOG_LEVEL lets a run separate logging cost from the rest. */
export function logLevel() {
  return process.env.BENCH_TASKD_LOG_LEVEL || 'info';
}

/**
 * The port is chosen here, not by the service, so readiness does not depend on its "ready" line being
 * logged at every level. With `inspect`, the service also opens the inspector on loopback, so the
 * bench can ask it for a full garbage collection (see collectGarbage).
 */
export async function startTaskd({ workDir, name, secret, settings = {}, inspect = false, nodeArgs: extraNodeArgs = [], dist = null }) {
  // Every start gets folders of its own: a second round of the same measurement must not restore the
  // first round's journal (its queued nids would answer as duplicates, and its queue would be restored).
  let run = 1;
  while (fs.existsSync(path.join(workDir, `${name}${run === 1 ? '' : `-${run}`}-task-logs`))) run += 1;
  const base = `${name}${run === 1 ? '' : `-${run}`}`;
  const logDir = path.join(workDir, `${base}-task-logs`);
  const logFile = path.join(workDir, `${base}.log`);
  fs.mkdirSync(logDir, { recursive: true });
  const port = await freePort();
  const inspectPort = inspect ? await freePort() : null;
  const env = taskdEnvironment({
    TASKD_SECRET: secret,
    TASKD_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
    TASKD_LOG_DIR: logDir,
    // The journal and the token beside this service's logs, never in the user's own state folder.
    TASKD_STATE_DIR: path.join(logDir, 'state'),
    TASKD_PORT: String(port),
    ...settings,
  });
  const nodeArgs = [...profileArgs(name), ...(inspectPort ? [`--inspect=127.0.0.1:${inspectPort}`] : []), ...extraNodeArgs];
  const child = spawnLogged(process.execPath, [...nodeArgs, dist ? path.join(path.resolve(dist), 'cli.js') : cliPath], { env, logFile });
  await readyOrStopped(child, () => waitForPort(port, child, logFile, `aegir-taskd (${name})`));
  return { name, pid: child.pid, url: `http://127.0.0.1:${port}`, inspectPort, logDir, logFile, stop: () => stopProcess(child) };
}

/**
 * A full, compacting garbage collection in the service (HeapProfiler.collectGarbage over the
 * inspector), then its live JS heap: RSS read right after no longer depends on when V8 last collected.
 */
export async function collectGarbage(service) {
  const [target] = await getJson(`http://127.0.0.1:${service.inspectPort}/json/list`);
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  let nextId = 0;
  const pending = new Map();
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data));
    pending.get(message.id)?.(message);
  });
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      nextId += 1;
      const timer = setTimeout(() => reject(new Error(`inspector: ${method} timed out`)), 30_000);
      pending.set(nextId, (message) => {
        clearTimeout(timer);
        if (message.error) reject(new Error(`inspector: ${method}: ${message.error.message}`));
        else resolve(message.result);
      });
      socket.send(JSON.stringify({ id: nextId, method, params }));
    });
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true });
    socket.addEventListener('error', () => reject(new Error('inspector: could not connect')), { once: true });
  });
  try {
    await call('HeapProfiler.collectGarbage');
    const usage = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    return JSON.parse(usage.result.value);
  } finally {
    socket.close();
  }
}

export async function getJson(url) {
  const response = await request(url);
  const body = await response.body.json();
  if (response.statusCode !== 200) throw new Error(`GET ${url}: ${response.statusCode} ${JSON.stringify(body)}`);
  return body;
}

export async function postEmpty(url) {
  const response = await request(url, { method: 'POST', headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
  await response.body.dump();
  if (response.statusCode >= 300) throw new Error(`POST ${url}: ${response.statusCode}`);
}

export const pauseQueue = (service) => postEmpty(`${service.url}/v1/queue/pause`);
export const resumeQueue = (service) => postEmpty(`${service.url}/v1/queue/resume`);
export const readQueue = (service) => getJson(`${service.url}/v1/queue`);

/** Resolves once nothing is queued or running; returns the last queue view. */
export async function waitForIdleQueue(service, timeoutMs) {
  return waitUntil(
    async () => {
      const queue = await readQueue(service);
      return queue.depth === 0 && queue.starting === 0 && queue.running === 0 ? queue : null;
    },
    { timeoutMs, intervalMs: 100, what: `${service.name} to run every queued task` },
  );
}

// ---- bare fastify ------------------------------------------------------------

let bareFastifyStarts = 0;

export async function startBareFastify({ workDir }) {
  // One log per start: its first line is the address, and an earlier start's line must not be read instead.
  bareFastifyStarts += 1;
  const logFile = path.join(workDir, `bare-fastify-${bareFastifyStarts}.log`);
  const child = spawnLogged(process.execPath, [...profileArgs('bare-fastify'), bareFastifyPath], { env: process.env, logFile });
  const ready = await readyOrStopped(child, () => waitForLogLine(logFile, child, (entry) => typeof entry.address === 'string', 'bare fastify'));
  return { name: 'bare fastify', pid: child.pid, url: ready.address, stop: () => stopProcess(child) };
}

// ---- adnanh/webhook ----------------------------------------------------------

function hasWebhook() {
  return spawnSync('webhook', ['-version'], { stdio: 'ignore' }).status === 0;
}

function runAsRoot(args) {
  const asRoot = process.getuid?.() === 0;
  const [command, ...rest] = asRoot ? args : ['sudo', ...args];
  return spawnSync(command, rest, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status === 0;
}

/** Debian's package of adnanh/webhook; installed when missing. Returns false when it cannot be had. */
export function ensureWebhook() {
  if (hasWebhook()) return true;
  process.stderr.write('bench: adnanh/webhook is missing; installing Debian\'s "webhook" package\n');
  if (!runAsRoot(['apt-get', 'install', '-y', 'webhook'])) {
    runAsRoot(['apt-get', 'update']);
    runAsRoot(['apt-get', 'install', '-y', 'webhook']);
  }
  return hasWebhook();
}

export function webhookVersion() {
  const result = spawnSync('webhook', ['-version'], { encoding: 'utf8' });
  return (result.stdout || '').trim().replace(/^webhook version\s*/, '') || 'unknown';
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port, child, logFile, what) {
  await waitUntil(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited before it was ready:\n${readText(logFile).slice(-2000)}`);
      return canConnect(port);
    },
    { timeoutMs: 20_000, intervalMs: 20, what: `${what} to listen` },
  );
}

async function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * One hook, "task": checks the HMAC of the body (payload-hmac-sha256) and runs argv with the nid
 * from the JSON payload appended, as the aegir-taskd command gets it.
 */
export function webhookHooks({ secret, argv }) {
  const [command, ...fixed] = argv;
  return [
    {
      id: 'task',
      'execute-command': command,
      'http-methods': ['POST'],
      'pass-arguments-to-command': [...fixed.map((name) => ({ source: 'string', name })), { source: 'payload', name: 'nid' }],
      'trigger-rule': { match: { type: 'payload-hmac-sha256', secret, parameter: { source: 'header', name: 'X-Signature' } } },
    },
  ];
}

export async function startWebhook({ workDir, name, hooks }) {
  const hooksFile = path.join(workDir, `${name}-hooks.json`);
  fs.writeFileSync(hooksFile, JSON.stringify(hooks, null, 2));
  const port = await freePort();
  const logFile = path.join(workDir, `${name}.log`);
  const child = spawnLogged('webhook', ['-hooks', hooksFile, '-ip', '127.0.0.1', '-port', String(port)], { env: process.env, logFile });
  await readyOrStopped(child, () => waitForPort(port, child, logFile, 'adnanh/webhook'));
  return { name, pid: child.pid, url: `http://127.0.0.1:${port}`, hookUrl: `http://127.0.0.1:${port}/hooks/task`, stop: () => stopProcess(child) };
}

// ---- /proc -------------------------------------------------------------------

let clockTicks;
function ticksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of one process, in seconds (fields 14 and 15 of /proc/<pid>/stat). */
export function readCpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
}

export function readRssBytes(pid) {
  let status;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return NaN;
  }
  // A zombie (ended, not yet reaped) has no VmRSS line.
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}

/** The direct children of a process (for aegir-taskd, its waiting start processes), from /proc. */
export function childPids(pid) {
  const children = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch {
      /* ended meanwhile */
    }
  }
  return children;
}

/** A process and its direct children: aegir-taskd's waiting start processes are part of its cost. */
export function processTree(pid) {
  return [pid, ...childPids(pid)];
}

/** The sum of one reading over processes; one that ended meanwhile counts for nothing. */
export function sumOver(pids, read) {
  return pids.reduce((total, pid) => {
    try {
      const value = read(pid);
      return Number.isNaN(value) ? total : total + value;
    } catch {
      return total;
    }
  }, 0);
}

export function readTreeRssBytes(pid) {
  return sumOver(processTree(pid), readRssBytes);
}

/** Lets a service settle (timers armed, start-up garbage collected) before it is measured. */
export async function settle(ms = 2000) {
  await sleep(ms);
}
