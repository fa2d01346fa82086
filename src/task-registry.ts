import type { Orphan, Task, TaskState, TaskSubmission } from './task.js';

interface StuckMark {
  vid: number | null;
  changed: number | null;
}

/**
 * Which tasks the service knows: the active ones (queued or running, one per nid), the running
 * ones among them (what the concurrency limit counts), the bounded history of ended ones, the
 * memory of stuck tasks and the orphans Aegir reported. It decides nothing about scheduling.
 */
export class TaskRegistry {
  readonly #active = new Map<number, Task>();
  /** Tasks running now (including adopted ones). */
  readonly running = new Set<Task>();
  readonly #history = new Map<number, Task>();
  readonly #stuck = new Map<number, StuckMark>();
  readonly orphans = new Map<number, Orphan>();

  constructor(private readonly historySize: number) {}

  /** Queued (awaiting its lane, waiting in it, or waiting for a retry) and not running. */
  get queuedCount(): number {
    return this.#active.size - this.running.size;
  }

  active(nid: number): Task | undefined {
    return this.#active.get(nid);
  }

  ended(nid: number): Task | undefined {
    return this.#history.get(nid);
  }

  get(nid: number): Task | undefined {
    return this.#active.get(nid) ?? this.#history.get(nid);
  }

  /** A task is what the registry holds for its nid, not a stale copy that ended or was replaced. */
  isCurrent(task: Task): boolean {
    return this.#active.get(task.nid) === task;
  }

  activeTasks(): IterableIterator<Task> {
    return this.#active.values();
  }

  *queuedTasks(): Generator<Task> {
    for (const t of this.#active.values()) if (t.state === 'queued') yield t;
  }

  /** Makes a task the active one of its nid; an ended task of that nid leaves the history. */
  activate(task: Task): void {
    this.#history.delete(task.nid);
    this.#active.set(task.nid, task);
  }

  /** Moves an active task to the history, dropping the oldest ended task beyond the bound. */
  retire(task: Task): void {
    this.running.delete(task);
    this.#active.delete(task.nid);
    this.#history.set(task.nid, task);
    while (this.#history.size > this.historySize) this.#history.delete(this.#history.keys().next().value!);
  }

  /** Ended tasks, newest first. */
  *history(): Generator<Task> {
    const ended = [...this.#history.values()];
    for (let i = ended.length - 1; i >= 0; i -= 1) yield ended[i]!;
  }

  *endedOldestFirst(): IterableIterator<Task> {
    yield* this.#history.values();
  }

  markStuck(task: Task): void {
    this.#stuck.set(task.nid, { vid: task.vid, changed: task.changed });
  }

  /**
   * The ended task that repeated runs left queued in Aegir, when a submission brings nothing new:
   * only a new revision or changed time earns another try.
   */
  stuckFor(input: TaskSubmission): Task | undefined {
    const stuck = this.#stuck.get(input.nid);
    const ended = this.#history.get(input.nid);
    if (stuck && ended && (input.vid ?? stuck.vid) === stuck.vid && (input.changed ?? stuck.changed) === stuck.changed) return ended;
    return undefined;
  }

  forgetStuck(nid: number): void {
    this.#stuck.delete(nid);
  }

  list(state: TaskState | undefined, limit: number): Task[] {
    const out: Task[] = [];
    const take = (tasks: Iterable<Task>) => {
      for (const t of tasks) {
        if (out.length >= limit) return;
        if (state === undefined || t.state === state) out.push(t);
      }
    };
    if (state === undefined || state === 'running') take(this.running);
    if (state === undefined || state === 'queued') take(this.queuedTasks());
    if (state !== 'running' && state !== 'queued') take(this.history());
    return out;
  }
}
