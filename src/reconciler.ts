import type { Frontend } from './frontend.js';
import { FrontendError } from './frontend.js';
import type { Metrics } from './metrics.js';
import type { Logger, ReconcileReport, Scheduler } from './scheduler.js';

export interface ReconcileAnswer extends ReconcileReport {
  corrected: number[];
}

export interface ReconcilerOptions {
  frontend: Frontend;
  scheduler: Scheduler;
  metrics: Metrics;
  log: Logger;
  intervalMs: number;
}

/**
 * Makes the service converge on Aegir's own queue: webhooks get lost (restarts, network blips,
 * tasks created by code that bypasses the module's hooks), Aegir's database does not.
 */
export class Reconciler {
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
    try {
      const listing = await frontend.listQueue();
      const report = scheduler.reconcile(listing, requestedAt);
      const corrected: number[] = [];
      for (const nid of scheduler.unconfirmedOutcomes()) {
        scheduler.correctOutcome(nid, await frontend.getTask(nid));
        corrected.push(nid);
      }
      this.lastSuccessAt = Date.now();
      this.lastError = null;
      this.consecutiveFailures = 0;
      metrics.reconcileRuns.inc({ result: 'ok' });
      if (report.queued.length + report.cancelled.length + corrected.length > 0) {
        log.info({ queued: report.queued, cancelled: report.cancelled, corrected, orphans: report.orphans }, 'reconciled with Aegir');
      }
      return { ...report, corrected };
    } catch (error) {
      this.consecutiveFailures += 1;
      this.lastError = (error as Error).message;
      metrics.reconcileRuns.inc({ result: 'error' });
      metrics.frontendErrors.inc({ operation: 'reconcile', kind: error instanceof FrontendError ? error.kind : 'unexpected' });
      log.warn({ err: this.lastError, failures: this.consecutiveFailures }, 'reconcile failed');
      throw error;
    }
  }
}
