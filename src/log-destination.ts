import { writeSync } from 'node:fs';
import pino from 'pino';

/** How long a log line may wait to be written together with the lines that follow it. */
export const LOG_BATCH_MS = 50;
/** Past this much waiting output it is written at once. */
const LOG_BATCH_BYTES = 16 * 1024;

const open = new Set<BatchedLogDestination>();
let flushOnExit = false;

/**
 * Where the service's own log goes: standard output, written asynchronously (a slow journald must
 * never stall intake) and in batches. Each asynchronous write costs a hop through libuv's thread pool,
 * and under a burst of webhooks one write per access-log line cost several per cent of intake
 * throughput. Lines now wait at most LOG_BATCH_MS, or until LOG_BATCH_BYTES have gathered, and are
 * written together; an idle service arms no timer. When the app closes, what waits and every later
 * line go to the writer at once, in order; on exit, what still waits is written synchronously.
 */
export class BatchedLogDestination {
  readonly #fd: number;
  readonly #out: ReturnType<typeof pino.destination>;
  #pending: string[] = [];
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(fd = 1) {
    this.#fd = fd;
    this.#out = pino.destination({ dest: fd, sync: false });
    open.add(this);
    if (!flushOnExit) {
      flushOnExit = true;
      process.once('exit', () => {
        for (const destination of open) destination.flushSync();
      });
    }
  }

  write(line: string): boolean {
    if (this.#closed) return this.#out.write(line);
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    if (this.#pendingBytes >= LOG_BATCH_BYTES) this.#writeBatch();
    else this.#timer ??= setTimeout(() => this.#writeBatch(), LOG_BATCH_MS).unref();
    return true;
  }

  #takeBatch(): string | null {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#pending.length === 0) return null;
    const batch = this.#pending.join('');
    this.#pending = [];
    this.#pendingBytes = 0;
    return batch;
  }

  #writeBatch(): void {
    const batch = this.#takeBatch();
    if (batch !== null) this.#out.write(batch);
  }

  /** Writes everything now, blocking: only for exit, where no later turn of the event loop comes. */
  flushSync(): void {
    try {
      this.#out.flushSync();
    } catch {
      // The destination is not open yet or already closed; what waits here is still written below.
    }
    const batch = this.#takeBatch();
    if (batch !== null) writeAllSync(this.#fd, batch);
  }

  /** Hands what waits to the writer, and every later line at once: the last lines of a stopping service keep their order. */
  close(): void {
    this.#writeBatch();
    this.#closed = true;
    open.delete(this);
  }
}

/** Standard output may be a non-blocking pipe: a short write is resumed, and a full pipe waited on for up to a second. */
export function writeAllSync(fd: number, text: string): void {
  let rest = Buffer.from(text);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let waits = 0; rest.length > 0 && waits < 1000; ) {
    try {
      rest = rest.subarray(writeSync(fd, rest));
    } catch (error) {
      // Anything but a full pipe means there is nowhere left to write to.
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      waits += 1;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
