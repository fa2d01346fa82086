import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Gate, GateResult } from './gate-process.js';

/**
 * The worker's whole program (CommonJS, evaluated, so it needs no file of its own next to the build).
 * It forks gates and reaps them: libuv's waitpid runs on the loop that spawned the child, so a gate
 * started here is still a child of the service process (same pid namespace, same process group
 * rules, the kernel's exit status), only forked on another thread. For each gate it opens its own
 * descriptor of the gate's pipe (/proc/self/fd, non-blocking) and hands the number to the main
 * thread, which writes the task straight into the pipe: the hand-off costs no thread hop.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { args, env } = workerData;
const children = new Map();
const failed = (id, error) => parentPort.postMessage({ id, failed: { code: error && error.code, message: String((error && error.message) || error) } });
parentPort.on('message', (message) => {
  if (message.end !== undefined) {
    const child = children.get(message.end);
    if (child && child.stdin) child.stdin.end(message.data);
    return;
  }
  const id = message.spawn;
  let child;
  try {
    child = spawn('/bin/sh', args, { stdio: ['pipe', 'ignore', 'ignore'], detached: true, env });
  } catch (error) {
    failed(id, error);
    return;
  }
  child.stdin.on('error', () => undefined);
  if (child.pid === undefined) {
    child.once('error', (error) => failed(id, error));
    return;
  }
  let fd = null;
  try {
    fd = fs.openSync('/proc/self/fd/' + child.stdin._handle.fd, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    // No /proc: the main thread hands the task over through this thread instead.
  }
  children.set(id, child);
  child.once('exit', (code, signal) => {
    children.delete(id);
    parentPort.postMessage({ id, exit: { code, signal } });
  });
  parentPort.postMessage({ id, pid: child.pid, fd });
});
`;

type WorkerMessage =
  | { id: number; pid: number; fd: number | null }
  | { id: number; exit: { code: number | null; signal: string | null } }
  | { id: number; failed: { code: string | undefined; message: string } };

/** How often a gate whose worker died is looked for, until it is gone: nobody can reap it any more. */
const ORPHANED_GATE_POLL_MS = 1000;

/** A gate forked on the spawner's thread. Its pid is known once `ready` resolves true. */
export class RemoteGate implements Gate {
  pid: number | undefined = undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly ready: Promise<boolean>;
  readonly #result: Promise<GateResult>;
  #settleReady!: (ok: boolean) => void;
  #settleResult!: (result: GateResult) => void;
  #fd: number | null = null;
  #inputEnded = false;
  #held = false;

  constructor(
    readonly id: number,
    private readonly spawner: GateSpawner,
  ) {
    this.ready = new Promise((resolve) => (this.#settleReady = resolve));
    this.#result = new Promise((resolve) => (this.#settleResult = resolve));
  }

  readonly stdin: Gate['stdin'] = (() => {
    const gate = this;
    return {
      get writable(): boolean {
        return gate.waiting;
      },
      end: (data?: string) => gate.#end(data),
    };
  })();

  then<A = GateResult, B = never>(onFulfilled?: ((value: GateResult) => A | PromiseLike<A>) | null, onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.#result.then(onFulfilled, onRejected);
  }

  ref(): void {
    if (!this.#held && this.exitCode === null && this.signalCode === null) {
      this.#held = true;
      this.spawner.hold(1);
    }
  }

  unref(): void {
    if (this.#held) {
      this.#held = false;
      this.spawner.hold(-1);
    }
  }

  get waiting(): boolean {
    return this.pid !== undefined && this.exitCode === null && this.signalCode === null && !this.#inputEnded;
  }

  spawned(pid: number, fd: number | null): void {
    this.pid = pid;
    this.#fd = fd;
    this.#settleReady(true);
  }

  exited(code: number | null, signal: string | null): void {
    this.exitCode = code;
    this.signalCode = signal as NodeJS.Signals | null;
    this.#closeFd();
    this.unref();
    this.#settleReady(false);
    this.#settleResult({ exitCode: code ?? undefined, signal: signal ?? undefined });
  }

  failed(code: string | undefined, message: string): void {
    this.#closeFd();
    this.unref();
    this.#settleReady(false);
    this.#settleResult({ code, shortMessage: message, cause: new Error(message) });
  }

  /** The task in one write from this thread, when the pipe takes it all; the rest through the worker. */
  #end(data?: string): void {
    if (this.#inputEnded) return;
    this.#inputEnded = true;
    let rest = data ?? '';
    if (this.#fd !== null && rest.length > 0 && this.exitCode === null && this.signalCode === null) {
      const bytes = Buffer.from(rest);
      try {
        const written = fs.writeSync(this.#fd, bytes);
        rest = written === bytes.length ? '' : bytes.subarray(written).toString();
      } catch (error) {
        // EPIPE: the gate is gone, and its exit says so. EAGAIN: the pipe is full, the worker writes it.
        if ((error as NodeJS.ErrnoException).code === 'EPIPE') rest = '';
      }
    }
    this.#closeFd();
    // The worker's own end stays open until the gate exits when the whole task went in: a gate reads
    // exactly the fields it was told of, so it needs no end of file, and waking the worker now would
    // take a core from the gate that is about to exec.
    if (rest.length > 0 || data === undefined || data.length === 0) this.spawner.post({ end: this.id, data: rest || undefined });
  }

  #closeFd(): void {
    if (this.#fd === null) return;
    try {
      fs.closeSync(this.#fd);
    } catch {
      // Already closed: nothing holds it.
    }
    this.#fd = null;
  }
}

/**
 * Forks start gates on a worker thread, so the fork of the service (a copy of its page tables, 1 to
 * 5 ms on the event loop at its usual size) no longer stops the loop that answers webhooks. The
 * worker costs about 10 MB while it lives: it is started when the first gate is asked of it, and
 * ended by `release()` once no gate it forked is alive.
 */
export class GateSpawner {
  readonly #args: readonly string[];
  readonly #env: NodeJS.ProcessEnv;
  #worker: Worker | null = null;
  readonly #gates = new Map<number, RemoteGate>();
  #nextId = 1;
  #held = 0;
  #releasing = false;
  #broken = false;

  /** args: the arguments of /bin/sh that start one gate. */
  constructor(args: readonly string[], env: NodeJS.ProcessEnv) {
    this.#args = args;
    this.#env = env;
  }

  /** Gates it forked that have not exited. */
  get live(): number {
    return this.#gates.size;
  }

  get running(): boolean {
    return this.#worker !== null;
  }

  /** A gate being forked on the worker, or null when the worker cannot be used (the caller forks its own). */
  spawn(): RemoteGate | null {
    if (this.#broken) return null;
    this.#releasing = false;
    const worker = this.#ensureWorker();
    if (!worker) return null;
    const gate = new RemoteGate(this.#nextId++, this);
    this.#gates.set(gate.id, gate);
    worker.postMessage({ spawn: gate.id });
    return gate;
  }

  /** Ends the worker as soon as no gate it forked is alive (at once when none is). */
  release(): void {
    this.#releasing = true;
    this.#endIfUnused();
  }

  post(message: { end: number; data?: string | undefined }): void {
    this.#worker?.postMessage(message);
  }

  /** A taken gate keeps the process alive, as a gate forked on the main thread does. */
  hold(delta: number): void {
    this.#held += delta;
    if (this.#held > 0) this.#worker?.ref();
    else this.#worker?.unref();
  }

  #ensureWorker(): Worker | null {
    if (this.#worker) return this.#worker;
    let worker: Worker;
    try {
      // A small heap: the worker holds a few handles and nothing else.
      worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { args: this.#args, env: this.#env },
        env: {},
        stdout: false,
        stderr: false,
        resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 },
      });
    } catch {
      this.#broken = true;
      return null;
    }
    worker.unref();
    worker.on('message', (message: WorkerMessage) => this.#receive(message));
    worker.on('error', () => undefined);
    worker.once('exit', () => this.#workerEnded(worker));
    this.#worker = worker;
    return worker;
  }

  #receive(message: WorkerMessage): void {
    const gate = this.#gates.get(message.id);
    if (!gate) return;
    if ('pid' in message) {
      gate.spawned(message.pid, message.fd);
      return;
    }
    this.#gates.delete(message.id);
    if ('exit' in message) gate.exited(message.exit.code, message.exit.signal);
    else gate.failed(message.failed.code, message.failed.message);
    this.#endIfUnused();
  }

  #endIfUnused(): void {
    if (this.#releasing && this.#gates.size === 0 && this.#worker) {
      const worker = this.#worker;
      this.#worker = null;
      void worker.terminate();
    }
  }

  /**
   * The worker died with gates alive (it should not: it only forks). Nobody can reap them any more:
   * each is watched until it is gone, and its run is reported as failed with that reason.
   */
  #workerEnded(worker: Worker): void {
    if (this.#worker !== worker) return;
    this.#worker = null;
    this.#broken = true;
    for (const [id, gate] of this.#gates) {
      this.#gates.delete(id);
      if (gate.pid === undefined) {
        gate.failed('EWORKER', 'the start worker ended before the gate was started');
        continue;
      }
      const pid = gate.pid;
      const timer = setInterval(() => {
        if (!isRunningSync(pid)) {
          clearInterval(timer);
          gate.failed('EWORKER', 'the start worker ended, so the exit status of this run is unknown');
        }
      }, ORPHANED_GATE_POLL_MS);
      timer.unref();
    }
  }
}

function isRunningSync(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
