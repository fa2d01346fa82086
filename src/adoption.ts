import fs from 'node:fs/promises';
import { z } from 'zod';
import { readOutcome, type AttemptVerdict, type WriteBackRequest } from './attempt.js';
import { AegirStatus, type Frontend } from './frontend.js';
import type { Metrics } from './metrics.js';
import { isRunning, pidFilePath, readPidFile, readProcessStartTime, runFilePath, stopGroup } from './runner.js';
import { laneKeyFor, newTask, type EndState, type Logger, type Task } from './task.js';
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
  /** This service's journal started it: Aegir showing it still queued (drush bootstrapping) counts as its own too. */
  claimedByJournal?: boolean;
}

/** What adopting a child asks of the scheduler. */
export interface AdoptionTarget {
  registry: TaskRegistry;
  frontend: Frontend | undefined;
  metrics: Metrics;
  log: Logger;
  logDir: string;
  pollMs: number;
  /** TASKD_TASK_TIMEOUT and TASKD_KILL_GRACE: an adopted run is held to them as one started here is, from its own start time. */
  timeoutMs: number;
  killGraceMs: number;
  /** Shows a task as running and holding its lane, with no attempt of ours behind it. */
  holdRunning(task: Task): void;
  finish(task: Task, verdict: Extract<AttemptVerdict, { kind: 'end' }>): void;
  /** Calls tick every ms until cancelled (or until the scheduler closes); cancel answers false once it was cancelled. */
  repeat(ms: number, tick: () => void): { cancel(): boolean };
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

/** A <nid>.pid left behind by a run of the service, with its <nid>.run.json when that can be read. */
export interface Survivor {
  nid: number;
  /** Null when the pid file cannot be read. */
  pid: number | null;
  processStart: string | null;
  record: z.output<typeof runRecordSchema> | null;
}

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
 * Children outlive the service (a restart must never kill a running drush): every <nid>.pid left
 * behind is read with its <nid>.run.json, for start-up to decide on each.
 */
export async function readSurvivors(logDir: string, log: Logger): Promise<Survivor[]> {
  const survivors: Survivor[] = [];
  const names = (await fs.readdir(logDir)).filter((name) => /^\d+\.pid$/.test(name));
  for (const name of names) {
    const nid = Number(name.slice(0, -'.pid'.length));
    const running = await readPidFile(pidFilePath(logDir, nid));
    let record = null;
    try {
      record = runRecordSchema.parse(JSON.parse(await fs.readFile(runFilePath(logDir, nid), 'utf8')));
    } catch (error) {
      log.warn({ nid, err: (error as Error).message }, 'no readable run record beside the pid file; going by what the pid file says');
    }
    survivors.push({ nid, pid: running?.pid ?? null, processStart: running?.processStart ?? null, record });
  }
  return survivors;
}

export async function removeRunFiles(logDir: string, nid: number): Promise<void> {
  await Promise.all([fs.rm(pidFilePath(logDir, nid), { force: true }), fs.rm(runFilePath(logDir, nid), { force: true })]);
}

/** Whether the process a pid file names still runs: the same pid, started at the same kernel time. */
export async function survivorAlive(pid: number, processStart: string | null): Promise<boolean> {
  if (!(await isRunning(pid))) return false;
  return processStart === null || (await readProcessStartTime(pid)) === processStart;
}

export type AdoptionResult = 'adopted' | 'gone' | 'active' | 'not_processing';

/**
 * Takes back a child that a previous run of the service started and that is still alive: it shows
 * as running, holds its lane and a concurrency slot, and its outcome is read when it ends. With a
 * frontend, only a child whose nid Aegir shows processing (at the revision it was started on, or a
 * newer one: hosting-task saves a new revision as it claims the task) is ours to take back; a pid
 * file left in a shared folder by another service names something else. An unreachable frontend
 * does not stop it: a live drush of a site must hold that site's lane.
 */
export async function adoptChild(target: AdoptionTarget, record: AdoptionRecord): Promise<AdoptionResult> {
  if (!(await survivorAlive(record.pid, record.processStart))) return 'gone';
  if (target.registry.active(record.nid)) return 'active';
  if (target.frontend) {
    try {
      const aegir = await target.frontend.getTask(record.nid);
      const revisionOk = record.vid == null || aegir?.vid == null || aegir.vid >= record.vid;
      const ours = aegir !== null && (aegir.status === AegirStatus.processing || (record.claimedByJournal === true && aegir.status === AegirStatus.queued));
      if (!ours || !revisionOk) {
        target.log.warn({ nid: record.nid, pid: record.pid, aegirStatus: aegir?.status ?? null, aegirVid: aegir?.vid ?? null, runVid: record.vid ?? null }, 'not adopting a live child: Aegir does not show its task processing');
        return 'not_processing';
      }
    } catch (error) {
      target.log.warn({ nid: record.nid, pid: record.pid, err: (error as Error).message }, 'could not ask Aegir about a live child; adopting it so that its lane stays held');
    }
  }
  const task = newTask(
    {
      nid: record.nid,
      rid: record.rid ?? null,
      type: record.type ?? null,
      vid: record.vid ?? null,
      changed: record.changed ?? null,
      lane: record.lane ?? laneKeyFor(record.rid, record.nid),
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
  // Not our child, so there is no exit event to wait for: look every so often, and hold it to the
  // task timeout as the runner holds its own (SIGTERM to the group, SIGKILL after the grace).
  const deadline = record.startedAt + target.timeoutMs;
  let timedOut = false;
  const poll = target.repeat(target.pollMs, () => {
    void isRunning(record.pid).then((running) => {
      if (running) {
        if (!timedOut && Date.now() >= deadline) {
          timedOut = true;
          target.log.warn({ nid: task.nid, pid: record.pid, timeoutSeconds: target.timeoutMs / 1000 }, 'a re-adopted task outlived TASKD_TASK_TIMEOUT: stopping its process group');
          stopGroup(record.pid, target.killGraceMs).catch((error: unknown) =>
            target.log.error({ nid: task.nid, pid: record.pid, err: (error as Error).message }, 'could not signal the re-adopted process group'),
          );
        }
        return;
      }
      if (!poll.cancel()) return;
      void finishAdopted(target, task, timedOut);
    });
  });
  return 'adopted';
}

async function finishAdopted(target: AdoptionTarget, task: Task, timedOut: boolean): Promise<void> {
  const endedAt = Date.now();
  const pid = task.pid;
  task.pid = null;
  let state: EndState = 'failed';
  let message = task.message;
  const seconds = target.timeoutMs / 1000;
  let orphan;
  let writeBack: WriteBackRequest | undefined;
  if (target.frontend) {
    const outcome = await readOutcome(task, target.frontend, target.metrics);
    if (outcome.state !== null) {
      state = outcome.state === 'retry' ? 'failed' : outcome.state;
      task.outcomeConfirmed = true;
      orphan = outcome.orphan;
      if (orphan?.vid != null && pid !== null) {
        writeBack = timedOut
          ? { vid: orphan.vid, reason: `aegir-taskd: the re-adopted drush (pid ${pid}) was stopped after ${seconds} s (TASKD_TASK_TIMEOUT)`, cause: 'timeout' as const }
          : { vid: orphan.vid, reason: `aegir-taskd: the re-adopted drush (pid ${pid}) ended without finishing the task`, cause: 'adopted_died' as const };
        message = timedOut ? `killed after ${seconds}s (TASKD_TASK_TIMEOUT), re-adopted; finishing it in Aegir` : 'the re-adopted child ended but Aegir still showed it processing; finishing it in Aegir';
        orphan = undefined;
      }
      if (outcome.state === 'retry') message = 'Aegir still shows it queued after the re-adopted run';
    } else {
      task.outcomeConfirmed = false;
      message = 'outcome unknown: the frontend could not be read; a later reconcile corrects it';
    }
  } else {
    task.outcomeConfirmed = false;
    message = 'outcome unknown: the service restarted while this ran, and without TASKD_FRONTEND_URL Aegir cannot be asked';
  }
  // Stopped for its timeout, it ends timed out whatever Aegir made of it, as a run of ours would.
  if (timedOut) {
    state = 'timed_out';
    if (!writeBack) message = `killed after ${seconds}s (TASKD_TASK_TIMEOUT), re-adopted`;
  }
  target.finish(task, { kind: 'end', state, endedAt, message, ...(orphan && { orphan }), ...(writeBack && { writeBack }) });
  // After the end is journaled: until then the pid file is the evidence that the command ran.
  if (pid !== null) await removeAdoptedRunFiles(target.logDir, task.nid, pid).catch(() => false);
}
