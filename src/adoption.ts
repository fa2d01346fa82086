import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Logger, Scheduler } from './scheduler.js';

const pidRecordSchema = z.object({
  nid: z.number().int().positive(),
  pid: z.number().int().positive(),
  processStart: z.string().nullable(),
  startedAt: z.number(),
  rid: z.number().int().nullable().optional(),
  lane: z.string().nullable().optional(),
  type: z.string().nullable().optional(),
  vid: z.number().int().nullable().optional(),
  changed: z.number().int().nullable().optional(),
  receivedAt: z.number().optional(),
  attempts: z.number().int().optional(),
});

/**
 * Children outlive the service (a restart must never kill a running drush). At start-up every
 * <nid>.pid left behind is read: a live child is adopted, a dead one's file is removed.
 */
export async function adoptSurvivingChildren(logDir: string, scheduler: Scheduler, log: Logger): Promise<number[]> {
  const adopted: number[] = [];
  const names = (await fs.readdir(logDir)).filter((name) => /^\d+\.pid$/.test(name));
  for (const name of names) {
    const file = path.join(logDir, name);
    let record;
    try {
      record = pidRecordSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')));
    } catch (error) {
      log.warn({ file, err: (error as Error).message }, 'ignoring an unreadable pid file');
      continue;
    }
    if (await scheduler.adopt(record)) adopted.push(record.nid);
    else await fs.rm(file, { force: true });
  }
  return adopted;
}
