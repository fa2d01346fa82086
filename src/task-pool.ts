import BetterQueue from 'better-queue';

interface PoolJob {
  id: string;
  work: () => Promise<void>;
}

/**
 * The worker pool: better-queue caps how many attempts run at once. The scheduler decides what
 * runs and when; better-queue only ever sees jobs that are due now, under ids made here.
 *
 * Its known defects are kept out of reach rather than relied on: its maxTimeout does not stop the
 * work (the runner owns timeouts), maxRetries counts attempts (the scheduler owns retries),
 * merging by id ignores running tasks (ids are never reused, the scheduler dedupes by nid), an
 * async process function that throws leaves the ticket pending forever (ours never throws and
 * always calls back), and its typings name events wrongly (no events are used).
 */
export class TaskPool {
  readonly #queue: BetterQueue<PoolJob>;
  #sequence = 0;

  constructor(concurrency: number) {
    this.#queue = new BetterQueue<PoolJob>(
      (job: PoolJob, done: (error?: unknown) => void) => {
        job.work().then(
          () => done(),
          // work() never rejects (run() settles the caller's promise itself); this only keeps better-queue moving if it ever did.
          (error: unknown) => done(error),
        );
      },
      { concurrent: concurrency, maxRetries: 0, afterProcessDelay: 0 },
    );
  }

  /** Runs work as soon as a slot is free and settles with its result. */
  run<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#sequence += 1;
      const job: PoolJob = {
        id: `job-${this.#sequence}`,
        work: async () => {
          try {
            resolve(await work());
          } catch (error) {
            reject(error);
          }
        },
      };
      this.#queue.push(job);
    });
  }

  destroy(): Promise<void> {
    return new Promise((resolve) => this.#queue.destroy(() => resolve()));
  }
}
