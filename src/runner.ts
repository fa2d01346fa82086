import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { SECRET_ENV_NAMES } from './config.js';

export interface RunResult {
  exitCode: number | null;
  signal: string | null;
  startedAt: number;
  endedAt: number;
  timedOut: boolean;
  /** Set when the command could not be started at all (not found, not executable…). */
  spawnError: string | null;
  /** This attempt's output, from the log file, at most the last 64 KiB; used to tell a refusal from a failure. */
  output: string;
}

export interface StartedRun {
  pid: number | null;
  startedAt: number;
  done: Promise<RunResult>;
  /** Ends the whole process group: SIGTERM, then SIGKILL after the grace period. */
  stop(): void;
}

export interface RunSpec {
  nid: number;
  argvTemplate: readonly string[];
  logDir: string;
  timeoutMs: number;
  killGraceMs: number;
  env: NodeJS.ProcessEnv;
  /** Written into <nid>.pid so that a restarted service can re-adopt the child. */
  meta: Record<string, unknown>;
}

const OUTPUT_FOR_OUTCOME = 64 * 1024;

/**
 * Every child starts as this tiny shell. Before it execs the command (same pid, same start time,
 * stdin from /dev/null) it writes <nid>.run.json (what a restarted service needs to re-adopt it),
 * then <nid>.pid (its pid and kernel start time), then the attempt's header line into the log. So
 * the command never runs without those files, even if the service dies the instant after spawning
 * it, and the service does no disk writes of its own before the command starts. Arguments reach
 * exec as they are: no shell interprets them.
 */
export const GATE = [
  '/bin/sh',
  '-c',
  [
    'runfile=$1 pidfile=$2 header=$3 meta=$4; shift 4',
    "printf '%s\\n' \"$meta\" > \"$runfile\" || exit 75",
    'start=',
    'if read -r stat < /proc/$$/stat 2>/dev/null; then rest=${stat##*) }; field() { shift 19; start=$1; }; field $rest; fi',
    "printf '%s %s\\n' \"$$\" \"$start\" > \"$pidfile\" || exit 75",
    "printf '%s\\n' \"$header\"",
    'exec "$@" </dev/null',
  ].join('\n'),
  'aegir-taskd',
] as const;

/** The gate's exit code when it could not write its files; the command did not run. */
const GATE_FAILED = 75;

/** Every attempt's output in <nid>.log starts with this line (written by the gate, or by the service when nothing could start). */
const HEADER_PREFIX = '--- aegir-taskd: attempt started ';

/** The output of the last attempt in a log tail: everything after its header line. */
export function lastAttemptOutput(tail: string): string {
  const at = tail.lastIndexOf(HEADER_PREFIX);
  if (at < 0) return tail;
  const lineEnd = tail.indexOf('\n', at);
  return lineEnd < 0 ? '' : tail.slice(lineEnd + 1);
}

const resolvedCommands = new Map<string, string>();

/** Where the command is, as a shell without a builtin of that name would find it; null when it is not an executable file. */
export async function resolveCommand(argv0: string, env: NodeJS.ProcessEnv): Promise<{ path: string } | { error: 'ENOENT' | 'EACCES' }> {
  const candidates = argv0.includes('/') ? [argv0] : (env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, argv0));
  let sawFile = false;
  for (const candidate of candidates) {
    try {
      if (!(await fs.stat(candidate)).isFile()) continue;
      sawFile = true;
      await fs.access(candidate, fsConstants.X_OK);
      return { path: path.resolve(candidate) };
    } catch {
      /* not here */
    }
  }
  return { error: sawFile ? 'EACCES' : 'ENOENT' };
}

/** Resolved paths are remembered (the hot path then costs no look-up); failures are not, so installing drush later just works. */
async function resolveCommandCached(argv0: string, env: NodeJS.ProcessEnv): Promise<{ path: string } | { error: 'ENOENT' | 'EACCES' }> {
  const key = `${argv0}\0${env.PATH ?? ''}`;
  const known = resolvedCommands.get(key);
  if (known) return { path: known };
  const found = await resolveCommand(argv0, env);
  if ('path' in found) resolvedCommands.set(key, found.path);
  return found;
}

export function buildArgv(template: readonly string[], nid: number): string[] {
  if (!Number.isSafeInteger(nid) || nid <= 0) throw new TypeError(`nid must be a positive integer, got ${nid}`);
  return template.map((arg) => arg.replaceAll('{nid}', String(nid)));
}

/** The service's environment minus its secrets: drush and whatever it runs must never see them. */
export function childEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of SECRET_ENV_NAMES) delete copy[name];
  return copy;
}

export function logFilePath(logDir: string, nid: number): string {
  return path.join(logDir, `${nid}.log`);
}

export function pidFilePath(logDir: string, nid: number): string {
  return path.join(logDir, `${nid}.pid`);
}

/** What the scheduler needs to re-adopt a run (its lane, revision, times), written before the child starts. */
export function runFilePath(logDir: string, nid: number): string {
  return path.join(logDir, `${nid}.run.json`);
}

/** Reads "<pid> <start time>" as the gate wrote it; null when missing or malformed. */
export async function readPidFile(file: string): Promise<{ pid: number; processStart: string | null } | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return null;
  }
  const match = /^(\d+) ?(\d*)\n?$/.exec(text);
  return match ? { pid: Number(match[1]), processStart: match[2] || null } : null;
}

export async function prepareLogDir(logDir: string): Promise<void> {
  await fs.mkdir(logDir, { recursive: true, mode: 0o700 });
  // In a shared folder such as the temp dir, another user could have made this path first (or made it
  // a link), to read task output or plant pid files: only a real directory of our own is used.
  const stat = await fs.lstat(logDir);
  if (!stat.isDirectory()) throw new Error(`${logDir} is not a directory (a symbolic link?)`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) throw new Error(`${logDir} belongs to uid ${stat.uid}, not to this service (uid ${uid})`);
  await fs.access(logDir, fsConstants.W_OK);
}

/** Sends a signal to every process in the group; a group that is already gone is not an error. */
export function signalGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Alive and not a zombie: an adopted child's parent died, and nobody may be reaping it promptly. */
export async function isRunning(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return isAlive(pid);
  }
}

/** The kernel's start time of a process (clock ticks since boot), so a recycled pid is not mistaken for our child. */
export async function readProcessStartTime(pid: number): Promise<string | null> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses; fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

export async function readTail(file: string, maxBytes: number, from = 0): Promise<{ text: string; size: number; truncated: boolean }> {
  let handle;
  try {
    handle = await fs.open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { text: '', size: 0, truncated: false };
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(from, size - maxBytes);
    const length = Math.max(0, size - start);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, start);
    return { text: buffer.toString('utf8'), size, truncated: start > from };
  } finally {
    await handle.close();
  }
}

function describeSpawnError(argv0: string, code: string | undefined, message: string): string {
  if (code === 'ENOENT') return `command not found: ${argv0} (check TASKD_COMMAND and PATH)`;
  if (code === 'EACCES') return `command is not executable: ${argv0}`;
  return `command could not be started: ${argv0}: ${message}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForGroupToEnd(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!signalGroup(pid, 0)) return true;
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
  return !signalGroup(pid, 0);
}

/**
 * Starts one attempt of a task. The child gets its own process group and writes straight into
 * <nid>.log, never into a pipe of ours: drush keeps printing, and if our end of a pipe died with
 * us, its next write would kill it and leave the task "processing" in Aegir forever.
 */
export async function startRun(spec: RunSpec): Promise<StartedRun> {
  const argv = buildArgv(spec.argvTemplate, spec.nid);
  const logFile = logFilePath(spec.logDir, spec.nid);
  const pidFile = pidFilePath(spec.logDir, spec.nid);
  const header = `${HEADER_PREFIX}${new Date().toISOString()} ${JSON.stringify(argv)}`;
  const resolved = await resolveCommandCached(argv[0]!, spec.env);
  if ('error' in resolved) {
    const startedAt = Date.now();
    const spawnError = describeSpawnError(argv[0]!, resolved.error, '');
    await fs.appendFile(logFile, `${header}\n--- aegir-taskd: ${spawnError}\n`, { mode: 0o600 });
    const result: RunResult = { exitCode: null, signal: null, startedAt, endedAt: Date.now(), timedOut: false, spawnError, output: spawnError };
    return { pid: null, startedAt, done: Promise.resolve(result), stop: () => undefined };
  }
  const runFile = runFilePath(spec.logDir, spec.nid);
  const handle = await fs.open(logFile, 'a', 0o600);
  let subprocess;
  let startedAt: number;
  try {
    // execa's typings list only descriptors 3 to 9 by value; any open descriptor works at run time.
    const logFd = handle.fd as 3;
    const meta = JSON.stringify({ ...spec.meta, nid: spec.nid, startedAt: Date.now() });
    subprocess = execa(GATE[0], [...GATE.slice(1), runFile, pidFile, header, meta, resolved.path, ...argv.slice(1)], {
      stdin: 'ignore',
      stdout: logFd,
      stderr: logFd,
      detached: true,
      env: childEnvironment(spec.env),
      extendEnv: false,
      reject: false,
      buffer: false,
      forceKillAfterDelay: false,
    });
    // Taken once the process exists, so queue-to-start latency includes the spawn itself.
    startedAt = Date.now();
  } finally {
    // The child holds its own copy of the descriptor.
    await handle.close();
  }
  const pid = subprocess.pid ?? null;

  let timedOut = false;
  let stopping: Promise<void> | null = null;
  const stop = () => {
    if (pid === null || stopping) return;
    signalGroup(pid, 'SIGTERM');
    stopping = (async () => {
      // The leader may exit on SIGTERM while a grandchild ignores it: wait for the whole group, then SIGKILL what is left.
      if (!(await waitForGroupToEnd(pid, spec.killGraceMs))) {
        signalGroup(pid, 'SIGKILL');
        await waitForGroupToEnd(pid, 5_000);
      }
    })();
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, spec.timeoutMs);
  timer.unref();

  const done = (async (): Promise<RunResult> => {
    const result = await subprocess;
    clearTimeout(timer);
    if (stopping) await stopping;
    const endedAt = Date.now();
    const gateFailed = result.exitCode === GATE_FAILED && (await readPidFile(pidFile)) === null;
    // A failed clean-up must not lose the outcome; the next start removes stale files anyway.
    await Promise.all([fs.rm(pidFile, { force: true }), fs.rm(runFile, { force: true })]).catch(() => undefined);
    const spawnFailed = pid === null || (result.exitCode === undefined && result.signal === undefined);
    const spawnError = spawnFailed
      ? describeSpawnError(argv[0]!, result.code, String((result.cause as Error | undefined)?.message ?? result.shortMessage))
      : gateFailed
        ? `the command did not start: its run files could not be written in ${spec.logDir}`
        : null;
    if (spawnError) await fs.appendFile(logFile, `--- aegir-taskd: ${spawnError}\n`);
    const output = spawnError ? spawnError : lastAttemptOutput((await readTail(logFile, OUTPUT_FOR_OUTCOME)).text);
    return {
      exitCode: result.exitCode ?? null,
      signal: result.signal ?? null,
      startedAt,
      endedAt,
      timedOut,
      spawnError,
      output,
    };
  })();

  return { pid, startedAt, done, stop };
}
