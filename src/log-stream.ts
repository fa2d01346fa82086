import fs from 'node:fs/promises';
import { Readable } from 'node:stream';

const CHUNK = 64 * 1024;
const POLL_MS = 100;

export interface FollowOptions {
  /** True once the task has ended: the stream then sends what is left and ends. */
  ended: () => boolean;
  pollMs?: number;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

/**
 * Streams a task's log file as it grows, and ends once the task has ended and everything written
 * was sent. It reads only while the client reads (a pull stream), and a client that goes away
 * destroys it, which stops the polling at once: a dropped follower costs nothing.
 */
export function followLog(file: string, options: FollowOptions): Readable {
  let position = 0;
  let handle: fs.FileHandle | null = null;
  const pollMs = options.pollMs ?? POLL_MS;
  let timer: NodeJS.Timeout | null = null;
  const stream = new Readable({
    async read() {
      try {
        for (;;) {
          const size = await sizeOf(file);
          if (size > position) {
            handle ??= await fs.open(file, 'r');
            const buffer = Buffer.alloc(Math.min(CHUNK, size - position));
            const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
            position += bytesRead;
            this.push(buffer.subarray(0, bytesRead));
            return;
          }
          // Checked after the size: a task that ended has written all it will write.
          if (options.ended()) {
            if ((await sizeOf(file)) > position) continue;
            this.push(null);
            return;
          }
          await new Promise<void>((resolve) => {
            timer = setTimeout(resolve, pollMs);
          });
          if (this.destroyed) return;
        }
      } catch (error) {
        this.destroy(error as Error);
      }
    },
    destroy(error, callback) {
      if (timer) clearTimeout(timer);
      const closing = handle?.close();
      handle = null;
      void Promise.resolve(closing).finally(() => callback(error));
    },
  });
  return stream;
}
