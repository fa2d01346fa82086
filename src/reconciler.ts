import { AegirStatus, readQueueListing, type AegirTask, type Frontend, type QueueListing } from './frontend.js';
import { countFrontendError, type Metrics } from './metrics.js';
import { endStateFromAegir, type Logger, type Task, type TaskSubmission } from './task.js';
import type { TaskRegistry } from './task-registry.js';

export interface ReconcileReport {
  listed: number;
  queued: number[];
  cancelled: number[];
  orphans: number[];
  lanesLearned: number[];
}

export interface ReconcileAnswer extends ReconcileReport {
  corrected: number[];
}

/** How many reconciles try to read an unconfirmed outcome before giving up on it. */
export const MAX_OUTCOME_LOOKUPS = 3;

/** What the reconciler asks of the scheduler. */
export interface ReconcileTarget {
  reconcile(listing: AegirTask[], requestedAt: number): ReconcileReport;
  unconfirmedOutcomes(limit?: number, skip?: (task: Task) => boolean): Task[];
  correctOutcome(task: Task, aegir: AegirTask | null): void;
}

/** The scheduler's own operations that applying a listing uses. */
export interface ListingTarget {
  registry: TaskRegistry;
  log: Logger;
  submit(input: TaskSubmission, now: number): { task: Task; duplicate: boolean };
  learnLane(task: Task, rid: number): void;
  dropQueued(task: Task, reason: string): void;
  /** Moves a task waiting in a lane to the lane of the rid Aegir has for it. */
  moveLane(task: Task, rid: number): void;
}

/**
 * Told of every queue listing the reconciler reads, and of every failure to read one: the dispatcher
 * takes hosting's due times from the same request, so watching them costs the frontend nothing more.
 */
export interface ListingObserver {
  listed(listing: QueueListing, requestedAt: number): void;
  unavailable(message: string): void;
}

export interface ReconcilerOptions {
  frontend: Frontend;
  scheduler: ReconcileTarget;
  metrics: Metrics;
  log: Logger;
  intervalMs: number;
  /** Runs after every reconcile whose listing was applied (the orphan sweep). */
  afterApply?: () => Promise<unknown>;
  observers?: ListingObserver[];
}

/**
 * Converges on Aegir's listing of queued and processing tasks, taken at `requestedAt`.
 * Anything received or ended after that moment is newer than the listing and left alone.
 */
export function applyListing(target: ListingTarget, listing: AegirTask[], requestedAt: number): ReconcileReport {
  const { registry, log } = target;
  const report: ReconcileReport = { listed: listing.length, queued: [], cancelled: [], orphans: [], lanesLearned: [] };
  const queuedInAegir = new Set<number>();
  const processingInAegir = new Set<number>();
  for (const item of listing) {
    if (item.status === AegirStatus.queued) {
      queuedInAegir.add(item.nid);
      const active = registry.active(item.nid);
      if (active) {
        if (active.state === 'queued') active.confirmedAt = Math.max(active.confirmedAt ?? 0, requestedAt);
        if (active.lane === null && item.rid) {
          target.learnLane(active, item.rid);
          report.lanesLearned.push(item.nid);
        } else if (item.rid && active.rid !== item.rid) {
          target.moveLane(active, item.rid);
        }
        continue;
      }
      const ended = registry.ended(item.nid);
      if (ended && (ended.endedAt ?? 0) >= requestedAt) continue;
      const { duplicate } = target.submit(
        { nid: item.nid, rid: item.rid ?? null, type: item.type ?? null, vid: item.vid ?? null, changed: item.changed ?? null, source: 'reconcile', confirmedAt: requestedAt },
        requestedAt,
      );
      if (!duplicate) report.queued.push(item.nid);
    } else if (item.status === AegirStatus.processing) {
      processingInAegir.add(item.nid);
      const active = registry.active(item.nid);
      if (active && active.state !== 'queued') continue;
      // A task that ended here after the listing was taken was still ours when Aegir listed it.
      const ended = registry.ended(item.nid);
      if (ended && (ended.endedAt ?? 0) >= requestedAt) continue;
      if (!registry.orphans.has(item.nid)) {
        registry.orphans.set(item.nid, {
          nid: item.nid,
          rid: item.rid ?? null,
          type: item.type ?? null,
          vid: item.vid ?? null,
          since: requestedAt,
          reason: 'Aegir shows it processing and no child of this service runs it',
        });
        log.warn({ nid: item.nid, rid: item.rid }, 'orphaned task: Aegir shows it processing with no child here');
      }
      report.orphans.push(item.nid);
    }
  }
  for (const nid of [...registry.orphans.keys()]) if (!processingInAegir.has(nid)) registry.orphans.delete(nid);
  for (const task of [...registry.activeTasks()]) {
    if (task.state !== 'queued' || queuedInAegir.has(task.nid) || task.receivedAt >= requestedAt) continue;
    if ((task.confirmedAt ?? 0) >= requestedAt) continue;
    target.dropQueued(task, 'Aegir no longer has it queued');
    report.cancelled.push(task.nid);
  }
  return report;
}

/** Ended tasks whose Aegir outcome could not be read; a reconcile looks them up again. */
export function unconfirmedOutcomes(registry: TaskRegistry, limit = 50, skip: (task: Task) => boolean = () => false): Task[] {
  const out: Task[] = [];
  for (const t of registry.endedOldestFirst()) {
    if (out.length >= limit) break;
    if (t.outcomeConfirmed === false && !skip(t)) out.push(t);
  }
  return out;
}

/** Takes Aegir's word for an ended task whose outcome was unconfirmed, unless the nid has moved on since it was asked. */
export function correctOutcome(registry: TaskRegistry, log: Logger, task: Task, aegir: AegirTask | null): void {
  const { nid } = task;
  if (registry.ended(nid) !== task || task.outcomeConfirmed !== false) return;
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
    log.info({ nid, from: task.state, to: state }, 'outcome corrected from Aegir');
    task.state = state;
  }
}

/**
 * Makes the service converge on Aegir's own queue: webhooks get lost (restarts, network blips,
 * tasks created by code that bypasses the module's hooks), Aegir's database does not.
 */
export class Reconciler {
  /** Failed outcome look-ups per ended task, by identity: a nid queued again starts afresh. */
  readonly #failedLookups = new WeakMap<Task, number>();
  #timer: NodeJS.Timeout | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  #stopped = false;
  lastSuccessAt: number | null = null;
  lastError: string | null = null;
  consecutiveFailures = 0;

  constructor(private readonly options: ReconcilerOptions) {}

  /** Reconciles now and then every interval; a failure is retried after 1, 2, 4… seconds, capped at the interval. */
  start(): void {
    this.#stopped = false;
    void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Ready means a good reconcile within the last three intervals. */
  isFresh(now = Date.now()): boolean {
    return this.lastSuccessAt !== null && now - this.lastSuccessAt <= 3 * this.options.intervalMs;
  }

  /** Runs one reconciliation after any that is under way, and answers with what it found and did. */
  runOnce(): Promise<ReconcileAnswer> {
    const run = this.#chain.then(() => this.#reconcile());
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    let delay = this.options.intervalMs;
    try {
      await this.runOnce();
    } catch {
      delay = Math.min(1000 * 2 ** (this.consecutiveFailures - 1), this.options.intervalMs);
    }
    if (this.#stopped) return;
    // Jitter keeps several services (or a restart storm) from hitting the frontend in step.
    const jitter = delay === this.options.intervalMs ? Math.random() * 0.1 * delay : 0;
    this.#timer = setTimeout(() => void this.#tick(), delay + jitter);
  }

  async #reconcile(): Promise<ReconcileAnswer> {
    const { frontend, scheduler, metrics, log } = this.options;
    const requestedAt = Date.now();
    let full: QueueListing;
    try {
      full = await readQueueListing(frontend);
    } catch (error) {
      this.consecutiveFailures += 1;
      this.lastError = (error as Error).message;
      metrics.reconcileRuns.inc({ result: 'error' });
      countFrontendError(metrics, 'reconcile', error);
      log.warn({ err: this.lastError, failures: this.consecutiveFailures }, 'reconcile failed');
      this.#tell((o) => o.unavailable(this.lastError!));
      throw error;
    }
    const listing = full.tasks;
    const report = scheduler.reconcile(listing, requestedAt);
    this.#tell((o) => o.listed(full, requestedAt));
    // The listing is applied: this reconcile succeeded, whatever the corrections below meet.
    this.lastSuccessAt = Date.now();
    this.lastError = null;
    this.consecutiveFailures = 0;
    metrics.reconcileRuns.inc({ result: 'ok' });
    const corrected = await this.#correctOutcomes(new Set(listing.map((t) => t.nid)));
    await this.options.afterApply?.().catch((error: unknown) => log.error({ err: (error as Error).message }, 'the orphan sweep failed'));
    if (report.queued.length + report.cancelled.length + corrected.length > 0) {
      log.info({ queued: report.queued, cancelled: report.cancelled, corrected, orphans: report.orphans }, 'reconciled with Aegir');
    }
    return { ...report, corrected };
  }

  /** An observer's fault is its own: it never fails the reconcile. */
  #tell(call: (observer: ListingObserver) => void): void {
    for (const observer of this.options.observers ?? []) {
      try {
        call(observer);
      } catch (error) {
        this.options.log.error({ err: (error as Error).message }, 'a queue listing observer failed');
      }
    }
  }

  /**
   * Looks up, one nid at a time, the ended tasks whose outcome could not be read. A nid Aegir still
   * lists as queued or processing has no final status to read yet; one whose look-up failed
   * MAX_OUTCOME_LOOKUPS times is given up (it stays unconfirmed). A failure is counted, never fatal.
   */
  async #correctOutcomes(listed: Set<number>): Promise<number[]> {
    const { frontend, scheduler, metrics, log } = this.options;
    const corrected: number[] = [];
    const pending = scheduler.unconfirmedOutcomes(50, (task) => listed.has(task.nid) || (this.#failedLookups.get(task) ?? 0) >= MAX_OUTCOME_LOOKUPS);
    for (const task of pending) {
      try {
        scheduler.correctOutcome(task, await frontend.getTask(task.nid));
        corrected.push(task.nid);
      } catch (error) {
        const failures = (this.#failedLookups.get(task) ?? 0) + 1;
        this.#failedLookups.set(task, failures);
        countFrontendError(metrics, 'outcome', error);
        log.warn({ nid: task.nid, failures, err: (error as Error).message }, failures >= MAX_OUTCOME_LOOKUPS ? 'gave up reading the outcome from Aegir' : 'could not read the outcome from Aegir');
      }
    }
    return corrected;
  }
}
