import path from 'node:path';
import Queue from 'better-queue';
import type { FinishAnswer, Frontend } from './frontend.js';
import { countFrontendError, type Metrics } from './metrics.js';
import { FileStore } from './outbox-store.js';
import type { Logger, WriteBackCause } from './task.js';

export const OUTBOX_FILE = 'outbox.json';

export type { WriteBackCause } from './task.js';

export interface WriteBack {
  id: string;
  nid: number;
  /** The processing revision to finish: Aegir refuses any other. */
  vid: number;
  reason: string;
  cause: WriteBackCause;
  queuedAt: number;
}

export interface OutboxOptions {
  frontend: Frontend;
  /** Where the outbox is kept over a restart; null keeps it in memory. */
  stateDir: string | null;
  metrics: Metrics;
  log: Logger;
  /** Called with Aegir's answer once a write-back is done (finished, not processing, or gone). */
  onDone(writeBack: WriteBack, answer: FinishAnswer): void;
  /** Backoff while the frontend fails: 1, 2, 4… seconds up to this. */
  maxBackoffMs?: number;
}

/**
 * The write-backs to Aegir, in better-queue: one waiting per nid (a newer revision replaces an older
 * one), one delivered at a time, kept in TASKD_STATE_DIR by the store so that none is lost over a
 * restart (one in flight is delivered again: the module's finish is idempotent per revision).
 * Wrapped for its known defects:
 * - its own retry puts a failed task back from a timer after the task's lock is released, so a crash
 *   in between would lose it: a delivery is retried in place instead, with backoff, under the lock
 *   the store keeps on disk, and a precondition holds the queue while the frontend is known down;
 * - the process function never throws (an async throw would leave its ticket pending);
 * - maxRetries counts attempts and maxTimeout does not stop the work: neither is used;
 * - merge by id ignores a task in flight: a twin pushed meanwhile is delivered after it, harmlessly;
 * - its length counts the batch in flight until that batch ends: what waits is read from the store.
 * A delivery that fails while others wait goes to the back instead of retrying in place, so one
 * finish Aegir keeps refusing does not hold every other task processing in Aegir behind it.
 */
export class WriteBackOutbox {
  readonly #options: OutboxOptions;
  readonly #queue: Queue<WriteBack>;
  readonly #store: FileStore<WriteBack>;
  readonly #maxBackoffMs: number;
  #failures = 0;
  #holdUntil = 0;
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(options: OutboxOptions) {
    this.#options = options;
    this.#maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.#store = new FileStore<WriteBack>(options.stateDir === null ? null : path.join(options.stateDir, OUTBOX_FILE));
    this.#queue = new Queue<WriteBack>({
      process: (writeBack, cb) => {
        this.#deliver(writeBack).then(
          () => cb(null),
          (error: unknown) => cb(error as Error),
        );
      },
      id: 'id',
      // One write-back per nid: the newer revision wins; for the same revision the first reason stands.
      merge: (older, newer, cb) => cb(null, newer.vid > older.vid ? newer : older),
      precondition: (cb) => cb(null, !this.#closed && Date.now() >= this.#holdUntil),
      preconditionRetryTimeout: 250,
      concurrent: 1,
      store: this.#store,
    });
    this.#queue.on('error', (error) => options.log.error({ err: error.message }, 'the write-back outbox failed'));
  }

  /** Queues a finish of a task in Aegir; returns at once. */
  push(writeBack: Omit<WriteBack, 'id' | 'queuedAt'>): void {
    const entry: WriteBack = { ...writeBack, id: String(writeBack.nid), queuedAt: Date.now() };
    this.#options.log.warn({ nid: entry.nid, vid: entry.vid, cause: entry.cause, reason: entry.reason }, 'finishing the task in Aegir');
    this.#queue.push(entry);
  }

  /** Write-backs waiting or in flight. */
  pending(): WriteBack[] {
    return this.#store.all();
  }

  /** Stops delivering; what waits or is in flight stays in the store for the next start. */
  close(): void {
    this.#closed = true;
    this.#store.freeze();
    this.#wake?.();
    this.#queue.destroy();
  }

  /**
   * Puts a copy at the back and resolves once the store holds it, before this delivery lets go of
   * its lock: a crash in between keeps both, and the second finish of a revision changes nothing.
   */
  #requeue(writeBack: WriteBack): Promise<boolean> {
    return new Promise((resolve) => {
      this.#queue
        .push(writeBack)
        .on('queued', () => resolve(true))
        .on('failed', (reason) => {
          this.#options.log.error({ nid: writeBack.nid, reason }, 'the outbox could not put a write-back at its back; retrying it in place');
          resolve(false);
        });
    });
  }

  async #deliver(writeBack: WriteBack): Promise<void> {
    const { frontend, metrics, log, onDone } = this.#options;
    for (;;) {
      if (this.#closed) throw new Error('the outbox closed; the write-back stays in its store');
      let answer: FinishAnswer;
      try {
        if (!frontend.finishTask) throw new Error('this frontend cannot finish tasks');
        answer = await frontend.finishTask(writeBack.nid, writeBack.vid, writeBack.reason);
      } catch (error) {
        this.#failures += 1;
        const delay = Math.min(1000 * 2 ** (this.#failures - 1), this.#maxBackoffMs);
        this.#holdUntil = Date.now() + delay;
        metrics.writeBacks.inc({ cause: writeBack.cause, result: 'retry' });
        countFrontendError(metrics, 'finish', error);
        log.warn({ nid: writeBack.nid, err: (error as Error).message, retryInMs: delay }, 'could not finish the task in Aegir; retrying');
        // Others waiting are asked of the store: better-queue's length counts this one in flight too,
        // so alone it would rotate behind itself. A copy the store could not take stays in place.
        if (this.#store.waiting() > 0 && (await this.#requeue(writeBack))) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = null;
        continue;
      }
      this.#failures = 0;
      this.#holdUntil = 0;
      metrics.writeBacks.inc({ cause: writeBack.cause, result: answer.kind });
      log.info({ nid: writeBack.nid, vid: writeBack.vid, cause: writeBack.cause, answer }, answer.kind === 'finished' ? 'finished the task in Aegir' : 'Aegir had nothing to finish');
      onDone(writeBack, answer);
      return;
    }
  }
}
