import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from './task.js';

const DAY = 86_400_000;

/**
 * Removes the output of tasks that ended long ago: one file per nid, appended by every attempt, would
 * otherwise fill the disk of a busy hostmaster over the years. A log still being written is never old.
 */
export async function pruneOldLogs(logDir: string, maxAgeMs: number, isActive: (nid: number) => boolean, now = Date.now()): Promise<number[]> {
  const removed: number[] = [];
  for (const name of await fs.readdir(logDir)) {
    const match = /^(\d+)\.log$/.exec(name);
    if (!match) continue;
    const nid = Number(match[1]);
    if (isActive(nid)) continue;
    const file = path.join(logDir, name);
    try {
      if ((await fs.stat(file)).mtimeMs < now - maxAgeMs) {
        await fs.rm(file, { force: true });
        removed.push(nid);
      }
    } catch {
      /* gone meanwhile */
    }
  }
  return removed;
}

/** Prunes now and then once a day; returns the function that stops it. */
export function scheduleLogPruning(logDir: string, maxAgeMs: number, isActive: (nid: number) => boolean, log: Logger): () => void {
  if (maxAgeMs <= 0) return () => undefined;
  const run = () =>
    pruneOldLogs(logDir, maxAgeMs, isActive).then(
      (removed) => removed.length > 0 && log.info({ removed: removed.length, olderThanDays: maxAgeMs / DAY }, 'removed old task logs'),
      (error: unknown) => log.warn({ err: (error as Error).message }, 'could not prune old task logs'),
    );
  void run();
  const timer = setInterval(run, DAY);
  timer.unref();
  return () => clearInterval(timer);
}
