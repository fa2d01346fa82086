import os from 'node:os';
import type { Config } from './config.js';
import { AegirStatus, FrontendError, type AegirTask, type Frontend } from './frontend.js';
import type { Metrics } from './metrics.js';
import { MinHeap } from './min-heap.js';
import { childEnvironment, isRunning, readProcessStartTime, startRun, type RunResult, type StartedRun } from './runner.js';
import { spawnGate, WarmGates } from './start-gate.js';

export const TASK_STATES = ['queued', 'running', 'succeeded', 'warning', 'failed', 'timed_out', 'skipped', 'cancelled', 'stuck'] as const;
export type TaskState = (typeof TASK_STATES)[number];
export type EndState = Exclude<TaskState, 'queued' | 'running'>;
export type TaskSource = 'webhook' | 'operator' | 'reconcile' | 'adopted';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface TaskSubmission {
  nid: number;
  rid?: number | null | undefined;
  type?: string | null | undefined;
  vid?: number | null | undefined;
  changed?: number | null | undefined;
  source: Exclude<TaskSource, 'adopted'>;
  /** When Aegir last said this task is queued (a signed webhook or a reconcile listing); null when unknown. */
  confirmedAt: number | null;
}

export interface Task {
  nid: number;
  rid: number | null;
  type: string | null;
  vid: number | null;
  changed: number | null;
  lane: string | null;
  state: TaskState;
  source: TaskSource;
  receivedAt: number;
  confirmedAt: number | null;
  startedAt: number | null;
  endedAt: number | null;
  attempts: number;
  exitCode: number | null;
  signal: string | null;
  aegirStatus: number | null;
  outcomeConfirmed: boolean | null;
  message: string | null;
  pid: number | null;
  /** Ordering within a lane and across lane heads: Aegir's changed time, else the time received (seconds). */
  orderKey: number;
}

export interface Orphan {
  nid: number;
  rid: number | null;
  type: string | null;
  vid: number | null;
  since: number;
  reason: string;
}

export interface AdoptionRecord {
  nid: number;
  pid: number;
  processStart: string | null;
  startedAt: number;
  rid?: number | null;
  lane?: string | null;
  type?: string | null;
  vid?: number | null;
  changed?: number | null;
  receivedAt?: number;
  attempts?: number;
}

export interface ReconcileReport {
  listed: number;
  queued: number[];
  cancelled: number[];
  orphans: number[];
  lanesLearned: number[];
}

interface Lane {
  key: string;
  tasks: MinHeap<Task>;
  live: number;
  /** The task that owns the lane: running, or waiting to be retried. */
  holder: Task | null;
}

interface ReadyEntry {
  lane: Lane;
  head: Task;
}

interface Attempt {
  run: StartedRun | null;
  cancelRequested: boolean;
}

export type SchedulerConfig = Pick<
  Config,
  'concurrency' | 'warmStarts' | 'command' | 'logDir' | 'taskTimeoutMs' | 'killGraceMs' | 'maxStartsPerMinute' | 'maxLoad' | 'confirmMaxAgeMs' | 'historySize'
>;

export interface SchedulerOptions {
  config: SchedulerConfig;
  env: NodeJS.ProcessEnv;
  metrics: Metrics;
  log: Logger;
  frontend?: Frontend | undefined;
  /** Delays before the 2nd, 3rd… attempt of a task Aegir still shows queued after a run; its length + 1 is the number of attempts. */
  retryDelaysMs?: number[];
  loadAverage?: () => number;
  adoptionPollMs?: number;
  /** How soon a start held back by the load limit is tried again. */
  gateRecheckMs?: number;
}

const REFUSAL = /This task is (not queued|already running)/i;
const MINUTE = 60_000;

const before = (a: Task, b: Task) => a.orderKey < b.orderKey || (a.orderKey === b.orderKey && a.nid < b.nid);

/**
 * Decides what runs when. A lane is a rid (a site, platform or server): one running task per
 * lane, at most `concurrency` in all, oldest first within a lane and across lane heads. Lanes and
 * ready lanes are heaps with lazy deletion, so intake and choosing the next task cost O(log n).
 */
export class Scheduler {
  readonly #config: SchedulerConfig;
  readonly #env: NodeJS.ProcessEnv;
  readonly #warmGates: WarmGates;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #frontend: Frontend | undefined;
  readonly #retryDelaysMs: number[];
  readonly #loadAverage: () => number;
  readonly #adoptionPollMs: number;
  readonly #gateRecheckMs: number;

  readonly #active = new Map<number, Task>();
  readonly #history = new Map<number, Task>();
  readonly #stuck = new Map<number, { vid: number | null; changed: number | null }>();
  readonly #lanes = new Map<string, Lane>();
  readonly #ready = new MinHeap<ReadyEntry>((a, b) => before(a.head, b.head));
  readonly #awaitingLane = new Map<number, Task>();
  readonly #attempts = new Map<number, Attempt>();
  readonly #orphans = new Map<number, Orphan>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #startTimes: number[] = [];
  readonly #idleWaiters: Array<() => void> = [];

  #queuedCount = 0;
  /** Tasks running now (including adopted ones); its size is what the concurrency limit counts. */
  readonly #running = new Set<Task>();
  #paused = false;
  #closing = false;
  #gateTimer: NodeJS.Timeout | null = null;
  #deferredBy: 'rate' | 'load' | null = null;

  constructor(options: SchedulerOptions) {
    this.#config = options.config;
    this.#env = options.env;
    this.#metrics = options.metrics;
    this.#log = options.log;
    this.#frontend = options.frontend;
    this.#retryDelaysMs = options.retryDelaysMs ?? [5_000, 20_000];
    this.#loadAverage = options.loadAverage ?? (() => os.loadavg()[0]!);
    this.#adoptionPollMs = options.adoptionPollMs ?? 500;
    this.#gateRecheckMs = options.gateRecheckMs ?? 5_000;
    const childEnv = childEnvironment(options.env);
    this.#warmGates = new WarmGates(Math.min(options.config.warmStarts, options.config.concurrency), () => spawnGate(options.config.logDir, childEnv));
  }

  /** Starts the warm gates, so that even the first task starts without a fork of the service. */
  prepareStarts(): void {
    if (!this.#closing) this.#warmGates.fill();
  }

  // ---- intake ------------------------------------------------------------

  /** Queues a task unless its nid is already queued or running. Returns the task and whether it was a duplicate. */
  submit(input: TaskSubmission, now = Date.now()): { task: Task; duplicate: boolean } {
    const existing = this.#active.get(input.nid);
    if (existing) {
      if (input.confirmedAt !== null && existing.state === 'queued') existing.confirmedAt = Math.max(existing.confirmedAt ?? 0, input.confirmedAt);
      if (existing.lane === null && input.rid) this.#learnLane(existing, input.rid);
      this.#metrics.duplicates.inc({ reason: 'nid_active' });
      return { task: existing, duplicate: true };
    }
    const stuck = this.#stuck.get(input.nid);
    const ended = this.#history.get(input.nid);
    if (stuck && ended && (input.vid ?? stuck.vid) === stuck.vid && (input.changed ?? stuck.changed) === stuck.changed) {
      // Repeated runs left it queued in Aegir: only a new revision or changed time earns another try.
      this.#metrics.duplicates.inc({ reason: 'stuck' });
      return { task: ended, duplicate: true };
    }
    this.#stuck.delete(input.nid);
    const task: Task = {
      nid: input.nid,
      // hosting_task.rid defaults to 0, which names no node: such a task has no lane to share. A task's
      // rid never changes in Aegir, so one learned earlier for this nid still holds.
      rid: input.rid || ended?.rid || null,
      type: input.type ?? null,
      vid: input.vid ?? null,
      changed: input.changed ?? null,
      lane: null,
      state: 'queued',
      source: input.source,
      receivedAt: now,
      // A nid that already ended here is re-checked with Aegir before it runs again, whatever the webhook says.
      confirmedAt: ended ? null : input.confirmedAt,
      startedAt: null,
      endedAt: null,
      attempts: 0,
      exitCode: null,
      signal: null,
      aegirStatus: null,
      outcomeConfirmed: null,
      message: null,
      pid: null,
      orderKey: input.changed ?? now / 1000,
    };
    this.#history.delete(input.nid);
    this.#active.set(task.nid, task);
    this.#queuedCount += 1;
    this.#metrics.tasksReceived.inc({ source: input.source });
    if (task.rid !== null) {
      this.#placeInLane(task, `rid:${task.rid}`);
    } else if (this.#frontend) {
      task.message = 'waiting for the frontend to tell its rid';
      this.#awaitingLane.set(task.nid, task);
      void this.#lookUpLane(task, 0);
    } else {
      this.#placeInLane(task, `nid:${task.nid}`);
    }
    this.#pump();
    return { task, duplicate: false };
  }

  // ---- operator controls -------------------------------------------------

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#pump();
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Drops a queued task, or stops a running one when forced. */
  cancel(nid: number, force: boolean, reason = 'removed by an operator'): { task: Task | undefined; outcome: 'cancelled' | 'stopping' | 'running' | 'not_found' | 'ended' } {
    const task = this.#active.get(nid);
    if (!task) {
      const ended = this.#history.get(nid);
      return { task: ended, outcome: ended ? 'ended' : 'not_found' };
    }
    if (task.state === 'queued') {
      this.#dropQueued(task, reason);
      return { task, outcome: 'cancelled' };
    }
    if (!force) return { task, outcome: 'running' };
    const attempt = this.#attempts.get(nid);
    if (attempt) {
      attempt.cancelRequested = true;
      attempt.run?.stop();
    } else if (task.pid !== null) {
      // An adopted child is not ours to wait on; its group is signalled all the same.
      try {
        process.kill(-task.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      task.message = reason;
    }
    return { task, outcome: 'stopping' };
  }

  // ---- reading -----------------------------------------------------------

  /** Queued or running: such a task's log is still being written to, or about to be. */
  isActive(nid: number): boolean {
    return this.#active.has(nid);
  }

  get(nid: number): Task | undefined {
    return this.#active.get(nid) ?? this.#history.get(nid);
  }

  *#queuedTasks(): Generator<Task> {
    for (const t of this.#active.values()) if (t.state === 'queued') yield t;
  }

  /** Running, then queued, then ended (newest first); stops as soon as it has `limit`. */
  list(state?: TaskState, limit = 100): Task[] {
    const out: Task[] = [];
    const take = (tasks: Iterable<Task>) => {
      for (const t of tasks) {
        if (out.length >= limit) return;
        if (state === undefined || t.state === state) out.push(t);
      }
    };
    if (state === undefined || state === 'running') take(this.#running);
    if (state === undefined || state === 'queued') take(this.#queuedTasks());
    if (state !== 'running' && state !== 'queued') take([...this.#history.values()].reverse());
    return out;
  }

  stats() {
    return {
      paused: this.#paused,
      closing: this.#closing,
      queued: this.#queuedCount,
      running: this.#running.size,
      lanes: this.#lanes.size,
      awaitingLane: this.#awaitingLane.size,
      orphans: this.#orphans.size,
      deferredBy: this.#deferredBy,
      startsLastMinute: this.#startsInLastMinute(Date.now()),
    };
  }

  lanesSnapshot(limit = 100): Array<{ lane: string; queued: number; running: number | null }> {
    const out = [];
    for (const lane of this.#lanes.values()) {
      if (out.length >= limit) break;
      out.push({ lane: lane.key, queued: lane.live, running: lane.holder?.state === 'running' ? lane.holder.nid : null });
    }
    return out;
  }

  orphans(): Orphan[] {
    return [...this.#orphans.values()];
  }

  get limits() {
    return {
      concurrency: this.#config.concurrency,
      maxStartsPerMinute: this.#config.maxStartsPerMinute ?? null,
      maxLoad: this.#config.maxLoad ?? null,
      taskTimeoutSeconds: this.#config.taskTimeoutMs / 1000,
    };
  }

  // ---- reconciliation ----------------------------------------------------

  /**
   * Converges on Aegir's listing of queued and processing tasks, taken at `requestedAt`.
   * Anything received or ended after that moment is newer than the listing and left alone.
   */
  reconcile(listing: AegirTask[], requestedAt: number): ReconcileReport {
    const report: ReconcileReport = { listed: listing.length, queued: [], cancelled: [], orphans: [], lanesLearned: [] };
    const queuedInAegir = new Set<number>();
    const processingInAegir = new Set<number>();
    for (const item of listing) {
      if (item.status === AegirStatus.queued) {
        queuedInAegir.add(item.nid);
        const active = this.#active.get(item.nid);
        if (active) {
          if (active.state === 'queued') active.confirmedAt = Math.max(active.confirmedAt ?? 0, requestedAt);
          if (active.lane === null && item.rid) {
            this.#learnLane(active, item.rid);
            report.lanesLearned.push(item.nid);
          }
          continue;
        }
        const ended = this.#history.get(item.nid);
        if (ended && (ended.endedAt ?? 0) >= requestedAt) continue;
        const { duplicate } = this.submit(
          { nid: item.nid, rid: item.rid ?? null, type: item.type ?? null, vid: item.vid ?? null, changed: item.changed ?? null, source: 'reconcile', confirmedAt: requestedAt },
          requestedAt,
        );
        if (!duplicate) report.queued.push(item.nid);
      } else if (item.status === AegirStatus.processing) {
        processingInAegir.add(item.nid);
        const active = this.#active.get(item.nid);
        if (active && active.state === 'running') continue;
        if (!this.#orphans.has(item.nid)) {
          this.#orphans.set(item.nid, {
            nid: item.nid,
            rid: item.rid ?? null,
            type: item.type ?? null,
            vid: item.vid ?? null,
            since: requestedAt,
            reason: 'Aegir shows it processing and no child of this service runs it',
          });
          this.#log.warn({ nid: item.nid, rid: item.rid }, 'orphaned task: Aegir shows it processing with no child here');
        }
        report.orphans.push(item.nid);
      }
    }
    for (const nid of [...this.#orphans.keys()]) if (!processingInAegir.has(nid)) this.#orphans.delete(nid);
    for (const task of [...this.#active.values()]) {
      if (task.state !== 'queued' || queuedInAegir.has(task.nid) || task.receivedAt >= requestedAt) continue;
      if ((task.confirmedAt ?? 0) >= requestedAt) continue;
      this.#dropQueued(task, 'Aegir no longer has it queued');
      report.cancelled.push(task.nid);
    }
    return report;
  }

  /** Ended tasks whose Aegir outcome could not be read; a reconcile looks them up again. */
  unconfirmedOutcomes(limit = 50): number[] {
    const out: number[] = [];
    for (const t of this.#history.values()) {
      if (t.outcomeConfirmed === false) out.push(t.nid);
      if (out.length >= limit) break;
    }
    return out;
  }

  correctOutcome(nid: number, aegir: AegirTask | null): void {
    const task = this.#history.get(nid);
    if (!task || task.outcomeConfirmed !== false) return;
    if (aegir === null) {
      task.outcomeConfirmed = true;
      task.message = 'Aegir no longer has this task';
      return;
    }
    const state = endStateFromAegir(aegir.status);
    if (state === null) return;
    task.aegirStatus = aegir.status;
    task.outcomeConfirmed = true;
    if (state !== task.state) {
      this.#log.info({ nid, from: task.state, to: state }, 'outcome corrected from Aegir');
      task.state = state;
    }
  }

  // ---- re-adoption after a restart ---------------------------------------

  /**
   * Takes back a child that a previous run of the service started and that is still alive:
   * it shows as running, holds its lane and a concurrency slot, and its outcome is read when it ends.
   */
  async adopt(record: AdoptionRecord): Promise<boolean> {
    if (!(await isRunning(record.pid))) return false;
    if (record.processStart !== null && (await readProcessStartTime(record.pid)) !== record.processStart) return false;
    if (this.#active.has(record.nid)) return false;
    const now = Date.now();
    const laneKey = record.lane ?? (record.rid != null ? `rid:${record.rid}` : `nid:${record.nid}`);
    const task: Task = {
      nid: record.nid,
      rid: record.rid ?? null,
      type: record.type ?? null,
      vid: record.vid ?? null,
      changed: record.changed ?? null,
      lane: laneKey,
      state: 'running',
      source: 'adopted',
      receivedAt: record.receivedAt ?? record.startedAt,
      confirmedAt: null,
      startedAt: record.startedAt,
      endedAt: null,
      attempts: record.attempts ?? 1,
      exitCode: null,
      signal: null,
      aegirStatus: null,
      outcomeConfirmed: null,
      message: 're-adopted after a restart of the service',
      pid: record.pid,
      orderKey: record.changed ?? now / 1000,
    };
    this.#history.delete(task.nid);
    this.#active.set(task.nid, task);
    this.#orphans.delete(task.nid);
    const lane = this.#laneFor(laneKey);
    lane.holder = task;
    this.#running.add(task);
    this.#log.info({ nid: task.nid, pid: record.pid, lane: laneKey }, 're-adopted a running task');
    // Not our child, so there is no exit event to wait for: look every so often.
    const poll = setInterval(() => {
      void isRunning(record.pid).then((running) => {
        if (running || !this.#timers.has(poll)) return;
        clearInterval(poll);
        this.#timers.delete(poll);
        void this.#finishAdopted(task);
      });
    }, this.#adoptionPollMs);
    this.#timers.add(poll);
    return true;
  }

  async #finishAdopted(task: Task): Promise<void> {
    const endedAt = Date.now();
    task.pid = null;
    let state: EndState = 'failed';
    if (this.#frontend) {
      const outcome = await this.#readOutcome(task);
      if (outcome.state !== null) {
        state = outcome.state === 'retry' ? 'failed' : outcome.state;
        task.outcomeConfirmed = true;
        if (outcome.state === 'retry') task.message = 'Aegir still shows it queued after the re-adopted run';
      } else {
        task.outcomeConfirmed = false;
        task.message = 'outcome unknown: the frontend could not be read; a later reconcile corrects it';
      }
    } else {
      task.outcomeConfirmed = false;
      task.message = 'outcome unknown: the service restarted while this ran, and without TASKD_FRONTEND_URL Aegir cannot be asked';
    }
    this.#running.delete(task);
    this.#end(task, state, endedAt);
    this.#releaseLane(task);
    this.#notifyIfIdle();
    this.#pump();
  }

  // ---- shutdown ----------------------------------------------------------

  /** Stops starting tasks and waits for the running ones up to graceMs; children still running are left alive. */
  async drain(graceMs: number): Promise<{ stillRunning: number[] }> {
    this.#closing = true;
    if (this.#running.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const stillRunning = [...this.#active.values()].filter((t) => t.state === 'running').map((t) => t.nid);
    this.close();
    return { stillRunning };
  }

  /** Clears every timer; nothing else starts. Running children are not touched. */
  close(): void {
    this.#closing = true;
    this.#warmGates.close();
    for (const timer of this.#timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this.#timers.clear();
    if (this.#gateTimer) clearTimeout(this.#gateTimer);
    this.#gateTimer = null;
  }

  get closing(): boolean {
    return this.#closing;
  }

  // ---- lanes -------------------------------------------------------------

  #laneFor(key: string): Lane {
    let lane = this.#lanes.get(key);
    if (!lane) {
      lane = { key, tasks: new MinHeap<Task>(before), live: 0, holder: null };
      this.#lanes.set(key, lane);
    }
    return lane;
  }

  #placeInLane(task: Task, key: string): void {
    task.lane = key;
    const lane = this.#laneFor(key);
    lane.tasks.push(task);
    lane.live += 1;
    if (lane.holder === null && this.#headOf(lane) === task) this.#ready.push({ lane, head: task });
  }

  #learnLane(task: Task, rid: number): void {
    if (!this.#awaitingLane.delete(task.nid)) return;
    task.rid = rid;
    task.message = null;
    this.#placeInLane(task, `rid:${rid}`);
    this.#pump();
  }

  async #lookUpLane(task: Task, failures: number): Promise<void> {
    if (!this.#frontend || !this.#awaitingLane.has(task.nid)) return;
    try {
      const aegir = await this.#frontend.getTask(task.nid);
      if (!this.#awaitingLane.has(task.nid)) return;
      if (aegir === null) {
        this.#awaitingLane.delete(task.nid);
        this.#dropQueued(task, 'Aegir has no such task');
        return;
      }
      if (aegir.status !== AegirStatus.queued) {
        this.#awaitingLane.delete(task.nid);
        this.#dropQueued(task, `Aegir no longer has it queued (status ${aegir.status})`);
        return;
      }
      task.confirmedAt = Date.now();
      if (aegir.changed != null && task.changed === null) {
        task.changed = aegir.changed;
        task.orderKey = aegir.changed;
      }
      task.vid ??= aegir.vid ?? null;
      task.type ??= aegir.type ?? null;
      // A task with no rid in Aegir still needs a lane; it gets one of its own.
      if (aegir.rid) this.#learnLane(task, aegir.rid);
      else {
        this.#awaitingLane.delete(task.nid);
        task.message = null;
        this.#placeInLane(task, `nid:${task.nid}`);
        this.#pump();
      }
    } catch (error) {
      this.#countFrontendError('lane_lookup', error);
      const delay = Math.min(1000 * 2 ** failures, 60_000);
      task.message = `waiting for the frontend to tell its rid (${(error as Error).message}); retrying in ${delay / 1000}s`;
      this.#later(delay, () => void this.#lookUpLane(task, failures + 1));
    }
  }

  /** The oldest live task of a lane; entries of tasks that left the queue are discarded on the way. */
  #headOf(lane: Lane): Task | undefined {
    for (;;) {
      const top = lane.tasks.peek();
      if (!top) return undefined;
      if (top.state === 'queued' && top.lane === lane.key && this.#active.get(top.nid) === top) return top;
      lane.tasks.pop();
    }
  }

  #releaseLane(task: Task): void {
    const lane = task.lane === null ? undefined : this.#lanes.get(task.lane);
    if (!lane || lane.holder !== task) return;
    lane.holder = null;
    const head = this.#headOf(lane);
    if (head) this.#ready.push({ lane, head });
    else if (lane.live === 0) this.#lanes.delete(lane.key);
  }

  #dropQueued(task: Task, reason: string): void {
    this.#awaitingLane.delete(task.nid);
    const lane = task.lane === null ? undefined : this.#lanes.get(task.lane);
    this.#queuedCount -= 1;
    task.message = reason;
    this.#end(task, 'cancelled', Date.now());
    if (!lane) return;
    if (lane.holder === task) {
      // A task waiting for its retry holds its lane.
      this.#releaseLane(task);
    } else {
      lane.live -= 1;
      const head = this.#headOf(lane);
      if (lane.holder === null && head) this.#ready.push({ lane, head });
      if (lane.live === 0 && lane.holder === null) this.#lanes.delete(lane.key);
    }
    this.#pump();
  }

  // ---- starting ----------------------------------------------------------

  #startsInLastMinute(now: number): number {
    while (this.#startTimes.length > 0 && this.#startTimes[0]! <= now - MINUTE) this.#startTimes.shift();
    return this.#startTimes.length;
  }

  /** Paused, a starts-per-minute budget, a load limit: when one holds starts back, a timer looks again. */
  #gatesOpen(now: number): boolean {
    const max = this.#config.maxStartsPerMinute;
    if (max !== undefined && this.#startsInLastMinute(now) >= max) {
      this.#deferredBy = 'rate';
      this.#recheckGatesIn(this.#startTimes[0]! + MINUTE - now + 1);
      return false;
    }
    const maxLoad = this.#config.maxLoad;
    if (maxLoad !== undefined && this.#loadAverage() > maxLoad) {
      this.#deferredBy = 'load';
      this.#recheckGatesIn(this.#gateRecheckMs);
      return false;
    }
    this.#deferredBy = null;
    return true;
  }

  #recheckGatesIn(ms: number): void {
    if (this.#gateTimer) return;
    this.#gateTimer = setTimeout(() => {
      this.#gateTimer = null;
      this.#pump();
    }, ms);
  }

  #nextReady(): { lane: Lane; task: Task } | undefined {
    for (;;) {
      const entry = this.#ready.peek();
      if (!entry) return undefined;
      const { lane, head } = entry;
      if (this.#lanes.get(lane.key) === lane && lane.holder === null && this.#headOf(lane) === head) return { lane, task: head };
      this.#ready.pop();
    }
  }

  #pump(): void {
    while (!this.#paused && !this.#closing && this.#running.size < this.#config.concurrency) {
      const next = this.#nextReady();
      if (!next) return;
      const now = Date.now();
      if (!this.#gatesOpen(now)) return;
      this.#ready.pop();
      const { lane, task } = next;
      lane.tasks.pop();
      lane.live -= 1;
      lane.holder = task;
      this.#queuedCount -= 1;
      this.#running.add(task);
      task.state = 'running';
      task.message = null;
      if (this.#config.maxStartsPerMinute !== undefined) this.#startTimes.push(now);
      const attempt: Attempt = { run: null, cancelRequested: false };
      this.#attempts.set(task.nid, attempt);
      // The scheduler is the worker pool: it starts an attempt only when a slot is free, so it runs at once.
      this.#runAttempt(task, attempt).catch((error: unknown) => {
        // #runAttempt settles every path itself; reaching here is a bug, and the task must still not hold its lane forever.
        this.#log.error({ err: error, nid: task.nid }, 'attempt failed unexpectedly');
        this.#finishAttempt(task, 'failed', Date.now(), `internal error: ${(error as Error).message}`);
      });
    }
  }

  async #runAttempt(task: Task, attempt: Attempt): Promise<void> {
    // At 0 a confirmation is never fresh, even in the millisecond it arrived: every start asks Aegir first.
    if (this.#frontend && (task.confirmedAt === null || Date.now() - task.confirmedAt >= this.#config.confirmMaxAgeMs)) {
      const verdict = await this.#confirmQueued(task);
      if (verdict !== null) {
        this.#finishAttempt(task, attempt.cancelRequested ? 'cancelled' : 'skipped', Date.now(), verdict);
        return;
      }
    }
    if (attempt.cancelRequested) {
      this.#finishAttempt(task, 'cancelled', Date.now(), 'removed by an operator before it started');
      return;
    }
    task.attempts += 1;
    let run: StartedRun;
    try {
      run = await startRun(
        {
          nid: task.nid,
          argvTemplate: this.#config.command,
          logDir: this.#config.logDir,
          timeoutMs: this.#config.taskTimeoutMs,
          killGraceMs: this.#config.killGraceMs,
          env: this.#env,
          meta: { rid: task.rid, lane: task.lane, type: task.type, vid: task.vid, changed: task.changed, receivedAt: task.receivedAt, attempts: task.attempts },
        },
        this.#warmGates,
      );
    } catch (error) {
      this.#finishAttempt(task, 'failed', Date.now(), `could not prepare the run: ${(error as Error).message}`);
      return;
    }
    attempt.run = run;
    task.pid = run.pid;
    task.startedAt = run.startedAt;
    // A command that could not start has no process: it ends as failed without counting as a start.
    if (run.pid !== null) {
      this.#metrics.tasksStarted.inc();
      if (task.attempts === 1) this.#metrics.queueToStart.observe(Math.max(0, run.startedAt - task.receivedAt) / 1000);
      this.#log.info({ nid: task.nid, lane: task.lane, pid: run.pid, attempt: task.attempts }, 'task started');
    }
    if (attempt.cancelRequested) run.stop();
    const result = await run.done;
    task.pid = null;
    task.exitCode = result.exitCode;
    task.signal = result.signal;
    this.#metrics.runDuration.observe((result.endedAt - result.startedAt) / 1000);
    await this.#settle(task, attempt, result);
  }

  /** Returns null when the task may start, or why it must not. An unreachable frontend lets it start: hosting-task refuses a task that is not queued. */
  async #confirmQueued(task: Task): Promise<string | null> {
    try {
      const aegir = await this.#frontend!.getTask(task.nid);
      if (aegir === null) return 'Aegir has no such task';
      if (aegir.status !== AegirStatus.queued) return `Aegir no longer has it queued (status ${aegir.status})`;
      task.confirmedAt = Date.now();
      return null;
    } catch (error) {
      this.#countFrontendError('confirm', error);
      this.#log.warn({ nid: task.nid, err: (error as Error).message }, 'could not confirm the task is queued; starting it anyway');
      return null;
    }
  }

  async #settle(task: Task, attempt: Attempt, result: RunResult): Promise<void> {
    const endedAt = result.endedAt;
    if (attempt.cancelRequested) return this.#finishAttempt(task, 'cancelled', endedAt, 'stopped by an operator while running');
    if (result.spawnError) return this.#finishAttempt(task, 'failed', endedAt, result.spawnError);
    if (result.timedOut) {
      return this.#finishAttempt(task, 'timed_out', endedAt, `killed after ${this.#config.taskTimeoutMs / 1000}s (TASKD_TASK_TIMEOUT)`);
    }
    if (result.exitCode === 1 && REFUSAL.test(result.output)) {
      return this.#finishAttempt(task, 'skipped', endedAt, `hosting-task refused it: ${result.output.match(REFUSAL)![0]}`);
    }
    const byExitCode: EndState = result.exitCode === 0 ? 'succeeded' : 'failed';
    const exitMessage = result.exitCode === 0 ? null : result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
    if (!this.#frontend) return this.#finishAttempt(task, byExitCode, endedAt, exitMessage);
    const outcome = await this.#readOutcome(task);
    if (outcome.state === null) {
      task.outcomeConfirmed = false;
      return this.#finishAttempt(task, byExitCode, endedAt, `outcome not confirmed by Aegir (${outcome.message}); a later reconcile corrects it`);
    }
    task.outcomeConfirmed = true;
    if (outcome.state !== 'retry') return this.#finishAttempt(task, outcome.state, endedAt, outcome.message ?? exitMessage);
    const delay = this.#retryDelaysMs[task.attempts - 1];
    if (delay === undefined) {
      this.#stuck.set(task.nid, { vid: task.vid, changed: task.changed });
      return this.#finishAttempt(task, 'stuck', endedAt, `still queued in Aegir after ${task.attempts} runs; it runs again once Aegir shows a new revision`);
    }
    this.#scheduleRetry(task, delay);
  }

  async #readOutcome(task: Task): Promise<{ state: EndState | 'retry' | null; message: string | null }> {
    try {
      const aegir = await this.#frontend!.getTask(task.nid);
      if (aegir === null) return { state: 'failed', message: 'Aegir no longer has this task' };
      task.aegirStatus = aegir.status;
      if (aegir.status === AegirStatus.queued) {
        task.vid = aegir.vid ?? task.vid;
        task.changed = aegir.changed ?? task.changed;
        task.confirmedAt = Date.now();
        return { state: 'retry', message: null };
      }
      if (aegir.status === AegirStatus.processing) {
        this.#orphans.set(task.nid, {
          nid: task.nid,
          rid: task.rid,
          type: task.type,
          vid: aegir.vid ?? task.vid,
          since: Date.now(),
          reason: 'the child exited but Aegir still shows it processing',
        });
        return { state: 'failed', message: 'the child exited but Aegir still shows it processing (orphan)' };
      }
      return { state: endStateFromAegir(aegir.status), message: null };
    } catch (error) {
      this.#countFrontendError('outcome', error);
      return { state: null, message: (error as Error).message };
    }
  }

  #scheduleRetry(task: Task, delay: number): void {
    this.#attempts.delete(task.nid);
    this.#running.delete(task);
    this.#queuedCount += 1;
    task.state = 'queued';
    task.message = `still queued in Aegir after attempt ${task.attempts}; retrying in ${delay / 1000}s`;
    this.#log.warn({ nid: task.nid, attempt: task.attempts, delayMs: delay }, 'task still queued in Aegir after its run; retrying');
    // The task keeps holding its lane: later tasks of the same site must not overtake it.
    this.#later(delay, () => {
      if (this.#active.get(task.nid) !== task || task.state !== 'queued') return;
      const lane = this.#lanes.get(task.lane!);
      if (lane?.holder !== task) return;
      lane.holder = null;
      // Re-entering the lane puts it back at its head (it is the oldest), ready for the next pump.
      this.#placeInLane(task, lane.key);
      this.#pump();
    });
    this.#notifyIfIdle();
    this.#pump();
  }

  #finishAttempt(task: Task, state: EndState, endedAt: number, message: string | null): void {
    this.#attempts.delete(task.nid);
    this.#running.delete(task);
    task.pid = null;
    task.message = message;
    this.#end(task, state, endedAt);
    this.#releaseLane(task);
    this.#notifyIfIdle();
    this.#pump();
  }

  #end(task: Task, state: EndState, endedAt: number): void {
    task.state = state;
    task.endedAt = endedAt;
    this.#active.delete(task.nid);
    this.#history.set(task.nid, task);
    while (this.#history.size > this.#config.historySize) this.#history.delete(this.#history.keys().next().value!);
    this.#metrics.tasksEnded.inc({ outcome: state });
    const level = state === 'succeeded' || state === 'cancelled' ? 'info' : 'warn';
    this.#log[level]({ nid: task.nid, lane: task.lane, state, exitCode: task.exitCode, message: task.message }, 'task ended');
  }

  #notifyIfIdle(): void {
    if (this.#running.size > 0) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  #countFrontendError(operation: string, error: unknown): void {
    this.#metrics.frontendErrors.inc({ operation, kind: error instanceof FrontendError ? error.kind : 'unexpected' });
  }
}

export function endStateFromAegir(status: number): EndState | null {
  if (status === AegirStatus.success) return 'succeeded';
  if (status === AegirStatus.warning) return 'warning';
  if (status === AegirStatus.error) return 'failed';
  return null;
}
