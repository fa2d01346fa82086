import { AegirStatus, type AegirTask, type HostingQueue } from '../frontend.js';

/** How a simulated hosting-task run ends. */
export type Behaviour = 'success' | 'warning' | 'error' | 'hang' | 'die' | 'leave-queued';

export interface SimTask extends AegirTask {
  vid: number;
  rid: number;
  type: string;
  changed: number;
  executed: number | null;
  delta: number | null;
  behaviour: Behaviour;
  seconds: number;
  /** Every time hosting-task claimed it (marked it processing): a task run twice shows up here. */
  claims: number;
  /** Wall-clock milliseconds of the last claim and the last final status, for ordering checks. */
  claimedAt: number | null;
  finishedAt: number | null;
  /** {hosting_task_log}: every entry of every revision, as _hosting_task_log() writes them. */
  log: Array<{ vid: number; type: string; message: string; timestamp: number }>;
  /** The revision and reason of the last finish by POST task/{nid}/finish, so that a repeat answers the same. */
  finishedByService: { vid: number; status: number } | null;
}

/** hosting_task_parse_log(): any error or failed entry of the revision makes it an error, else any warning a warning, else a success. */
export function statusFromLog(entries: ReadonlyArray<{ type: string }>): number {
  if (entries.some((e) => e.type === 'error' || e.type === 'failed')) return AegirStatus.error;
  if (entries.some((e) => e.type === 'warning')) return AegirStatus.warning;
  return AegirStatus.success;
}

/** How a simulated hosting-dispatch run behaves: as Aegir's, exit 1 before it dispatches anything, or never end. */
export type DispatchBehaviour = 'normal' | 'fail' | 'hang';

/** One of hosting's other queues: the variables hosting_get_queues() reads (hosting.queues.inc). */
export interface SimQueue {
  name: string;
  enabled: boolean;
  /** calc_frequency, seconds. */
  frequency: number;
  /** hosting_queue_<name>_last_run, unix seconds; 0 when it never ran. */
  last: number;
  /** Times the queue's own command (hosting-<name>) was run by a dispatch. */
  runs: number;
}

/** One run of the simulated hosting-dispatch, as it recorded itself. */
export interface SimDispatchRun {
  /** Unix seconds, REQUEST_TIME of the run. */
  at: number;
  /** Wall-clock milliseconds when it asked. */
  atMs: number;
  pid: number;
  /** AEGIR_TASKD_DISPATCH was set: the service started it. */
  byService: boolean;
  /** The service's secrets reached it (they must not). */
  sawSecrets: boolean;
  ran: string[];
  behaviour: DispatchBehaviour;
}

/**
 * Aegir's hosting_task table as the design relies on it: status codes, a new revision (vid) on
 * every node save, `changed` moved by saves, and the final status written straight to the row.
 */
export class AegirState {
  readonly tasks = new Map<number, SimTask>();
  #nextNid = 100;
  #nextVid = 1000;
  #clock: () => number;
  /** hosting_dispatch_enabled. */
  dispatchEnabled = true;
  dispatchBehaviour: DispatchBehaviour = 'normal';
  readonly queues = new Map<string, SimQueue>();
  readonly dispatchRuns: SimDispatchRun[] = [];

  constructor(clock: () => number = () => Math.floor(Date.now() / 1000)) {
    this.#clock = clock;
  }

  /** A queue as a hook_hosting_queues() implementation and its variables define it. */
  addQueue(input: { name: string; frequency: number; last?: number; enabled?: boolean }): SimQueue {
    const queue: SimQueue = { name: input.name, enabled: input.enabled ?? true, frequency: input.frequency, last: input.last ?? 0, runs: 0 };
    this.queues.set(queue.name, queue);
    return queue;
  }

  /** What the module lists: every queue but tasks, next = last + frequency. */
  listQueues(): HostingQueue[] {
    return [...this.queues.values()].map(({ name, enabled, last, frequency }) => ({ name, enabled, last, frequency, next: last + frequency }));
  }

  /**
   * drush_hosting_dispatch() (dispatch.hosting.inc): nothing unless hosting_dispatch_enabled; then
   * each enabled queue with now - last >= calc_frequency is run, and its run (hosting_run_queue(),
   * hosting.queues.inc) sets its last_run to its own REQUEST_TIME.
   */
  dispatch(input: { pid: number; byService: boolean; sawSecrets: boolean }): { run: SimDispatchRun; messages: string[] } {
    const now = this.#clock();
    const messages = ['Dispatching queues.'];
    const ran: string[] = [];
    if (this.dispatchBehaviour === 'normal') {
      if (!this.dispatchEnabled) messages.push('Dispatching disabled.');
      else {
        for (const queue of this.queues.values()) {
          if (!queue.enabled) messages.push(`Queue ${queue.name} disabled.`);
          else if (now - queue.last >= queue.frequency) {
            queue.last = now;
            queue.runs += 1;
            ran.push(queue.name);
            messages.push(`Found 0 running tasks, starting hosting-${queue.name}.`);
          } else messages.push(`Too early for queue ${queue.name}.`);
        }
      }
    }
    const run: SimDispatchRun = { at: now, atMs: Date.now(), ...input, ran, behaviour: this.dispatchBehaviour };
    this.dispatchRuns.push(run);
    return { run, messages };
  }

  /** hosting_add_task(): a new task node, status queued. */
  addTask(input: { rid: number; type?: string; behaviour?: Behaviour; seconds?: number; nid?: number }): SimTask {
    const nid = input.nid ?? this.#nextNid++;
    const task: SimTask = {
      nid,
      vid: this.#nextVid++,
      rid: input.rid,
      type: input.type ?? 'verify',
      status: AegirStatus.queued,
      changed: this.#clock(),
      executed: null,
      delta: null,
      behaviour: input.behaviour ?? 'success',
      seconds: input.seconds ?? 0.2,
      claims: 0,
      claimedAt: null,
      finishedAt: null,
      log: [],
      finishedByService: null,
    };
    this.tasks.set(nid, task);
    return task;
  }

  /** The module's queue endpoint: live revisions that are queued or processing, oldest changed first, then nid. */
  listQueue(): AegirTask[] {
    return [...this.tasks.values()]
      .filter((t) => t.status === AegirStatus.queued || t.status === AegirStatus.processing)
      .sort((a, b) => a.changed - b.changed || a.nid - b.nid)
      .map(({ nid, vid, rid, type, status, changed, executed }) => ({ nid, vid, rid, type, status, changed, executed }));
  }

  getTask(nid: number): AegirTask | null {
    const t = this.tasks.get(nid);
    if (!t) return null;
    const { nid: n, vid, rid, type, status, changed, executed, delta } = t;
    return { nid: n, vid, rid, type, status, changed, executed, delta };
  }

  /** What `drush hosting-task NID` does first: refuse unless queued, then save a processing revision. */
  claim(nid: number): { ok: true; task: SimTask } | { ok: false; message: string } {
    const t = this.tasks.get(nid);
    if (!t) return { ok: false, message: `Could not find or create a task with nid ${nid}.` };
    if (t.status === AegirStatus.processing) return { ok: false, message: 'This task is already running, use --force.' };
    if (t.status !== AegirStatus.queued) return { ok: false, message: 'This task is not queued, use --force.' };
    t.status = AegirStatus.processing;
    t.vid = this.#nextVid++;
    t.changed = this.#clock();
    t.executed = this.#clock();
    t.claims += 1;
    t.claimedAt = Date.now();
    return { ok: true, task: t };
  }

  /** _hosting_task_log(): one entry for the task's live revision. */
  addLog(nid: number, type: string, message: string): void {
    const t = this.tasks.get(nid);
    if (t) t.log.push({ vid: t.vid, type, message, timestamp: this.#clock() });
  }

  /** hosting_task_update_status() at shutdown: the status its revision's log gives. */
  finishFromLog(nid: number): number | undefined {
    const t = this.tasks.get(nid);
    if (!t) return undefined;
    const status = statusFromLog(t.log.filter((e) => e.vid === t.vid));
    this.finish(nid, status);
    return status;
  }

  /**
   * hosting_taskd's POST task/{nid}/finish: only a live revision that is processing at that vid; the
   * reason becomes an error entry of that revision and Aegir derives the status. A repeat for a task
   * this call already finished answers the same.
   */
  finishByService(nid: number, vid: number, reason: string): { result: 'finished' | 'conflict'; status: number; vid: number } | { result: 'not_found' } {
    const t = this.tasks.get(nid);
    if (!t) return { result: 'not_found' };
    if (t.finishedByService && t.finishedByService.vid === vid && t.vid === vid) return { result: 'finished', status: t.finishedByService.status, vid };
    if (t.status !== AegirStatus.processing || t.vid !== vid) return { result: 'conflict', status: t.status, vid: t.vid };
    this.addLog(nid, 'error', reason);
    const status = this.finishFromLog(nid)!;
    t.finishedByService = { vid, status };
    return { result: 'finished', status, vid };
  }

  /** At shutdown hosting-task writes the final status straight to the row (no new revision). */
  finish(nid: number, status: number): void {
    const t = this.tasks.get(nid);
    if (!t) return;
    t.status = status;
    t.finishedAt = Date.now();
    t.delta = t.executed === null ? 0 : this.#clock() - t.executed;
  }

  /** "Run again" on older 3.x: the same nid queued again with a new revision. */
  requeue(nid: number): SimTask | undefined {
    const t = this.tasks.get(nid);
    if (!t) return undefined;
    t.status = AegirStatus.queued;
    t.vid = this.#nextVid++;
    t.changed = this.#clock();
    return t;
  }

  delete(nid: number): boolean {
    return this.tasks.delete(nid);
  }
}
