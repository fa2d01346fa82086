import fs from 'node:fs/promises';
import type { DispatchListing, HostingQueue, QueueListing } from './frontend.js';
import type { DispatchResult, Metrics } from './metrics.js';
import type { ListingObserver } from './reconciler.js';
import { isRunning, logFilePath, pidFilePath, readPidFile, readProcessStartTime, readTail, startProcess, type RunResult } from './runner.js';
import type { Logger } from './task.js';

/** The stem of the dispatch run's files in TASKD_LOG_DIR: dispatch.log, dispatch.pid, dispatch.run.json. */
export const DISPATCH_RUN_NAME = 'dispatch';

/** Every dispatch run's output in dispatch.log starts with this line. */
export const DISPATCH_HEADER_PREFIX = '--- aegir-taskd: dispatch started ';

/** dispatch.log is moved to dispatch.log.1 before a run once it is this large: one file, appended every minute for years, would fill the disk. */
export const DISPATCH_LOG_MAX_BYTES = 4 * 1024 * 1024;

/** setTimeout's longest delay; a later due time is reached in several steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** How often a dispatch run left behind by an earlier run of the service is looked at until it ends. */
const SURVIVOR_POLL_MS = 1000;

export type DispatchState =
  | 'off'
  | 'waiting_for_frontend'
  | 'frontend_down'
  | 'not_reported'
  | 'disabled_in_aegir'
  | 'no_queue_enabled'
  | 'scheduled'
  | 'confirming'
  | 'starting'
  | 'running'
  | 'closed';

export interface DispatchRunView {
  startedAt: string;
  endedAt: string;
  result: DispatchResult;
  exitCode: number | null;
  signal: string | null;
  durationSeconds: number;
  due: string[];
  message: string | null;
}

export interface DispatchView {
  enabled: boolean;
  command: string[] | null;
  state: DispatchState;
  message: string;
  aegirEnabled: boolean | null;
  listedAt: string | null;
  nextQueue: { name: string; last: string | null; frequency: number; next: string } | null;
  nextStartAt: string | null;
  running: { pid: number | null; startedAt: string | null; due: string[] } | null;
  lastRun: DispatchRunView | null;
  runs: number;
  queues: Array<{ name: string; enabled: boolean; last: string | null; frequency: number; next: string }>;
  minIntervalSeconds: number | null;
  timeoutSeconds: number | null;
}

export interface DispatcherOptions {
  argv: readonly string[];
  logDir: string;
  timeoutMs: number;
  killGraceMs: number;
  /** Least time from one start to the next (TASKD_DISPATCH_MIN_INTERVAL). */
  minIntervalMs: number;
  /** A listing older than this is read again before a start (TASKD_CONFIRM_MAX_AGE, as for tasks). */
  confirmMaxAgeMs: number;
  /** The environment the command inherits, before the service's secrets are removed. */
  env: NodeJS.ProcessEnv;
  metrics: Metrics;
  log: Logger;
  /** Reads the queue listing now; it reaches listed() or unavailable() before this resolves (a reconcile). */
  refresh: () => Promise<void>;
}

const iso = (ms: number) => new Date(ms).toISOString();
const unixIso = (seconds: number) => new Date(seconds * 1000).toISOString();

/**
 * drush_hosting_dispatch() (dispatch.hosting.inc) runs an enabled queue when
 * `$now - $info['last'] >= $info['calc_frequency']`, and nothing at all unless
 * hosting_dispatch_enabled; the module lists `frequency` as that calc_frequency.
 */
export function isDue(queue: HostingQueue, nowSeconds: number): boolean {
  return queue.enabled && nowSeconds - queue.last >= queue.frequency;
}

/** The enabled queue that comes due first; null when none is enabled. */
export function earliestQueue(listing: DispatchListing): HostingQueue | null {
  let earliest: HostingQueue | null = null;
  for (const queue of listing.queues) {
    if (!queue.enabled) continue;
    if (earliest === null || queue.last + queue.frequency < earliest.last + earliest.frequency) earliest = queue;
  }
  return earliest;
}

/** How a run ended, for the metrics and the view. */
export function dispatchResult(result: RunResult): DispatchResult {
  if (result.spawnError !== null) return 'not_started';
  if (result.timedOut) return 'timed_out';
  return result.exitCode === 0 ? 'ok' : 'failed';
}

/** The view when the service does not dispatch at all. */
export function offDispatchView(command: string[] | null, why: string): DispatchView {
  return {
    enabled: false,
    command,
    state: 'off',
    message: `the service does not run hosting-dispatch: ${why}`,
    aegirEnabled: null,
    listedAt: null,
    nextQueue: null,
    nextStartAt: null,
    running: null,
    lastRun: null,
    runs: 0,
    queues: [],
    minIntervalSeconds: null,
    timeoutSeconds: null,
  };
}

/** Names from Aegir go onto the log's header line: no line breaks, nothing unbounded. */
const safeNames = (queues: HostingQueue[]) => queues.map((q) => q.name.replace(/[^\w.-]+/g, '_').slice(0, 64));

interface CurrentRun {
  pid: number | null;
  startedAt: number | null;
  due: string[];
}

/**
 * Runs TASKD_DISPATCH_COMMAND (`drush @hostmaster hosting-dispatch`) when one of hosting's other
 * queues is due, instead of the cron line's every minute. It reads the due times from the queue
 * listing the reconciler fetches anyway, so watching them costs no request of its own. Outside the
 * scheduler: a dispatch never takes a task slot or lane, and tasks never hold it back. One run at a
 * time, at most one start per minInterval (the cron line never ran it more often either), a listing
 * older than confirmMaxAge read again before a start, and the listing read again after each run.
 * While the frontend does not answer nothing is started: the due times are Aegir's to tell.
 */
export class Dispatcher implements ListingObserver {
  readonly #options: DispatcherOptions;
  #listing: DispatchListing | null = null;
  #listingError: string | null = null;
  #listedAt: number | null = null;
  #frontendDown: string | null = null;
  #timer: NodeJS.Timeout | null = null;
  #timerAt: number | null = null;
  #busy: 'confirming' | 'starting' | null = null;
  #run: CurrentRun | null = null;
  #survivorPoll: NodeJS.Timeout | null = null;
  #lastStartAt: number | null = null;
  #lastRun: DispatchRunView | null = null;
  #runs = 0;
  #closed = false;
  #readLastStart: Promise<void> | null = null;

  constructor(options: DispatcherOptions) {
    this.#options = options;
  }

  listed(listing: QueueListing, requestedAt: number): void {
    const { log } = this.#options;
    this.#listedAt = requestedAt;
    if (this.#frontendDown !== null) {
      this.#frontendDown = null;
      log.info({}, 'dispatch: the frontend answers again; dispatching follows its due times');
    }
    const before = this.#listing;
    if (listing.dispatch === null && listing.dispatchError !== this.#listingError) {
      log.warn({ err: listing.dispatchError }, 'dispatch: no due times from the frontend, so no dispatch');
    } else if (listing.dispatch && !listing.dispatch.enabled && (before === null || before.enabled)) {
      log.info({}, 'dispatch: hosting_dispatch_enabled is off in Aegir, so hosting-dispatch would run nothing; not started');
    }
    this.#listing = listing.dispatch;
    this.#listingError = listing.dispatchError;
    this.#schedule();
  }

  unavailable(message: string): void {
    if (this.#frontendDown === null) this.#options.log.warn({ err: message }, 'dispatch: the frontend does not answer; no dispatch until it does');
    this.#frontendDown = message;
    this.#clearTimer();
  }

  /** Stops planning; a run under way is left to finish, as a task's drush is. */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
    if (this.#survivorPoll) clearInterval(this.#survivorPoll);
    this.#survivorPoll = null;
  }

  get running(): boolean {
    return this.#run !== null;
  }

  view(): DispatchView {
    const { argv, minIntervalMs, timeoutMs } = this.#options;
    const listing = this.#listing;
    const earliest = listing ? earliestQueue(listing) : null;
    const { state, message } = this.#describe(earliest);
    return {
      enabled: true,
      command: [...argv],
      state,
      message,
      aegirEnabled: listing?.enabled ?? null,
      listedAt: this.#listedAt === null ? null : iso(this.#listedAt),
      nextQueue: earliest
        ? { name: earliest.name, last: earliest.last > 0 ? unixIso(earliest.last) : null, frequency: earliest.frequency, next: unixIso(earliest.last + earliest.frequency) }
        : null,
      nextStartAt: state === 'scheduled' && this.#timerAt !== null ? iso(this.#timerAt) : null,
      running: this.#run ? { pid: this.#run.pid, startedAt: this.#run.startedAt === null ? null : iso(this.#run.startedAt), due: this.#run.due } : null,
      lastRun: this.#lastRun,
      runs: this.#runs,
      queues: (listing?.queues ?? []).map((q) => ({ name: q.name, enabled: q.enabled, last: q.last > 0 ? unixIso(q.last) : null, frequency: q.frequency, next: unixIso(q.last + q.frequency) })),
      minIntervalSeconds: minIntervalMs / 1000,
      timeoutSeconds: timeoutMs / 1000,
    };
  }

  #describe(earliest: HostingQueue | null): { state: DispatchState; message: string } {
    if (this.#closed) return { state: 'closed', message: 'the service is stopping' };
    if (this.#run) return { state: 'running', message: `hosting-dispatch runs (pid ${this.#run.pid ?? 'unknown'})${this.#run.due.length ? ` for ${this.#run.due.join(', ')}` : ''}` };
    if (this.#busy === 'confirming') return { state: 'confirming', message: 'making sure the queue is still due' };
    if (this.#busy === 'starting') return { state: 'starting', message: 'starting hosting-dispatch' };
    if (this.#frontendDown !== null) return { state: 'frontend_down', message: `no dispatch while the frontend does not answer: ${this.#frontendDown}` };
    if (this.#listedAt === null) return { state: 'waiting_for_frontend', message: 'no queue listing read yet' };
    if (this.#listing === null) return { state: 'not_reported', message: this.#listingError ?? 'the frontend does not report the queues' };
    if (!this.#listing.enabled) return { state: 'disabled_in_aegir', message: 'hosting_dispatch_enabled is off in Aegir: hosting-dispatch would run nothing' };
    if (earliest === null) return { state: 'no_queue_enabled', message: 'no queue is enabled in Aegir' };
    return { state: 'scheduled', message: `${earliest.name} is due ${unixIso(earliest.last + earliest.frequency)}` };
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = null;
  }

  /** Sets the one timer for the next start: the earliest due time, but never sooner than minInterval after the last start. */
  #schedule(): void {
    this.#clearTimer();
    if (this.#closed || this.#run || this.#busy || this.#frontendDown !== null || !this.#listing?.enabled) return;
    const earliest = earliestQueue(this.#listing);
    if (!earliest) return;
    let at = (earliest.last + earliest.frequency) * 1000;
    if (this.#lastStartAt !== null) at = Math.max(at, this.#lastStartAt + this.#options.minIntervalMs);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#fire(at);
    }, Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS));
    this.#timer.unref();
  }

  async #fire(at: number): Promise<void> {
    if (this.#closed || this.#run || this.#busy || this.#frontendDown !== null) return;
    // A due time beyond setTimeout's reach is reached in steps.
    if (Date.now() < at) return this.#schedule();
    if (this.#lastStartAt === null) {
      // A service that restarts (or crash-loops) keeps the spacing of the run before it.
      this.#busy = 'confirming';
      await (this.#readLastStart ??= this.#lastStartFromLog());
      this.#busy = null;
      if (this.#closed || this.#run || this.#frontendDown !== null) return;
      if (this.#lastStartAt !== null && Date.now() < this.#lastStartAt + this.#options.minIntervalMs) return this.#schedule();
    }
    if (this.#listedAt === null || Date.now() - this.#listedAt > this.#options.confirmMaxAgeMs) {
      // Another dispatcher (a cron line left in place) or a queue's own run may have moved `last`.
      this.#busy = 'confirming';
      try {
        await this.#options.refresh();
      } catch (error) {
        if (this.#frontendDown === null) this.unavailable((error as Error).message);
      } finally {
        this.#busy = null;
      }
      if (this.#closed || this.#frontendDown !== null) return;
    }
    const now = Date.now();
    const due = this.#listing?.enabled ? this.#listing.queues.filter((q) => isDue(q, Math.floor(now / 1000))) : [];
    const spaced = this.#lastStartAt === null || now >= this.#lastStartAt + this.#options.minIntervalMs;
    if (due.length === 0 || !spaced || this.#run) return this.#schedule();
    await this.#start(due);
  }

  async #start(due: HostingQueue[]): Promise<void> {
    const { argv, logDir, timeoutMs, killGraceMs, env, log } = this.#options;
    const names = safeNames(due);
    this.#busy = 'starting';
    let started;
    try {
      const survivor = await this.#survivor();
      if (survivor !== null) {
        this.#busy = null;
        this.#followSurvivor(survivor);
        return;
      }
      await this.#rotateLog();
      started = await startProcess({
        name: DISPATCH_RUN_NAME,
        argv,
        logDir,
        timeoutMs,
        killGraceMs,
        // The module's drush pre-hook records the run as the service's only with this flag (hosting_taskd.drush.inc).
        env: { ...env, AEGIR_TASKD_DISPATCH: '1' },
        meta: { due: names },
        headerPrefix: DISPATCH_HEADER_PREFIX,
        headerNote: `due: ${names.join(', ')}`,
      });
    } catch (error) {
      this.#busy = null;
      const now = Date.now();
      this.#lastStartAt = now;
      this.#record({ exitCode: null, signal: null, startedAt: now, endedAt: now, timedOut: false, spawnError: (error as Error).message, output: '' }, names);
      return this.#schedule();
    }
    this.#busy = null;
    this.#lastStartAt = started.startedAt;
    this.#runs += 1;
    this.#run = { pid: started.pid, startedAt: started.startedAt, due: names };
    log.info({ pid: started.pid, due: names }, 'dispatch started: a queue is due');
    const result = await started.done;
    this.#run = null;
    this.#record(result, names);
    await this.#afterRun();
  }

  #record(result: RunResult, due: string[]): void {
    const { metrics, log } = this.#options;
    const outcome = dispatchResult(result);
    const seconds = (result.endedAt - result.startedAt) / 1000;
    metrics.dispatchRuns.inc({ result: outcome });
    if (outcome !== 'not_started') metrics.dispatchDuration.observe(seconds);
    const message = result.spawnError ?? (result.timedOut ? `timed out after ${this.#options.timeoutMs / 1000} s: SIGTERM to its process group, SIGKILL after ${this.#options.killGraceMs / 1000} s` : null);
    this.#lastRun = {
      startedAt: iso(result.startedAt),
      endedAt: iso(result.endedAt),
      result: outcome,
      exitCode: result.exitCode,
      signal: result.signal,
      durationSeconds: seconds,
      due,
      message,
    };
    const line = { result: outcome, exitCode: result.exitCode, signal: result.signal, seconds, due, ...(message && { message }) };
    if (outcome === 'ok') log.info(line, 'dispatch ended');
    else log.warn(line, 'dispatch did not end well; see dispatch.log in TASKD_LOG_DIR');
  }

  /** The due times are read at once: the run moved `last` of what it ran, and waiting for the next reconcile could miss a due time. */
  async #afterRun(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#options.refresh();
    } catch (error) {
      if (this.#frontendDown === null) this.unavailable((error as Error).message);
    }
    this.#schedule();
  }

  /** A dispatch started by an earlier run of the service that is still alive: never two at once. */
  async #survivor(): Promise<number | null> {
    const { logDir } = this.#options;
    const file = pidFilePath(logDir, DISPATCH_RUN_NAME);
    const recorded = await readPidFile(file);
    if (!recorded) return null;
    const alive = (await isRunning(recorded.pid)) && (recorded.processStart === null || (await readProcessStartTime(recorded.pid)) === recorded.processStart);
    if (alive) return recorded.pid;
    await fs.rm(file, { force: true });
    return null;
  }

  #followSurvivor(pid: number): void {
    this.#options.log.warn({ pid }, 'dispatch: a hosting-dispatch started before the service restarted still runs; waiting for it to end');
    this.#run = { pid, startedAt: null, due: [] };
    this.#survivorPoll = setInterval(() => {
      void isRunning(pid).then((running) => {
        if (running || !this.#survivorPoll) return;
        clearInterval(this.#survivorPoll);
        this.#survivorPoll = null;
        this.#run = null;
        this.#lastStartAt = Date.now();
        void this.#afterRun();
      });
    }, SURVIVOR_POLL_MS);
    this.#survivorPoll.unref();
  }

  /** The time on the last header line in dispatch.log, written as each run started. */
  async #lastStartFromLog(): Promise<void> {
    try {
      const { text } = await readTail(logFilePath(this.#options.logDir, DISPATCH_RUN_NAME), 64 * 1024);
      const at = text.lastIndexOf(DISPATCH_HEADER_PREFIX);
      if (at < 0) return;
      const started = Date.parse(text.slice(at + DISPATCH_HEADER_PREFIX.length).split(' ', 1)[0]!);
      // A time ahead of the clock (a clock set back) must not hold dispatching off.
      if (Number.isFinite(started) && started <= Date.now()) this.#lastStartAt ??= started;
    } catch {
      // No readable log: no earlier run to keep the spacing of.
    }
  }

  async #rotateLog(): Promise<void> {
    const file = logFilePath(this.#options.logDir, DISPATCH_RUN_NAME);
    try {
      if ((await fs.stat(file)).size > DISPATCH_LOG_MAX_BYTES) await fs.rename(file, `${file}.1`);
    } catch {
      // No log yet, or it cannot be moved: the run appends to it either way.
    }
  }
}
