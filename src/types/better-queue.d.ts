// Only what the outbox uses, with the event names the library really emits (its own typings name
// some of them differently).
declare module 'better-queue' {
  type Callback<T = void> = (error: Error | null, value?: T) => void;

  interface QueueOptions<T> {
    process(task: T, cb: (error: Error | null, result?: unknown) => void): void;
    id?: string;
    merge?(oldTask: T, newTask: T, cb: Callback<T>): void;
    precondition?(cb: Callback<boolean>): void;
    preconditionRetryTimeout?: number;
    maxRetries?: number;
    retryDelay?: number;
    concurrent?: number;
    autoResume?: boolean;
    store?: object;
  }

  /** What push() answers: 'queued' once the store holds the task, 'failed' (a reason string) when it could not. */
  interface Ticket {
    on(event: 'queued', listener: () => void): this;
    on(event: 'failed', listener: (reason: string) => void): this;
  }

  class Queue<T> {
    constructor(options: QueueOptions<T>);
    push(task: T): Ticket;
    on(event: 'task_finish', listener: (taskId: string, result: unknown) => void): this;
    on(event: 'task_failed', listener: (taskId: string, message: string) => void): this;
    on(event: 'task_retry', listener: (taskId: string, retries: number) => void): this;
    on(event: 'drain' | 'empty', listener: () => void): this;
    on(event: 'error', listener: (error: Error) => void): this;
    destroy(cb?: () => void): void;
    readonly length: number;
  }

  export = Queue;
}
