import fs from 'node:fs/promises';
import { z } from 'zod';
import { pidFilePath, readPidFile, runFilePath } from './runner.js';
import type { Logger, Scheduler } from './scheduler.js';

const runRecordSchema = z.object({
  nid: z.number().int().positive(),
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
 * Removes the run files of an adopted child once it has ended, as startRun() does for its own runs:
 * left behind, they would be read again at the next start-up. Only while <nid>.pid still names that
 * child, so the files of a newer attempt of the same nid are never taken.
 */
export async function removeAdoptedRunFiles(logDir: string, nid: number, pid: number): Promise<boolean> {
  const pidFile = pidFilePath(logDir, nid);
  if ((await readPidFile(pidFile))?.pid !== pid) return false;
  await Promise.all([fs.rm(pidFile, { force: true }), fs.rm(runFilePath(logDir, nid), { force: true })]);
  return true;
}

/**
 * Children outlive the service (a restart must never kill a running drush). At start-up every
 * <nid>.pid left behind is read with its <nid>.run.json: a live child is adopted, a dead one's
 * files are removed.
 */
export async function adoptSurvivingChildren(logDir: string, scheduler: Scheduler, log: Logger): Promise<number[]> {
  const adopted: number[] = [];
  const names = (await fs.readdir(logDir)).filter((name) => /^\d+\.pid$/.test(name));
  for (const name of names) {
    const nid = Number(name.slice(0, -'.pid'.length));
    const pidFile = pidFilePath(logDir, nid);
    const runFile = runFilePath(logDir, nid);
    const running = await readPidFile(pidFile);
    let record;
    try {
      record = runRecordSchema.parse(JSON.parse(await fs.readFile(runFile, 'utf8')));
    } catch (error) {
      record = null;
      log.warn({ nid, err: (error as Error).message }, 'no readable run record beside the pid file; adopting with what the pid file says');
    }
    if (running && (await scheduler.adopt({ ...(record ?? { startedAt: Date.now() }), nid, pid: running.pid, processStart: running.processStart }))) {
      adopted.push(nid);
    } else {
      await Promise.all([fs.rm(pidFile, { force: true }), fs.rm(runFile, { force: true })]);
    }
  }
  return adopted;
}
