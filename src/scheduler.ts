import { adoptChild, type AdoptionRecord, type AdoptionResult, type AdoptionTarget } from './adoption.js';
import { Admission, waitingForVerdict, type WaitingFor } from './admission.js';
import { Attempt, type AttemptContext, type AttemptVerdict, type WriteBackRequest } from './attempt.js';
import type { Config } from './config.js';
import type { AegirTask, Frontend } from './frontend.js';
import { LANE_UNKNOWN_MESSAGE, LaneLookups } from './lane-lookup.js';
import { LaneQueue } from './lane-queue.js';
import type { Metrics } from './metrics.js';
import { applyListing, correctOutcome, unconfirmedOutcomes, type ListingTarget, type ReconcileReport } from './reconciler.js';
import { childEnvironment } from './runner.js';
import { spawnGate, WarmGates } from './start-gate.js';
import { ACTIVE_STATES, laneKeyFor, newTask, type EndState, type Logger, type Orphan, type Task, type TaskState, type TaskSubmission } from './task.js';
import { TaskRegistry } from './task-registry.js';

export type { AdoptionRecord } from './adoption.js';
export type { ReconcileReport } from './reconciler.js';
export { TASK_STATES, endStateFromAegir, type EndState, type Logger, type Orphan, type Task, type TaskSource, type TaskState, type TaskSubmission } from './task.js';

export type SchedulerConfig = Pick<
  Config,
  | 'concurrency'
  | 'warmStarts'
  | 'command'
  | 'logDir'
  | 'taskTimeoutMs'
  | 'killGraceMs'
  | 'maxStartsPerMinute'
  | 'maxLoad'
  | 'maxLoadPerCpu'
  | 'minFreeDiskMb'
  | 'diskPath'
  | 'pauseFile'
  | 'confirmMaxAgeMs'
  | 'historySize'
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
  /** Where every change that matters after a restart is written; none: nothing survives one. */
  journal?: TaskJournal | undefined;
  /** Where finishes of dead drush runs go, to be sent to Aegir; none: they are listed as orphans. */
  outbox?: WriteBackSink | undefined;
  /** Told of every change of a task an operator can see (the event stream); must not throw. */
  onChange?: ((task: Task) => void) | undefined;
}

export interface WriteBackSink {
  push(writeBack: WriteBackRequest & { nid: number }): void;
}

/** What the scheduler writes to: a task as it is now, and whether it is stuck; records are written in groups. */
export interface TaskJournal {
  record(task: Task, stuck?: boolean): void;
  /** Resolves once every record so far has been written; rejects (JournalWriteError) when that write failed. */
  committed(): Promise<void>;
}

type EndVerdict = Extract<AttemptVerdict, { kind: 'end' }>;

/**
 * The façade that routes, the reconciler and tests talk to. It wires the rooms: the task registry
 * (who is known), the lane queue (who is next), admission (may it start now) and one Attempt per
 * start (its life with the runner and Aegir), and applies what each attempt decides.
 */
export class Scheduler {
  readonly #config: SchedulerConfig;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #frontend: Frontend | undefined;
  readonly #registry: TaskRegistry;
  readonly #journal: TaskJournal | undefined;
  readonly #outbox: WriteBackSink | undefined;
  readonly #onChange: (task: Task) => void;
  readonly #lanes = new LaneQueue<Task>();
  readonly #admission: Admission;
  readonly #attemptContext: AttemptContext;
  readonly #adoption: AdoptionTarget;
  readonly #listing: ListingTarget;
  /** Tasks waiting for the frontend to tell their rid; none without a frontend. */
  readonly #laneLookups: LaneLookups | null;
  readonly #attempts = new Map<number, Attempt>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #idleWaiters: Array<() => void> = [];
  #gateTimer: NodeJS.Timeout | null = null;
  /** True from restoreQueued() until recovered(): nothing starts before every surviving child holds its lane. */
  #recovering = false;

  constructor(options: SchedulerOptions) {
    const { config } = options;
    this.#config = config;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#frontend = options.frontend;
    this.#registry = new TaskRegistry(config.historySize);
    this.#journal = options.journal;
    this.#outbox = options.outbox;
    this.#onChange = options.onChange ?? (() => {});
    this.#admission = new Admission({ limits: config, loadAverage: options.loadAverage, loadRecheckMs: options.gateRecheckMs });
    const childEnv = childEnvironment(options.env);
    this.#attemptContext = {
      config,
      env: options.env,
      warmGates: new WarmGates(Math.min(config.warmStarts, config.concurrency), () => spawnGate(config.logDir, childEnv), { ceiling: config.concurrency }),
      frontend: options.frontend,
      metrics: options.metrics,
      log: options.log,
      retryDelaysMs: options.retryDelaysMs ?? [5_000, 20_000],
      closing: () => this.#admission.closing,
      persist: (task) => this.#persistAndConfirm(task),
      changed: (task) => this.#onChange(task),
    };
    this.#adoption = {
      registry: this.#registry,
      frontend: options.frontend,
      metrics: options.metrics,
      log: options.log,
      logDir: config.logDir,
      pollMs: options.adoptionPollMs ?? 500,
      timeoutMs: config.taskTimeoutMs,
      killGraceMs: config.killGraceMs,
      holdRunning: (task) => this.#holdRunning(task),
      finish: (task, verdict) => this.#finish(task, verdict),
      repeat: (ms, tick) => this.#repeat(ms, tick),
    };
    this.#laneLookups = options.frontend
      ? new LaneLookups({
          frontend: options.frontend,
          metrics: options.metrics,
          found: (task, rid) => this.#placeKnown(task, rid),
          gone: (task, reason) => this.#dropQueued(task, reason),
          later: (ms, fn) => this.#later(ms, fn),
        })
      : null;
    this.#listing = {
      registry: this.#registry,
      log: options.log,
      submit: (input, now) => this.submit(input, now),
      learnLane: (task, rid) => this.#learnLane(task, rid),
      dropQueued: (task, reason) => this.#dropQueued(task, reason),
      moveLane: (task, rid) => this.#moveWaiting(task, rid),
    };
  }

  /** Starts the warm gates, so that even the first task starts without a fork of the service. */
  prepareStarts(): void {
    if (!this.#admission.closing) this.#attemptContext.warmGates.fill();
  }

  // ---- intake ------------------------------------------------------------

  /** Queues a task unless its nid is already queued or running. Returns the task and whether it was a duplicate. */
  submit(input: TaskSubmission, now = Date.now()): { task: Task; duplicate: boolean } {
    const existing = this.#registry.active(input.nid);
    if (existing) {
      if (input.confirmedAt !== null && existing.state === 'queued') existing.confirmedAt = Math.max(existing.confirmedAt ?? 0, input.confirmedAt);
      if (existing.lane === null && input.rid) {
        this.#learnLane(existing, input.rid);
        this.#persist(existing);
      }
      this.#metrics.duplicates.inc({ reason: 'nid_active' });
      return { task: existing, duplicate: true };
    }
    // An operator who queues a nid by hand means it, whatever the memory of its unchanged Aegir row says.
    const stuck = input.source === 'operator' ? undefined : this.#registry.stuckFor(input);
    if (stuck) {
      this.#metrics.duplicates.inc({ reason: 'stuck' });
      return { task: stuck, duplicate: true };
    }
    this.#registry.forgetStuck(input.nid);
    const ended = this.#registry.ended(input.nid);
    const task = newTask(
      {
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
      },
      now,
    );
    // Accepted once it is in the journal: the intake answers after committed(), which withdraws it if the write failed.
    this.#journal?.record(task);
    this.#registry.activate(task);
    this.#metrics.tasksReceived.inc({ source: input.source });
    this.#enqueue(task);
    this.#onChange(task);
    this.#pump();
    return { task, duplicate: false };
  }

  /**
   * Resolves once what submit() recorded is in the journal. When the write failed, the JournalWriteError
   * is thrown and `accepted`, the task that submit() has just made, is withdrawn as if it had never
   * come (the intake answers 503 and the sender, or the reconciler, sends it again), unless it has
   * already started: then it runs, and is answered for as accepted. A duplicate passes no task: it
   * was accepted before, and stays.
   */
  async committed(accepted?: Task): Promise<void> {
    if (!this.#journal) return;
    try {
      await this.#journal.committed();
    } catch (error) {
      const task = accepted;
      if (!task) throw error;
      if (task.state !== 'queued' || !this.#registry.isCurrent(task) || task.attempts > 0) return;
      this.#laneLookups?.stop(task);
      this.#lanes.drop(task);
      this.#registry.withdraw(task);
      // Gone, never accepted: whoever watches the events sees it leave the queue.
      Object.assign(task, { state: 'cancelled', endedAt: Date.now(), message: 'not accepted: the journal could not be written' });
      this.#onChange(task);
      throw error;
    }
  }

  /** Places a queued task in its lane, or has its rid looked up first. */
  #enqueue(task: Task): void {
    if (task.rid !== null) {
      this.#lanes.place(task, laneKeyFor(task.rid, task.nid));
    } else if (this.#laneLookups) {
      this.#laneLookups.start(task);
    } else {
      this.#lanes.place(task, `nid:${task.nid}`);
    }
  }

  // ---- after a restart (decided in recovery.ts) ---------------------------

  /** A task the journal had queued comes back in its lane, with its attempts and a retry still due; Aegir is asked again before it starts. */
  restoreQueued(task: Task, now = Date.now()): void {
    this.#recovering = true;
    const changed = task.state !== 'queued';
    Object.assign(task, { state: 'queued', pid: null, confirmedAt: null, lane: null });
    this.#registry.activate(task);
    if (changed) this.#persist(task);
    if (task.retryAt !== null && task.retryAt > now && task.rid !== null) {
      this.#lanes.hold(task, laneKeyFor(task.rid, task.nid));
      this.#waitForRetry(task, task.retryAt - now);
    } else {
      task.retryAt = null;
      this.#enqueue(task);
    }
  }

  /** Start-up has brought everything back (adopted children hold their lanes first): starts may begin. */
  recovered(): void {
    this.#recovering = false;
    this.#pump();
  }

  /** An ended task goes back into the history; one whose end this restart decided is journaled as such. */
  restoreEnded(task: Task, stuck: boolean, decidedNow = false): void {
    this.#registry.restoreEnded(task);
    if (stuck) this.#registry.markStuck(task);
    if (decidedNow) this.#persist(task, stuck);
  }

  /** Every entry a compacted journal holds. */
  journalEntries() {
    return this.#registry.journalEntries();
  }

  // ---- operator controls -------------------------------------------------

  pause(): void {
    this.#admission.paused = true;
  }

  resume(): void {
    this.#admission.paused = false;
    this.#pump();
  }

  get paused(): boolean {
    return this.#admission.paused;
  }

  /** Drops a queued task, or stops a running one when forced; the reason is what Aegir's log and the task say. */
  cancel(nid: number, force: boolean, reason?: string): { task: Task | undefined; outcome: 'cancelled' | 'stopping' | 'running' | 'not_found' | 'ended' } {
    const task = this.#registry.active(nid);
    if (!task) {
      const ended = this.#registry.ended(nid);
      return { task: ended, outcome: ended ? 'ended' : 'not_found' };
    }
    if (task.state === 'queued') {
      // Aegir still lists it queued and the reconciler would queue it again at once: it is held here
      // as a stuck task is, until Aegir shows it changed (re-queued, a new revision).
      if (this.#frontend) this.#registry.markStuck(task);
      const held = this.#frontend ? '; Aegir still shows it queued, so it is held here until Aegir changes it (cancel it in Aegir too)' : '';
      this.#dropQueued(task, `${reason ?? 'removed by an operator'}${held}`);
      return { task, outcome: 'cancelled' };
    }
    const attempt = this.#attempts.get(nid);
    // A starting task has no process with its task yet: stopping it needs no force.
    if (!force && !(task.state === 'starting' && attempt)) return { task, outcome: 'running' };
    if (attempt) {
      attempt.stop(reason ?? null);
    } else if (task.pid !== null) {
      // An adopted child is not ours to wait on; its group is signalled all the same.
      try {
        process.kill(-task.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      task.message = reason ?? 'stopped by an operator';
    }
    return { task, outcome: 'stopping' };
  }

  /** Aegir says a task is no longer queued (cancelled in place, or ended): a queued one is dropped here. */
  droppedInAegir(nid: number, status: number): Task | undefined {
    const task = this.#registry.active(nid);
    if (task?.state === 'queued') this.#dropQueued(task, `cancelled in Aegir (status ${status})`);
    return this.#registry.get(nid);
  }

  // ---- reading -----------------------------------------------------------

  /** Queued or running: such a task's log is still being written to, or about to be. */
  isActive(nid: number): boolean {
    return this.#registry.active(nid) !== undefined;
  }

  get(nid: number): Task | undefined {
    return this.#registry.get(nid);
  }

  /** Running, then queued, then ended (newest first); stops as soon as it has `limit`. */
  list(state?: TaskState, limit = 100): Task[] {
    return this.#registry.list(state, limit);
  }

  /** Queued tasks, without the rest of stats(): the intake asks on every request. */
  get queuedCount(): number {
    return this.#registry.queuedCount;
  }

  stats() {
    return {
      paused: this.#admission.paused,
      closing: this.#admission.closing,
      queued: this.#registry.queuedCount,
      starting: this.#registry.countIn('starting'),
      running: this.#registry.countIn('running'),
      lanes: this.#lanes.laneCount,
      awaitingLane: this.#laneLookups?.size ?? 0,
      orphans: this.#registry.orphans.size,
      deferredBy: this.#admission.deferredBy,
      startsLastMinute: this.#admission.startsInLastMinute(Date.now()),
    };
  }

  lanesSnapshot(limit = 100): Array<{ lane: string; queued: number; running: number | null }> {
    // A starting holder counts: its lane is as busy as a running one.
    return this.#lanes.snapshot(limit).map(({ lane, queued, holder }) => ({ lane, queued, running: holder && holder.state !== 'queued' ? holder.nid : null }));
  }

  /** Why a queued task has not started yet; null once it is starting, running or ended. */
  waitingFor(task: Task): WaitingFor | null {
    if (task.state !== 'queued' || !this.#registry.isCurrent(task)) return null;
    if (this.#laneLookups?.has(task)) return { reason: 'lane_unknown', message: LANE_UNKNOWN_MESSAGE };
    if (task.retryAt !== null) return { reason: 'retry', until: new Date(task.retryAt).toISOString(), message: `Aegir still showed it queued after its run; it runs again at ${new Date(task.retryAt).toISOString()}` };
    const ahead = this.#lanes.ahead(task);
    if (ahead !== null) return { reason: 'lane_busy', nid: ahead.nid, message: `its lane ${task.lane} is busy with task ${ahead.nid}` };
    const room = this.#admission.hasRoom(this.#registry.slots.size);
    const verdict = room.open ? this.#admission.gates(Date.now()) : room;
    // The head of a free lane that every gate lets through waits for older heads of other lanes, or starts next.
    return verdict.open ? { reason: 'next', message: 'it starts as soon as the tasks before it in other lanes have started' } : waitingForVerdict(verdict, this.#config.concurrency);
  }

  orphans(): Orphan[] {
    return [...this.#registry.orphans.values()];
  }

  get limits() {
    return {
      concurrency: this.#config.concurrency,
      maxStartsPerMinute: this.#config.maxStartsPerMinute ?? null,
      maxLoad: this.#config.maxLoad ?? null,
      maxLoadPerCpu: this.#config.maxLoadPerCpu ?? null,
      minFreeDiskMb: this.#config.minFreeDiskMb ?? null,
      diskPath: this.#config.minFreeDiskMb === undefined ? null : this.#config.diskPath,
      pauseFile: this.#config.pauseFile ?? null,
      taskTimeoutSeconds: this.#config.taskTimeoutMs / 1000,
    };
  }

  // ---- reconciliation and re-adoption (decided beside the reconciler and the adoption) -----

  reconcile(listing: AegirTask[], requestedAt: number): ReconcileReport {
    return applyListing(this.#listing, listing, requestedAt);
  }

  unconfirmedOutcomes(limit = 50, skip?: (task: Task) => boolean): Task[] {
    return unconfirmedOutcomes(this.#registry, limit, skip);
  }

  correctOutcome(task: Task, aegir: AegirTask | null): void {
    correctOutcome(this.#registry, this.#log, task, aegir);
    if (this.#registry.ended(task.nid) === task) this.#persist(task, this.#registry.isStuck(task.nid));
  }

  adopt(record: AdoptionRecord): Promise<AdoptionResult> {
    return adoptChild(this.#adoption, record);
  }

  // ---- shutdown ----------------------------------------------------------

  /** Stops starting tasks and waits for the running ones up to graceMs; children still running are left alive. */
  async drain(graceMs: number): Promise<{ stillRunning: number[] }> {
    this.#admission.close();
    if (this.#registry.slots.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const stillRunning = [...this.#registry.activeTasks()].filter((t) => t.state === 'running').map((t) => t.nid);
    this.close();
    return { stillRunning };
  }

  /** Clears every timer; nothing else starts. Running children are not touched. */
  close(): void {
    this.#admission.close();
    this.#attemptContext.warmGates.close();
    for (const timer of this.#timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this.#timers.clear();
    if (this.#gateTimer) clearTimeout(this.#gateTimer);
    this.#gateTimer = null;
  }

  get closing(): boolean {
    return this.#admission.closing;
  }

  // ---- lanes -------------------------------------------------------------

  #learnLane(task: Task, rid: number): void {
    if (this.#laneLookups?.stop(task)) this.#placeKnown(task, rid);
  }

  /** A task whose lane was waiting on Aegir goes into it (a lane of its own when Aegir has no rid for it). */
  #placeKnown(task: Task, rid: number | null): void {
    if (rid !== null) task.rid = rid;
    task.message = null;
    this.#lanes.place(task, laneKeyFor(rid, task.nid));
    this.#pump();
  }

  /** Moves a task that waits in a lane to the lane of the rid Aegir gave it. */
  #moveWaiting(task: Task, rid: number): void {
    if (task.state !== 'queued' || task.lane === null || this.#lanes.isHolder(task) || task.lane === laneKeyFor(rid, task.nid)) return;
    this.#log.warn({ nid: task.nid, from: task.lane, rid }, 'task moved to the lane of the rid Aegir has for it');
    this.#lanes.drop(task);
    task.rid = rid;
    this.#lanes.place(task, laneKeyFor(rid, task.nid));
    this.#pump();
  }

  #dropQueued(task: Task, reason: string): void {
    this.#laneLookups?.stop(task);
    task.message = reason;
    this.#end(task, 'cancelled', Date.now());
    // A task waiting for its retry holds its lane; the lane queue lets it go either way.
    this.#lanes.drop(task);
    this.#pump();
  }

  // ---- starting ----------------------------------------------------------

  #pump(): void {
    while (!this.#recovering && this.#admission.hasRoom(this.#registry.slots.size).open) {
      const task = this.#lanes.peek();
      if (!task) return;
      const now = Date.now();
      const gates = this.#admission.check(now);
      if (!gates.open) {
        if (gates.recheckInMs !== null) this.#recheckGatesIn(gates.recheckInMs);
        return;
      }
      this.#lanes.take();
      this.#registry.slots.add(task);
      task.state = 'starting';
      task.message = null;
      this.#onChange(task);
      this.#admission.recordStart(now);
      const attempt = new Attempt(task, this.#attemptContext);
      this.#attempts.set(task.nid, attempt);
      // The scheduler is the worker pool: it starts an attempt only when a slot is free, so it runs at once.
      attempt.settle().then(
        (verdict) => this.#apply(attempt, verdict),
        (error: unknown) => {
          // settle() ends every path itself; reaching here is a bug, and the task must still not hold its lane forever.
          this.#log.error({ err: error, nid: task.nid }, 'attempt failed unexpectedly');
          this.#apply(attempt, { kind: 'end', state: 'failed', endedAt: Date.now(), message: `internal error: ${(error as Error).message}` });
        },
      );
    }
  }

  #recheckGatesIn(ms: number): void {
    if (this.#gateTimer) return;
    this.#gateTimer = setTimeout(() => {
      this.#gateTimer = null;
      this.#pump();
    }, ms);
  }

  #apply(attempt: Attempt, verdict: AttemptVerdict): void {
    const { task } = attempt;
    this.#attempts.delete(task.nid);
    if (verdict.kind === 'retry') this.#scheduleRetry(task, verdict.delayMs);
    else if (verdict.kind === 'unstarted') this.#putBackUnstarted(task);
    else if (verdict.kind === 'move') this.#moveHolder(task, verdict.rid);
    else this.#finish(task, verdict);
  }

  /** The service is closing: the task stays queued, at the head of its lane, for the next start of the service. */
  #putBackUnstarted(task: Task): void {
    this.#registry.slots.delete(task);
    task.state = 'queued';
    task.message = 'not started: the service was stopping';
    this.#lanes.requeueHolder(task);
    this.#persist(task);
    this.#notifyIfIdle();
  }

  /** Aegir has the task under another rid than the one it came with: it starts in Aegir's lane, never in the wrong one. */
  #moveHolder(task: Task, rid: number | null): void {
    this.#log.warn({ nid: task.nid, from: task.lane, rid }, 'task moved to the lane of the rid Aegir has for it');
    this.#registry.slots.delete(task);
    this.#lanes.release(task);
    task.state = 'queued';
    task.rid = rid;
    this.#lanes.place(task, laneKeyFor(rid, task.nid));
    this.#persist(task);
    this.#notifyIfIdle();
    this.#pump();
  }

  #scheduleRetry(task: Task, delay: number): void {
    this.#registry.slots.delete(task);
    task.state = 'queued';
    task.retryAt = Date.now() + delay;
    task.message = `still queued in Aegir after attempt ${task.attempts}; retrying in ${delay / 1000}s`;
    this.#log.warn({ nid: task.nid, attempt: task.attempts, delayMs: delay }, 'task still queued in Aegir after its run; retrying');
    this.#persist(task);
    this.#waitForRetry(task, delay);
    this.#notifyIfIdle();
    this.#pump();
  }

  /** The task keeps holding its lane until its retry is due: later tasks of the same site must not overtake it. */
  #waitForRetry(task: Task, delay: number): void {
    this.#later(delay, () => {
      if (!this.#registry.isCurrent(task) || task.state !== 'queued') return;
      task.retryAt = null;
      // Re-entering the lane puts it back at its head (it is the oldest), ready for the next pump.
      if (this.#lanes.requeueHolder(task)) this.#pump();
    });
  }

  #holdRunning(task: Task): void {
    this.#registry.activate(task);
    this.#registry.orphans.delete(task.nid);
    if (!this.#lanes.hold(task, task.lane!)) this.#log.error({ nid: task.nid, lane: task.lane }, 'an adopted child shares its lane with another task that holds it');
    this.#registry.slots.add(task);
    this.#persist(task);
  }

  #finish(task: Task, verdict: EndVerdict): void {
    task.pid = null;
    task.message = verdict.message;
    if (verdict.orphan) this.#registry.orphans.set(task.nid, verdict.orphan);
    if (verdict.writeBack) this.#writeBack(task, verdict.writeBack);
    if (verdict.state === 'stuck') this.#registry.markStuck(task);
    this.#end(task, verdict.state, verdict.endedAt);
    this.#lanes.release(task);
    this.#notifyIfIdle();
    this.#pump();
  }

  #end(task: Task, state: EndState, endedAt: number): void {
    task.state = state;
    task.endedAt = endedAt;
    this.#registry.retire(task);
    this.#persist(task, state === 'stuck' || this.#registry.isStuck(task.nid));
    this.#metrics.tasksEnded.inc({ outcome: state });
    const level = state === 'succeeded' || state === 'cancelled' ? 'info' : 'warn';
    this.#log[level]({ nid: task.nid, lane: task.lane, state, exitCode: task.exitCode, message: task.message }, 'task ended');
  }

  /** Finishes in Aegir a task whose drush is dead; without an outbox it stays listed as an orphan. */
  #writeBack(task: Task, writeBack: WriteBackRequest): void {
    if (this.#outbox) {
      this.#outbox.push({ nid: task.nid, ...writeBack });
      return;
    }
    this.#registry.orphans.set(task.nid, { nid: task.nid, rid: task.rid, type: task.type, vid: writeBack.vid, since: Date.now(), reason: writeBack.reason });
  }

  /** Aegir's answer to a finish: the task keeps the state of what happened, with the status Aegir gave it beside it. */
  writeBackDone(nid: number, answer: { kind: string; status?: number | null }): void {
    const task = this.#registry.get(nid);
    if (answer.kind !== 'not_found') this.#registry.orphans.delete(nid);
    if (!task || ACTIVE_STATES.includes(task.state) || answer.status == null) return;
    task.aegirStatus = answer.status;
    this.#persist(task, this.#registry.isStuck(nid));
  }

  /** Journals a change after the fact: the change stands whether or not the write works (a failure is logged by the journal). */
  #persist(task: Task, stuck = false): void {
    this.#onChange(task);
    this.#journal?.record(task, stuck);
  }

  /** Journals a change and answers whether it got written, for a caller that must not go on without it. */
  #persistAndConfirm(task: Task): Promise<boolean> {
    this.#onChange(task);
    if (!this.#journal) return Promise.resolve(true);
    this.#journal.record(task);
    return this.#journal.committed().then(
      () => true,
      () => false,
    );
  }

  #notifyIfIdle(): void {
    if (this.#registry.slots.size > 0) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  #repeat(ms: number, tick: () => void): { cancel(): boolean } {
    const timer = setInterval(tick, ms);
    this.#timers.add(timer);
    return {
      cancel: () => {
        clearInterval(timer);
        return this.#timers.delete(timer);
      },
    };
  }
}
