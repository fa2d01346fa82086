import fs from 'node:fs';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';

type Callback<T = void> = (error: Error | null, value?: T) => void;

interface Saved<T> {
  queue: Array<[string, T]>;
  running: Record<string, Record<string, T>>;
}

/**
 * A better-queue store that keeps the outbox in memory and rewrites one small JSON file atomically
 * on every change, so that a write-back to Aegir queued or in flight survives a restart (in flight
 * ones are processed again: the module's finish endpoint is idempotent). Without a file it is a
 * memory store.
 */
export class FileStore<T> {
  readonly #file: string | null;
  #queue = new Map<string, T>();
  #running: Record<string, Record<string, T>> = {};
  #nextLock = 1;
  #frozen = false;

  constructor(file: string | null) {
    this.#file = file;
  }

  connect(cb: Callback<number>): void {
    if (this.#file) {
      try {
        const saved = JSON.parse(fs.readFileSync(this.#file, 'utf8')) as Saved<T>;
        this.#queue = new Map(saved.queue);
        this.#running = saved.running;
        this.#nextLock = 1 + Math.max(0, ...Object.keys(saved.running).map(Number));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return cb(error as Error);
      }
      fs.mkdirSync(path.dirname(this.#file), { recursive: true, mode: 0o700 });
    }
    cb(null, this.#queue.size);
  }

  getTask(taskId: string, cb: Callback<T>): void {
    cb(null, this.#queue.get(taskId));
  }

  putTask(taskId: string, task: T, _priority: number | undefined, cb: Callback): void {
    this.#queue.set(taskId, task);
    this.#save(cb);
  }

  deleteTask(taskId: string, cb: Callback): void {
    this.#queue.delete(taskId);
    this.#save(cb);
  }

  takeFirstN(n: number, cb: Callback<string>): void {
    const lockId = String(this.#nextLock++);
    const taken: Record<string, T> = {};
    for (const [taskId, task] of [...this.#queue].slice(0, n)) {
      taken[taskId] = task;
      this.#queue.delete(taskId);
    }
    if (Object.keys(taken).length > 0) this.#running[lockId] = taken;
    this.#save((error) => cb(error, lockId));
  }

  takeLastN(n: number, cb: Callback<string>): void {
    this.takeFirstN(n, cb);
  }

  getLock(lockId: string, cb: Callback<Record<string, T> | undefined>): void {
    cb(null, this.#running[lockId]);
  }

  getRunningTasks(cb: Callback<Record<string, Record<string, T>>>): void {
    cb(null, this.#running);
  }

  releaseLock(lockId: string, cb: Callback): void {
    delete this.#running[lockId];
    this.#save(cb);
  }

  /** From now on nothing is written: what the file holds is what the next start delivers. */
  freeze(): void {
    this.#frozen = true;
  }

  /** How many wait to be taken, not counting those in flight. */
  waiting(): number {
    return this.#queue.size;
  }

  /** Everything waiting or in flight, for the API. */
  all(): T[] {
    return [...this.#queue.values(), ...Object.values(this.#running).flatMap((batch) => Object.values(batch))];
  }

  #save(cb: Callback): void {
    if (!this.#file || this.#frozen) return cb(null);
    try {
      const saved: Saved<T> = { queue: [...this.#queue], running: this.#running };
      writeFileAtomic.sync(this.#file, JSON.stringify(saved), { mode: 0o600 });
      cb(null);
    } catch (error) {
      cb(error as Error);
    }
  }
}
