import { readSurvivors, removeRunFiles, survivorAlive, type AdoptionRecord, type AdoptionResult, type Survivor } from './adoption.js';
import type { JournalContents } from './journal.js';
import { ACTIVE_STATES, type Logger, type Task } from './task.js';

/** What start-up asks of the scheduler. */
export interface RecoveryTarget {
  restoreQueued(task: Task): void;
  restoreEnded(task: Task, stuck: boolean, decidedNow?: boolean): void;
  adopt(record: AdoptionRecord): Promise<AdoptionResult>;
}

export interface RecoveryReport {
  queued: number[];
  adopted: number[];
  ended: number[];
  /** Live children this service has no claim to (another service's pid files, or Aegir does not show them processing). */
  leftAlone: number[];
}

export interface RecoveryOptions {
  /** The journal read back; null when the journal is off, and every live child is adopted as before. */
  journal: JournalContents | null;
  logDir: string;
  scheduler: RecoveryTarget;
  log: Logger;
  /** With a frontend, adoption asks Aegir; without one, the journal is the only claim to a child. */
  frontendConfigured: boolean;
}

const adoptionRecord = (survivor: Survivor, task?: Task): AdoptionRecord => ({
  ...(task && { rid: task.rid, type: task.type, vid: task.vid, changed: task.changed, receivedAt: task.receivedAt, attempts: task.attempts, lane: task.lane }),
  ...survivor.record,
  startedAt: survivor.record?.startedAt ?? task?.startedAt ?? Date.now(),
  nid: survivor.nid,
  pid: survivor.pid!,
  processStart: survivor.processStart,
});

/**
 * Brings back what the last run of the service had accepted. Each task the journal left active
 * is decided by its run files: a live child is adopted; a pid file whose process is gone, or an exit
 * the journal recorded, means the command ran (it ends with its outcome unconfirmed, for Aegir to
 * correct); no pid file and no exit means the command never ran (the start gate writes the pid file
 * before it execs), so the task is queued again. Nothing that ran is run twice, nothing accepted is lost.
 */
export async function recover(options: RecoveryOptions): Promise<RecoveryReport> {
  const { journal, logDir, scheduler, log, frontendConfigured } = options;
  const report: RecoveryReport = { queued: [], adopted: [], ended: [], leftAlone: [] };
  const survivors = new Map((await readSurvivors(logDir, log)).map((s) => [s.nid, s]));
  const endUnconfirmed = (task: Task, message: string) => {
    const ran = task.exitCode !== null || task.signal !== null;
    Object.assign(task, {
      state: ran && task.exitCode === 0 ? 'succeeded' : 'failed',
      endedAt: Date.now(),
      pid: null,
      outcomeConfirmed: false,
      message,
    });
    scheduler.restoreEnded(task, false, true);
    report.ended.push(task.nid);
  };

  // Queued tasks go back only after every live child holds its lane, so none can start beside one.
  const toRequeue: Task[] = [];
  for (const { task, stuck } of journal?.entries ?? []) {
    if (!ACTIVE_STATES.includes(task.state)) {
      scheduler.restoreEnded(task, stuck ?? false);
      continue;
    }
    const survivor = survivors.get(task.nid);
    survivors.delete(task.nid);
    if (survivor) {
      if (survivor.pid !== null && (await survivorAlive(survivor.pid, survivor.processStart))) {
        // This journal started it: Aegir may still show it queued while drush bootstraps.
        const result = await scheduler.adopt({ ...adoptionRecord(survivor, task), claimedByJournal: true });
        if (result === 'adopted') {
          report.adopted.push(task.nid);
          continue;
        }
        report.leftAlone.push(task.nid);
        endUnconfirmed(task, 'the service restarted while it ran, and Aegir no longer shows it processing; its process was left alone');
        continue;
      }
      // Journaled as ended before the pid file, the evidence that it ran, goes.
      endUnconfirmed(task, 'the service stopped while it ran and its process is gone: the outcome is unknown until Aegir is asked');
      await removeRunFiles(logDir, task.nid);
      continue;
    }
    if (task.state !== 'queued' && (task.exitCode !== null || task.signal !== null)) {
      endUnconfirmed(task, 'the service stopped after the process exited, before the outcome was recorded');
      continue;
    }
    // Starting, with no pid file: its start gate never ran the command. That attempt did not happen.
    if (task.state !== 'queued') task.attempts = Math.max(0, task.attempts - 1);
    toRequeue.push(task);
  }

  for (const survivor of survivors.values()) {
    const alive = survivor.pid !== null && (await survivorAlive(survivor.pid, survivor.processStart));
    if (!alive) {
      await removeRunFiles(logDir, survivor.nid);
      continue;
    }
    // A live child this service's own journal did not leave running is another's (a pid file in a
    // shared folder), unless Aegir says it is processing: adopt() asks it when there is a frontend.
    // A journal that holds nothing yet (the first start with one) makes no such claim.
    if (!frontendConfigured && journal !== null && journal.lines > 0) {
      log.warn({ nid: survivor.nid, pid: survivor.pid }, 'not adopting a live child the journal did not start, and without TASKD_FRONTEND_URL Aegir cannot be asked');
      report.leftAlone.push(survivor.nid);
      continue;
    }
    const result = await scheduler.adopt(adoptionRecord(survivor));
    if (result === 'adopted') report.adopted.push(survivor.nid);
    else if (result !== 'gone') report.leftAlone.push(survivor.nid);
  }
  for (const task of toRequeue) {
    scheduler.restoreQueued(task);
    report.queued.push(task.nid);
  }
  return report;
}
