import { AegirStatus } from './frontend.js';

export const TASK_STATES = ['queued', 'starting', 'running', 'succeeded', 'warning', 'failed', 'timed_out', 'skipped', 'cancelled', 'stuck'] as const;
export type TaskState = (typeof TASK_STATES)[number];
/** A task in one of these states is still the service's to run; any other state is an end. */
export const ACTIVE_STATES: readonly TaskState[] = ['queued', 'starting', 'running'];

/** Between queued and running a task is starting: confirmed with Aegir and handed to its process, which does not have it yet. */
export type EndState = Exclude<TaskState, 'queued' | 'starting' | 'running'>;
export type TaskSource = 'webhook' | 'operator' | 'reconcile' | 'adopted';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface TaskSubmission {
  nid: number;
  rid?: number | null | undefined;
  type?: string | null | undefined;
  vid?: number | null | undefined;
  changed?: number | null | undefined;
  source: Exclude<TaskSource, 'adopted'>;
  /** When Aegir last said this task is queued (a signed webhook or a reconcile listing); null when unknown. */
  confirmedAt: number | null;
}

export interface Task {
  nid: number;
  rid: number | null;
  type: string | null;
  vid: number | null;
  changed: number | null;
  lane: string | null;
  state: TaskState;
  source: TaskSource;
  receivedAt: number;
  confirmedAt: number | null;
  startedAt: number | null;
  endedAt: number | null;
  attempts: number;
  exitCode: number | null;
  signal: string | null;
  aegirStatus: number | null;
  outcomeConfirmed: boolean | null;
  message: string | null;
  pid: number | null;
  /** When a task that Aegir still showed queued after its run is due to run again. */
  retryAt: number | null;
  /** Ordering within a lane and across lane heads: Aegir's changed time, else the time received (seconds). */
  orderKey: number;
}

/** Why the service finishes a task in Aegir: each is a drush it knows is dead. */
export const WRITE_BACK_CAUSES = ['timeout', 'stopped', 'killed', 'exited_processing', 'adopted_died', 'orphan'] as const;
export type WriteBackCause = (typeof WRITE_BACK_CAUSES)[number];

export interface Orphan {
  nid: number;
  rid: number | null;
  type: string | null;
  vid: number | null;
  since: number;
  reason: string;
}

/** What a task is made from; every field not named starts empty. */
export type TaskFields = Pick<Task, 'nid' | 'rid' | 'type' | 'vid' | 'changed' | 'lane' | 'state' | 'source' | 'receivedAt' | 'confirmedAt'> &
  Partial<Pick<Task, 'startedAt' | 'attempts' | 'message' | 'pid'>>;

export function newTask(fields: TaskFields, now: number): Task {
  return {
    startedAt: null,
    endedAt: null,
    attempts: 0,
    exitCode: null,
    signal: null,
    aegirStatus: null,
    outcomeConfirmed: null,
    message: null,
    pid: null,
    retryAt: null,
    orderKey: fields.changed ?? now / 1000,
    ...fields,
  };
}

/** The lane of a task: its rid, or one of its own when it has none (hosting_task.rid 0 names no node). */
export function laneKeyFor(rid: number | null | undefined, nid: number): string {
  return rid ? `rid:${rid}` : `nid:${nid}`;
}

/** Oldest first: Aegir's changed time (or the time received), then nid. */
export const runsBefore = (a: Task, b: Task): boolean => a.orderKey < b.orderKey || (a.orderKey === b.orderKey && a.nid < b.nid);

export function endStateFromAegir(status: number): EndState | null {
  if (status === AegirStatus.success) return 'succeeded';
  if (status === AegirStatus.warning) return 'warning';
  if (status === AegirStatus.error) return 'failed';
  return null;
}
