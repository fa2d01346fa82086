import fs from 'node:fs/promises';
import { z } from 'zod';
import { readOutcome, type AttemptVerdict } from './attempt.js';
import type { Frontend } from './frontend.js';
import type { Metrics } from './metrics.js';
import { isRunning, pidFilePath, readPidFile, readProcessStartTime, runFilePath } from './runner.js';
import { newTask, type EndState, type Logger, type Task } from './task.js';
import type { TaskRegistry } from './task-registry.js';

export interface AdoptionRecord {
  nid: number;
  pid: number;
  processStart: string | null;
  startedAt: number;
  rid?: number | null;
  lane?: string | null;
  type?: string | null;
  vid?: number | null;
  changed?: number | null;
  receivedAt?: number;
  attempts?: number;
}

/** What adopting a child asks of the scheduler. */
export interface AdoptionTarget {
  registry: TaskRegistry;
  frontend: Frontend | undefined;
  metrics: Metrics;
  log: Logger;
  pollMs: number;
  /** Shows a task as running and holding its lane, with no attempt of ours behind it. */
  holdRunning(task: Task): void;
  finish(task: Task, verdict: Extract<AttemptVerdict, { kind: 'end' }>): void;
  /** Calls tick every ms until cancelled (or until the scheduler closes); cancel answers false once it was cancelled. */
  repeat(ms: number, tick: () => void): { cancel(): boolean };
}

/** What the scheduler's adopt() accepts; the scheduler itself is one. */
export interface Adopter {
  adopt(record: AdoptionRecord): Promise<boolean>;
}

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
 * Children outlive the service (a restart must never kill a running drush). At start-up every
 * <nid>.pid left behind is read with its <nid>.run.json: a live child is adopted, a dead one's
 * files are removed.
 */
export async function adoptSurvivingChildren(logDir: string, scheduler: Adopter, log: Logger): Promise<number[]> {
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

/**
 * Takes back a child that a previous run of the service started and that is still alive:
 * it shows as running, holds its lane and a concurrency slot, and its outcome is read when it ends.
 */
export async function adoptChild(target: AdoptionTarget, record: AdoptionRecord): Promise<boolean> {
  if (!(await isRunning(record.pid))) return false;
  if (record.processStart !== null && (await readProcessStartTime(record.pid)) !== record.processStart) return false;
  if (target.registry.active(record.nid)) return false;
  const task = newTask(
    {
      nid: record.nid,
      rid: record.rid ?? null,
      type: record.type ?? null,
      vid: record.vid ?? null,
      changed: record.changed ?? null,
      lane: record.lane ?? (record.rid != null ? `rid:${record.rid}` : `nid:${record.nid}`),
      state: 'running',
      source: 'adopted',
      receivedAt: record.receivedAt ?? record.startedAt,
      confirmedAt: null,
      startedAt: record.startedAt,
      attempts: record.attempts ?? 1,
      message: 're-adopted after a restart of the service',
      pid: record.pid,
    },
    Date.now(),
  );
  target.holdRunning(task);
  target.log.info({ nid: task.nid, pid: record.pid, lane: task.lane }, 're-adopted a running task');
  // Not our child, so there is no exit event to wait for: look every so often.
  const poll = target.repeat(target.pollMs, () => {
    void isRunning(record.pid).then((running) => {
      if (running || !poll.cancel()) return;
      void finishAdopted(target, task);
    });
  });
  return true;
}

async function finishAdopted(target: AdoptionTarget, task: Task): Promise<void> {
  const endedAt = Date.now();
  task.pid = null;
  let state: EndState = 'failed';
  let message = task.message;
  let orphan;
  if (target.frontend) {
    const outcome = await readOutcome(task, target.frontend, target.metrics);
    if (outcome.state !== null) {
      state = outcome.state === 'retry' ? 'failed' : outcome.state;
      task.outcomeConfirmed = true;
      orphan = outcome.orphan;
      if (outcome.state === 'retry') message = 'Aegir still shows it queued after the re-adopted run';
    } else {
      task.outcomeConfirmed = false;
      message = 'outcome unknown: the frontend could not be read; a later reconcile corrects it';
    }
  } else {
    task.outcomeConfirmed = false;
    message = 'outcome unknown: the service restarted while this ran, and without TASKD_FRONTEND_URL Aegir cannot be asked';
  }
  target.finish(task, { kind: 'end', state, endedAt, message, ...(orphan && { orphan }) });
}
