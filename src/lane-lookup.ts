import { AegirStatus, type Frontend } from './frontend.js';
import { countFrontendError, type Metrics } from './metrics.js';
import type { Task } from './task.js';

export const LANE_UNKNOWN_MESSAGE = 'waiting for the frontend to tell its rid';

export interface LaneLookupOptions {
  frontend: Frontend;
  metrics: Metrics;
  /** Aegir has the task queued under this rid (null: under none, so it gets a lane of its own). */
  found(task: Task, rid: number | null): void;
  /** Aegir no longer has the task queued: it is dropped with this reason. */
  gone(task: Task, reason: string): void;
  /** A timer the scheduler owns and clears when it closes. */
  later(ms: number, fn: () => void): void;
}

/**
 * Tasks that came without a rid (an operator's submit by nid alone) and so have no lane yet: each
 * waits here while the frontend is asked for its row, with backoff while the frontend fails. Held
 * by identity, so a look-up for a task that was replaced or dropped meanwhile finds nothing to do.
 */
export class LaneLookups {
  readonly #options: LaneLookupOptions;
  readonly #waiting = new Set<Task>();

  constructor(options: LaneLookupOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#waiting.size;
  }

  has(task: Task): boolean {
    return this.#waiting.has(task);
  }

  start(task: Task): void {
    task.message = LANE_UNKNOWN_MESSAGE;
    this.#waiting.add(task);
    void this.#lookUp(task, 0);
  }

  /** Stops looking for this task's lane (it was learned elsewhere, or the task is gone); answers whether it was waiting. */
  stop(task: Task): boolean {
    return this.#waiting.delete(task);
  }

  async #lookUp(task: Task, failures: number): Promise<void> {
    const { frontend, metrics, found, gone, later } = this.#options;
    if (!this.#waiting.has(task)) return;
    try {
      const aegir = await frontend.getTask(task.nid);
      if (!this.#waiting.has(task)) return;
      if (aegir === null || aegir.status !== AegirStatus.queued) {
        this.#waiting.delete(task);
        gone(task, aegir === null ? 'Aegir has no such task' : `Aegir no longer has it queued (status ${aegir.status})`);
        return;
      }
      task.confirmedAt = Date.now();
      if (aegir.changed != null && task.changed === null) {
        task.changed = aegir.changed;
        task.orderKey = aegir.changed;
      }
      task.vid ??= aegir.vid ?? null;
      task.type ??= aegir.type ?? null;
      this.#waiting.delete(task);
      task.message = null;
      found(task, aegir.rid || null);
    } catch (error) {
      countFrontendError(metrics, 'lane_lookup', error);
      const delay = Math.min(1000 * 2 ** failures, 60_000);
      task.message = `${LANE_UNKNOWN_MESSAGE} (${(error as Error).message}); retrying in ${delay / 1000}s`;
      later(delay, () => void this.#lookUp(task, failures + 1));
    }
  }
}
