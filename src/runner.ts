import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SECRET_ENV_NAMES } from './config.js';
import { encodeGateTask, GATE_EXEC_FAILED, GATE_FAILED, handTask, processStartFromStat, spawnGate, type WarmGates } from './start-gate.js';

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
  /** Called in the same turn as the process is handed its task, before startRun resolves. */
  onStarted?: ((pid: number, startedAt: number) => void) | undefined;
  /**
   * Called once the process has exited and whether the command ran is known, before its pid file is
   * removed; answering false keeps the run files (the exit could not be recorded, and they are the
   * evidence that the command ran).
   */
  onExit?: ((exit: { commandRan: boolean; exitCode: number | null; signal: string | null }) => boolean | void | Promise<boolean>) | undefined;
}

/**
 * One process the service starts in its own group through a start gate, with its output in
 * <name>.log and its pid in <name>.pid: a task's attempt (name = nid) or a dispatch run.
 */
export interface ProcessSpec {
  /** The stem of its files in logDir. */
  name: string;
  argv: readonly string[];
  logDir: string;
  timeoutMs: number;
  killGraceMs: number;
  env: NodeJS.ProcessEnv;
  /** Written into <name>.run.json, with startedAt. */
  meta: Record<string, unknown>;
  /** The start of the run's header line in the log. */
  headerPrefix?: string;
  /** Words after the argv on the header line (no line breaks). */
  headerNote?: string;
  onStarted?: ((pid: number, startedAt: number) => void) | undefined;
  onExit?: RunSpec['onExit'];
}

const OUTPUT_FOR_OUTCOME = 64 * 1024;

/** Every attempt's output in <nid>.log starts with this line (written by the gate, or by the service when nothing could start). */
const HEADER_PREFIX = '--- aegir-taskd: attempt started ';

/** The output of the last run in a log tail: everything after its header line. */
export function lastAttemptOutput(tail: string, headerPrefix = HEADER_PREFIX): string {
  const at = tail.lastIndexOf(headerPrefix);
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

const commandKey = (argv0: string, env: NodeJS.ProcessEnv) => `${argv0}\0${env.PATH ?? ''}`;

/**
 * Resolved paths are remembered, and handed back without an await, so a task whose command is known
 * starts in the same turn of the event loop as the webhook that queued it, before its answer is
 * written. Failures are not remembered, so installing drush later just works.
 */
function rememberedCommand(argv0: string, env: NodeJS.ProcessEnv): { path: string } | undefined {
  const known = resolvedCommands.get(commandKey(argv0, env));
  return known === undefined ? undefined : { path: known };
}

/** A remembered path that failed to exec (the file went, or moved) must be looked up again next time. */
function forgetCommand(argv0: string, env: NodeJS.ProcessEnv): void {
  resolvedCommands.delete(commandKey(argv0, env));
}

/** What the gate's shell said when exec failed ("aegir-taskd-gate: 12: exec: /usr/bin/drush: not found"), from the attempt's output. */
function execFailure(output: string): string {
  const line = output
    .split('\n')
    .reverse()
    .find((l) => /^aegir-taskd-gate: \d+: exec: /.test(l));
  return line ? line.replace(/^aegir-taskd-gate: \d+: exec: /, '') : 'exec failed';
}

async function resolveAndRemember(argv0: string, env: NodeJS.ProcessEnv): Promise<{ path: string } | { error: 'ENOENT' | 'EACCES' }> {
  const found = await resolveCommand(argv0, env);
  if ('path' in found) resolvedCommands.set(commandKey(argv0, env), found.path);
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

export function logFilePath(logDir: string, nid: number | string): string {
  return path.join(logDir, `${nid}.log`);
}

export function pidFilePath(logDir: string, nid: number | string): string {
  return path.join(logDir, `${nid}.pid`);
}

/** What the scheduler needs to re-adopt a run (its lane, revision, times), written before the child starts. */
export function runFilePath(logDir: string, nid: number | string): string {
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
    return processStartFromStat(await fs.readFile(`/proc/${pid}/stat`, 'utf8'));
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
 * Ends a whole process group: SIGTERM, and SIGKILL for what is left after the grace. The leader may
 * exit on SIGTERM while a grandchild ignores it, so it waits for the group, not for the leader.
 */
export async function stopGroup(pid: number, killGraceMs: number): Promise<void> {
  signalGroup(pid, 'SIGTERM');
  if (!(await waitForGroupToEnd(pid, killGraceMs))) {
    signalGroup(pid, 'SIGKILL');
    await waitForGroupToEnd(pid, 5_000);
  }
}

/**
 * Starts one attempt of a task, in a warm gate when one is ready. The child gets its own process
 * group and writes straight into <nid>.log, never into a pipe of ours: drush keeps printing, and if
 * our end of a pipe died with us, its next write would kill it and leave the task "processing" in
 * Aegir forever.
 */
export async function startRun(spec: RunSpec, warmGates?: WarmGates): Promise<StartedRun> {
  return startProcess(
    {
      name: String(spec.nid),
      argv: buildArgv(spec.argvTemplate, spec.nid),
      logDir: spec.logDir,
      timeoutMs: spec.timeoutMs,
      killGraceMs: spec.killGraceMs,
      env: spec.env,
      meta: { ...spec.meta, nid: spec.nid },
      onStarted: spec.onStarted,
      onExit: spec.onExit,
    },
    warmGates,
  );
}

/** startRun() for any process: its files are named by spec.name; warm gates are for tasks only. */
export async function startProcess(spec: ProcessSpec, warmGates?: WarmGates): Promise<StartedRun> {
  // The name becomes file names in logDir, and is read back by the shell as one line.
  if (!/^[A-Za-z0-9_-]+$/.test(spec.name)) throw new TypeError(`a run's name must be letters, digits, _ or -, got ${JSON.stringify(spec.name)}`);
  const argv = spec.argv;
  const logFile = logFilePath(spec.logDir, spec.name);
  const pidFile = pidFilePath(spec.logDir, spec.name);
  const header = `${spec.headerPrefix ?? HEADER_PREFIX}${new Date().toISOString()} ${JSON.stringify(argv)}${spec.headerNote ? ` ${spec.headerNote}` : ''}`;
  const resolved = rememberedCommand(argv[0]!, spec.env) ?? (await resolveAndRemember(argv[0]!, spec.env));
  if ('error' in resolved) {
    const startedAt = Date.now();
    const spawnError = describeSpawnError(argv[0]!, resolved.error, '');
    await fs.appendFile(logFile, `${header}\n--- aegir-taskd: ${spawnError}\n`, { mode: 0o600 });
    const result: RunResult = { exitCode: null, signal: null, startedAt, endedAt: Date.now(), timedOut: false, spawnError, output: spawnError };
    return { pid: null, startedAt, done: Promise.resolve(result), stop: () => undefined };
  }
  const runFile = runFilePath(spec.logDir, spec.name);
  const meta = JSON.stringify({ ...spec.meta, startedAt: Date.now() });
  const gateInput = encodeGateTask({ nid: spec.name, header, meta, argv: [resolved.path, ...argv.slice(1)] });
  const waiting = warmGates?.take() ?? null;
  const subprocess = waiting ?? spawnGate(spec.logDir, childEnvironment(spec.env));
  if (!waiting) warmGates?.startedOwn();
  handTask(subprocess, gateInput);
  // Taken once the process exists and has its task, so queue-to-start latency includes the spawn itself.
  const startedAt = Date.now();
  const pid = subprocess.pid ?? null;
  if (pid !== null) spec.onStarted?.(pid, startedAt);

  let timedOut = false;
  let stopping: Promise<void> | null = null;
  const stop = () => {
    if (pid === null || stopping) return;
    stopping = stopGroup(pid, spec.killGraceMs);
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
    // The gate writes the pid file, with its own pid, just before it execs: without it the command
    // never ran, whatever the exit code or signal (a gate killed before it read its task, a stale file
    // of an earlier attempt with another pid).
    const commandRan = pid !== null && (await readPidFile(pidFile))?.pid === pid;
    // Recorded while the pid file still says the command ran: a crash from here on cannot make it look unstarted.
    const recorded = (await spec.onExit?.({ commandRan, exitCode: result.exitCode ?? null, signal: result.signal ?? null })) !== false;
    // A failed clean-up must not lose the outcome; the next start removes stale files anyway.
    if (recorded) await Promise.all([fs.rm(pidFile, { force: true }), fs.rm(runFile, { force: true })]).catch(() => undefined);
    const spawnFailed = pid === null || (result.exitCode === undefined && result.signal === undefined);
    const execFailed = !spawnFailed && !commandRan && result.exitCode === GATE_EXEC_FAILED;
    if (execFailed) forgetCommand(argv[0]!, spec.env);
    const spawnError = spawnFailed
      ? describeSpawnError(argv[0]!, result.code, String((result.cause as Error | undefined)?.message ?? result.shortMessage))
      : execFailed
        ? `the command could not be started: ${execFailure((await readTail(logFile, OUTPUT_FOR_OUTCOME)).text)}`
        : !commandRan && !stopping
          ? result.exitCode === GATE_FAILED
            ? `the command did not start: its log and run files could not be written in ${spec.logDir}`
            : `the command did not start: its start gate ended (${result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`}) before it ran it`
          : null;
    if (spawnError) {
      // The log may be what could not be written; the outcome carries the message either way.
      await fs.appendFile(logFile, `--- aegir-taskd: ${spawnError}\n`, { mode: 0o600 }).catch(() => undefined);
    }
    const output = spawnError ? spawnError : lastAttemptOutput((await readTail(logFile, OUTPUT_FOR_OUTCOME)).text, spec.headerPrefix);
    return {
      // A code of the gate (75, 76, 77) or of a failed spawn is not the command's: it never ran.
      exitCode: spawnError ? null : (result.exitCode ?? null),
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
