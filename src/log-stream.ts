import fs from 'node:fs/promises';
import { Readable } from 'node:stream';

const CHUNK = 64 * 1024;
const POLL_MS = 100;

export interface FollowOptions {
  /** True once the task has ended: the stream then sends what is left and ends. */
  ended: () => boolean;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

/** One client's follow of a log: its own position in the file, everything else shared through its Watch. */
export class LogFollow extends Readable {
  position = 0;
  #wanting = false;
  #reading = false;
  #finishing: string | null = null;
  /** The first look whose size counts once finishing (the one after finish() was called). */
  #finalLook = Infinity;

  constructor(private readonly watch: Watch) {
    super();
  }

  override _read(): void {
    this.#wanting = true;
    this.serve();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.watch.leave(this);
    callback(error);
  }

  /**
   * Ends the follow before the task ends (the app is closing): what the log holds now is still sent,
   * as fast as the client reads it, then `note`, then the end.
   */
  finish(note: string): void {
    if (this.destroyed || this.readableEnded || this.#finishing !== null) return;
    this.#finishing = note;
    // The size must come from a look that starts after this call: the next one.
    this.#finalLook = this.watch.looksStarted + 1;
    void this.watch.look();
  }

  /** Sends the next bytes the watch knows of, or the end once the task has ended (or the follow is finishing) and all was sent. */
  serve(): void {
    if (!this.#wanting || this.#reading || this.destroyed) return;
    const { size, endedAtLastLook } = this.watch;
    if (this.position < size) {
      this.#reading = true;
      this.#wanting = false;
      this.watch.chunkAt(this.position, size).then(
        (chunk) => {
          this.#reading = false;
          if (this.destroyed) return;
          this.position += chunk.length;
          if (chunk.length > 0) this.push(chunk);
          else this.#wanting = true;
        },
        (error: unknown) => {
          this.#reading = false;
          this.destroy(error as Error);
        },
      );
    } else if (this.#finishing !== null) {
      if (this.watch.sizeFromLook < this.#finalLook) return;
      this.#wanting = false;
      this.push(this.#finishing);
      this.push(null);
      this.watch.leave(this);
    } else if (endedAtLastLook) {
      this.#wanting = false;
      this.push(null);
    }
  }
}

/**
 * One followed file: a single poller (one stat every pollMs, only while someone follows) and a
 * single file handle, shared by every client that follows it. Chunks are read once per position
 * and handed to every follower at that position.
 */
class Watch {
  size = 0;
  endedAtLastLook = false;
  /** Looks started so far, and which one gave `size`. */
  looksStarted = 0;
  sizeFromLook = 0;
  readonly followers = new Set<LogFollow>();
  #timer: NodeJS.Timeout | null = null;
  #looking = false;
  #lookAgain = false;
  #handle: Promise<fs.FileHandle> | null = null;
  #chunks = new Map<number, Promise<Buffer>>();
  #disposed = false;

  constructor(
    readonly file: string,
    readonly ended: () => boolean,
    private readonly pollMs: number,
    private readonly onEmpty: (watch: Watch) => void,
  ) {}

  join(follower: LogFollow): void {
    this.followers.add(follower);
    // A new follower gets what is there now, not one poll later.
    void this.look();
  }

  leave(follower: LogFollow): void {
    if (!this.followers.delete(follower) || this.followers.size > 0) return;
    this.dispose();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#chunks.clear();
    // An open still in flight is closed once it lands: a client that left during it costs no descriptor.
    void this.#handle?.then((handle) => handle.close()).catch(() => undefined);
    this.#handle = null;
    this.onEmpty(this);
  }

  /** The bytes from `position`, at most CHUNK and at most up to `size`; one read whoever asks. */
  chunkAt(position: number, size: number): Promise<Buffer> {
    // A lone follower has nobody to share a chunk with: keeping it would only keep it alive.
    if (this.followers.size === 1) return this.#read(position, Math.min(CHUNK, size - position));
    let chunk = this.#chunks.get(position);
    if (!chunk) {
      chunk = this.#read(position, Math.min(CHUNK, size - position));
      this.#chunks.set(position, chunk);
      // Followers at one position ask within a poll; older chunks are not needed again.
      if (this.#chunks.size > 8) this.#chunks.delete(this.#chunks.keys().next().value!);
    }
    return chunk;
  }

  async #read(position: number, length: number): Promise<Buffer> {
    if (this.#disposed) return Buffer.alloc(0);
    this.#handle ??= fs.open(this.file, 'r');
    const handle = await this.#handle;
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  }

  async look(): Promise<void> {
    if (this.#disposed) return;
    if (this.#looking) {
      this.#lookAgain = true;
      return;
    }
    this.#looking = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    try {
      this.looksStarted += 1;
      const look = this.looksStarted;
      // Read before the size: a task that had ended before the stat has written all it will write.
      const ended = this.ended();
      const size = await sizeOf(this.file);
      if (this.#disposed) return;
      if (size !== this.size) this.#chunks.clear();
      this.size = size;
      this.sizeFromLook = look;
      this.endedAtLastLook = ended;
      for (const follower of this.followers) follower.serve();
    } catch (error) {
      for (const follower of [...this.followers]) follower.destroy(error as Error);
    } finally {
      this.#looking = false;
    }
    if (this.#disposed) return;
    if (this.#lookAgain) {
      this.#lookAgain = false;
      void this.look();
      return;
    }
    this.#timer = setTimeout(() => void this.look(), this.pollMs);
  }
}

/**
 * Streams task logs as they grow, to any number of clients, with one poller and one file handle
 * per followed file whatever the number of clients. A follow reads only while its client reads (a
 * pull stream), ends once the task has ended and everything written was sent, and a client that
 * goes away costs nothing from then on.
 */
export class LogFollowers {
  readonly #watches = new Map<string, Watch>();
  readonly #pollMs: number;

  constructor(options: { pollMs?: number } = {}) {
    this.#pollMs = options.pollMs ?? POLL_MS;
  }

  /** Files being watched now (one poller each). */
  get watchedFiles(): number {
    return this.#watches.size;
  }

  follow(file: string, options: FollowOptions): LogFollow {
    let watch = this.#watches.get(file);
    if (!watch) {
      watch = new Watch(file, options.ended, this.#pollMs, (w) => {
        if (this.#watches.get(w.file) === w) this.#watches.delete(w.file);
      });
      this.#watches.set(file, watch);
    }
    const follow = new LogFollow(watch);
    watch.join(follow);
    return follow;
  }

  /** Stops every poller; the app is closing and its follows were ended already. */
  close(): void {
    for (const watch of [...this.#watches.values()]) {
      for (const follower of [...watch.followers]) follower.destroy();
      watch.dispose();
    }
  }
}

/** A single follow with a poller of its own, for callers outside the app (tests, tools). */
export function followLog(file: string, options: FollowOptions & { pollMs?: number }): LogFollow {
  return new LogFollowers(options.pollMs === undefined ? {} : { pollMs: options.pollMs }).follow(file, options);
}
