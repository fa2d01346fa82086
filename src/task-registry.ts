import type { Orphan, Task, TaskState, TaskSubmission } from './task.js';

interface StuckMark {
  vid: number | null;
  changed: number | null;
}

/**
 * Which tasks the service knows: the active ones (queued, starting or running; one per nid), those
 * among them that hold a concurrency slot, the bounded history of ended ones, the
 * memory of stuck tasks and the orphans Aegir reported. It decides nothing about scheduling.
 */
export class TaskRegistry {
  readonly #active = new Map<number, Task>();
  /** Tasks holding a concurrency slot: starting or running (adopted ones included). */
  readonly slots = new Set<Task>();
  readonly #history = new Map<number, Task>();
  /** The history in the order tasks ended, so it can be read newest first without a copy. */
  #order: Task[] = [];
  #orderStart = 0;
  readonly #stuck = new Map<number, StuckMark>();
  readonly orphans = new Map<number, Orphan>();

  constructor(private readonly historySize: number) {}

  /** Queued: awaiting its lane, waiting in it, or waiting for a retry. */
  get queuedCount(): number {
    return this.#active.size - this.slots.size;
  }

  countIn(state: 'starting' | 'running'): number {
    let n = 0;
    for (const t of this.slots) if (t.state === state) n += 1;
    return n;
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

  /** Forgets an active task that was never accepted (its journal record could not be written): no history, no trace. */
  withdraw(task: Task): void {
    this.slots.delete(task);
    if (this.#active.get(task.nid) === task) this.#active.delete(task.nid);
  }

  /** Moves an active task to the history, dropping the oldest ended task beyond the bound. */
  retire(task: Task): void {
    this.slots.delete(task);
    if (this.#active.get(task.nid) !== task) return;
    this.#active.delete(task.nid);
    this.#file(task);
  }

  /** Puts an ended task read back from the journal at the newest end of the history. */
  restoreEnded(task: Task): void {
    this.#active.delete(task.nid);
    this.#file(task);
  }

  #file(task: Task): void {
    this.#history.set(task.nid, task);
    this.#order.push(task);
    while (this.#history.size > this.historySize) {
      const oldest = this.#order[this.#orderStart++]!;
      if (this.#history.get(oldest.nid) === oldest) this.#history.delete(oldest.nid);
    }
    // Entries of tasks that left the history (queued again) are skipped lazily and compacted away.
    if (this.#orderStart > this.historySize || this.#order.length - this.#orderStart > 2 * this.historySize + 64) {
      this.#order = this.#order.slice(this.#orderStart).filter((t) => this.#history.get(t.nid) === t);
      this.#orderStart = 0;
    }
  }

  /** Ended tasks, newest first, without copying the history. */
  *history(): Generator<Task> {
    for (let i = this.#order.length - 1; i >= this.#orderStart; i -= 1) {
      const t = this.#order[i]!;
      if (this.#history.get(t.nid) === t) yield t;
    }
  }

  *endedOldestFirst(): Generator<Task> {
    for (let i = this.#orderStart; i < this.#order.length; i += 1) {
      const t = this.#order[i]!;
      if (this.#history.get(t.nid) === t) yield t;
    }
  }

  isStuck(nid: number): boolean {
    return this.#stuck.has(nid);
  }

  /** Everything a compacted journal must hold: the history oldest first, then every active task. */
  *journalEntries(): Generator<{ task: Task; stuck?: boolean }> {
    for (const task of this.endedOldestFirst()) yield this.#stuck.has(task.nid) ? { task, stuck: true } : { task };
    yield* [...this.#active.values()].map((task) => ({ task }));
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
    if (state === undefined || state === 'running' || state === 'starting') take(this.slots);
    if (state === undefined || state === 'queued') take(this.queuedTasks());
    if (state !== 'running' && state !== 'starting' && state !== 'queued') take(this.history());
    return out;
  }
}
