import { ACTIVE_STATES, type Task } from './task.js';
import type { EventRing } from './event-ring.js';

export type EventName = 'task' | 'queue' | 'reconcile';

export interface EventSubscriber {
  /** Writes one Server-Sent Events chunk; answers false when the client is too far behind to keep. */
  write(chunk: string): boolean;
  /** Ends the stream (the client was too slow). */
  drop(): void;
}

export interface TaskEventsOptions {
  /** The task as GET /v1/tasks shows it. */
  view(task: Task): unknown;
  /** The queue's summary as the queue event carries it. */
  queue(): unknown;
  /** Queued and running now, for the activity ring. */
  counts(): { queued: number; running: number };
  ring: EventRing;
  /** How long changes are gathered into one batch: a burst of webhooks is one event per task and one queue event. */
  batchMs?: number;
  /** A comment line this often keeps proxies from closing a quiet stream. */
  heartbeatMs?: number;
}

/**
 * The event stream's hub: the scheduler tells it of every change of a task, the queue routes of a
 * pause or resume, the reconciler of each result. Changes are gathered for batchMs, so a task that
 * changes three times in a burst is sent once as it is then; with no client connected nothing is
 * serialised, and only the activity ring is fed.
 */
export class TaskEvents {
  readonly #options: Required<TaskEventsOptions>;
  readonly #pending = new Set<Task>();
  readonly #recordedEnds = new WeakSet<Task>();
  readonly #subscribers = new Set<EventSubscriber>();
  #queueDirty = false;
  #timer: NodeJS.Timeout | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #seq = 0;
  #closed = false;

  constructor(options: TaskEventsOptions) {
    this.#options = { batchMs: 50, heartbeatMs: 20_000, ...options };
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  changed(task: Task): void {
    this.#pending.add(task);
    this.#schedule();
  }

  queueChanged(): void {
    this.#queueDirty = true;
    this.#schedule();
  }

  /** A reconcile's result goes out at once: the page shows the frontend's health as it is. */
  reconciled(result: { ok: boolean; at: string; error: string | null; listed?: number }): void {
    this.#publish('reconcile', result);
    this.queueChanged();
  }

  subscribe(subscriber: EventSubscriber): () => void {
    this.#subscribers.add(subscriber);
    if (!this.#heartbeat) {
      this.#heartbeat = setInterval(() => this.#broadcast(': keep-alive\n\n'), this.#options.heartbeatMs);
      this.#heartbeat.unref();
    }
    return () => {
      this.#subscribers.delete(subscriber);
      if (this.#subscribers.size === 0 && this.#heartbeat) {
        clearInterval(this.#heartbeat);
        this.#heartbeat = null;
      }
    };
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#timer = this.#heartbeat = null;
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(() => this.#flush(), this.#options.batchMs);
    this.#timer.unref();
  }

  #flush(): void {
    this.#timer = null;
    const { ring, view, queue, counts } = this.#options;
    const now = Date.now();
    const live = this.#subscribers.size > 0;
    for (const task of this.#pending) {
      if (!ACTIVE_STATES.includes(task.state) && !this.#recordedEnds.has(task)) {
        this.#recordedEnds.add(task);
        const started = task.startedAt !== null;
        ring.ended({
          type: task.type ?? 'unknown',
          state: task.state,
          endedAt: task.endedAt ?? now,
          waitMs: started ? Math.max(0, task.startedAt! - task.receivedAt) : null,
          runMs: started && task.endedAt !== null ? Math.max(0, task.endedAt - task.startedAt!) : null,
        });
      }
      if (live) this.#publish('task', view(task));
    }
    const changed = this.#pending.size > 0 || this.#queueDirty;
    this.#pending.clear();
    this.#queueDirty = false;
    const { queued, running } = counts();
    ring.sample(now, queued, running);
    if (live && changed) this.#publish('queue', queue());
  }

  #publish(event: EventName, data: unknown): void {
    if (this.#subscribers.size === 0) return;
    this.#seq += 1;
    this.#broadcast(`id: ${this.#seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #broadcast(chunk: string): void {
    for (const subscriber of this.#subscribers) {
      if (!subscriber.write(chunk)) {
        this.#subscribers.delete(subscriber);
        subscriber.drop();
      }
    }
  }
}
