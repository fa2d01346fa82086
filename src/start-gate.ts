import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { execa, type ResultPromise } from 'execa';

/**
 * Every child starts as this tiny shell, and learns which task it is over its stdin. Before it
 * execs the command (same pid, same start time, stdin from /dev/null) it opens <nid>.log as its
 * output, writes <nid>.run.json (what a restarted service needs to re-adopt it), then <nid>.pid (its
 * pid and kernel start time, which the service read as it forked the gate and sends first), then the
 * attempt's header line into the log. So the command never runs without those files, even if the
 * service dies the instant after starting it, and the service does no disk writes of its own before
 * the command starts. Arguments reach exec as they are: no shell interprets them. dash reads its
 * stdin a byte per system call, so every byte sent costs the start about 1 µs.
 *
 * Because the task comes over stdin, a gate can be started before there is a task for it (a warm
 * gate): a fork of the service costs in proportion to its memory, and this takes it off the path
 * from webhook to start. A gate whose stdin closes before a task arrives exits without running
 * anything, so gates never outlive the service.
 */
const GATE_SCRIPT = [
  'dir=$1 mask=$2',
  'IFS= read -r start && IFS= read -r nid && IFS= read -r header && IFS= read -r meta && IFS= read -r argc || exit 76',
  'set --',
  'case $argc in "" | *[!0-9]*) exit 76 ;; esac',
  'while [ "$argc" -gt 0 ]; do IFS= read -r arg || exit 76; set -- "$@" "$arg"; argc=$((argc - 1)); done',
  '[ $# -gt 0 ] || exit 76',
  // The log and run files are for this user only (0600); the command itself runs with the service's own umask.
  'umask 077',
  // `command` keeps a failed redirection from ending the shell (as it would for a bare exec), so one open both tests and takes the log.
  'command exec >>"$dir/$nid.log" 2>&1 || exit 75',
  "printf '%s\\n' \"$meta\" > \"$dir/$nid.run.json\" || exit 75",
  // The service read the start time when it forked this gate (the same process becomes the command).
  // Only without it is /proc read here: dash's read takes a byte per system call, some 0.5 ms for the line.
  'case $start in "" | *[!0-9]*) start= ; if read -r stat < /proc/$$/stat 2>/dev/null; then rest=${stat##*) }; field() { shift 19; start=$1; }; field $rest; fi ;; esac',
  "printf '%s %s\\n' \"$$\" \"$start\" > \"$dir/$nid.pid\" || exit 75",
  "printf '%s\\n' \"$header\"",
  // hosting_taskd's drush pre-hook tees Aegir's task log to stderr only for a task the service started
  // (a run named by a nid; a dispatch run is named otherwise).
  'case $nid in *[!0-9]*) ;; *) export AEGIR_TASKD_NID="$nid" ;; esac',
  'umask "$mask"',
  // A successful exec replaces the shell and its traps; a failed one (E2BIG, the file gone since its
  // path was resolved…) makes dash exit, which runs this trap: the command did not run, so its pid
  // file goes and the exit code says so, instead of 126/127 passing for the command's own.
  `trap 'rm -f "$dir/$nid.pid" "$dir/$nid.run.json"; exit 77' EXIT`,
  'exec "$@" </dev/null',
].join('\n');

/** The gate's exit code when it could not open the log or write its files; the command did not run. */
export const GATE_FAILED = 75;
/** The gate's exit code when its stdin closed before a whole task arrived; nothing ran. */
export const GATE_UNUSED = 76;
/** The gate's exit code when exec of the command failed (the shell says why in the log); nothing ran. */
export const GATE_EXEC_FAILED = 77;

export interface GateTask {
  /** The stem of the run's files: a task's nid, or another run's name such as "dispatch". */
  nid: number | string;
  /** The attempt's first line in <nid>.log. */
  header: string;
  /** Written to <nid>.run.json. */
  meta: string;
  /** The command, its first element an absolute path. */
  argv: readonly string[];
}

/** A process's kernel start time (clock ticks since boot, field 22 of /proc/<pid>/stat), or null. */
export function processStartFromStat(stat: string): string | null {
  // The command name may hold spaces and parentheses; fields are counted after its closing parenthesis.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

export type Gate = ResultPromise<{ stdin: 'pipe'; stdout: 'ignore'; stderr: 'ignore'; detached: true; reject: false; buffer: false }>;

let serviceUmask: string | null = null;

/**
 * Each gate's start time, read as it is forked. exec keeps the pid and the start time, so it is the
 * command's too, and the gate writes it into <nid>.pid without reading /proc itself at start.
 */
const gateStarts = new WeakMap<Gate, string>();

function readStartTimeNow(pid: number): string | null {
  try {
    return processStartFromStat(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    // No /proc here: the gate tries itself, and the pid file goes without a start time if it cannot.
    return null;
  }
}

/**
 * The umask the command must run with (a unit's UMask=0027 keeps provision's backups and drushrc
 * files private). Read from /proc without changing it; where the kernel does not show it there,
 * process.umask() reads it once, at the price of setting it twice.
 */
function currentUmask(): string {
  if (serviceUmask === null) {
    let line: RegExpExecArray | null = null;
    try {
      line = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    } catch {
      // No /proc here: asked below.
    }
    serviceUmask = line ? line[1]! : process.umask().toString(8).padStart(4, '0');
  }
  return serviceUmask;
}

/** Starts a gate that waits for its task. The environment is the child's, already without the service's secrets. */
export function spawnGate(logDir: string, childEnv: NodeJS.ProcessEnv): Gate {
  const gate = execa('/bin/sh', ['-c', GATE_SCRIPT, 'aegir-taskd-gate', logDir, currentUmask()], {
    stdin: 'pipe',
    stdout: 'ignore',
    stderr: 'ignore',
    detached: true,
    env: childEnv,
    extendEnv: false,
    reject: false,
    buffer: false,
    forceKillAfterDelay: false,
  });
  // A gate that dies before it gets its task must not crash the service with EPIPE; its exit tells the rest.
  gate.stdin.on('error', () => undefined);
  const start = gate.pid === undefined ? null : readStartTimeNow(gate.pid);
  if (start !== null && /^\d+$/.test(start)) gateStarts.set(gate, start);
  return gate;
}

/** The start time read when the gate was forked; null when /proc could not tell. */
export function gateProcessStart(gate: Gate): string | null {
  return gateStarts.get(gate) ?? null;
}

/** Gives a gate its task (from encodeGateTask), led by the start time read when it was forked. */
export function handTask(gate: Gate, task: string): void {
  gate.stdin.end(`${gateProcessStart(gate) ?? ''}\n${task}`);
}

/** What a gate reads from its stdin after its start time (handTask): one line per field, so no field may hold a line break. */
export function encodeGateTask(task: GateTask): string {
  const fields = [String(task.nid), task.header, task.meta, String(task.argv.length), ...task.argv];
  // A line break would shift every field after it; the shell's read would silently drop a NUL.
  if (fields.some((field) => /[\n\0]/.test(field))) throw new TypeError('the command and its arguments must not contain line breaks or NUL characters');
  return `${fields.join('\n')}\n`;
}

function isWaiting(gate: Gate): boolean {
  return gate.pid !== undefined && gate.exitCode === null && gate.signalCode === null && gate.stdin.writable;
}

/**
 * How long after a start its replacement gate is started. The fork of the service takes a core for
 * 1 to 4 ms; started at once, it competes with the command that was just handed over, which needs
 * a few milliseconds to exec and get going (measured: p95 queue-to-start 4.9 → 4.2 ms).
 */
export const REFILL_DELAY_MS = 5;

/** A pool grown by a burst goes back to its floor after this long without a start. */
export const WARM_SHRINK_AFTER_MS = 60_000;

export interface WarmGateGrowth {
  /** The most gates kept waiting after a burst (the scheduler gives TASKD_CONCURRENCY); the floor when absent. */
  ceiling?: number;
  shrinkAfterMs?: number;
  /** Milliseconds, for telling a burst from a stream; performance.now unless a test holds time still. */
  clock?: () => number;
}

/**
 * Keeps gates started ahead of need. Each start takes one and a replacement is started
 * REFILL_DELAY_MS later, so a task never waits for a fork it did not need. `size` (TASKD_WARM_STARTS)
 * is the floor. A start that finds none waiting forks the service on the spot, so each such miss
 * within REFILL_DELAY_MS of the start before it raises the number kept waiting by one, up to
 * `ceiling`: after a burst (a platform's migrate, a verify of every site) the next one finds its
 * gates ready. The floor is refilled as before; the gates above it are started one per turn of the
 * event loop, and a start cancels the next such turn until its own refill (each fork stops the loop
 * for a few milliseconds, which a burst's own webhooks must not wait behind). They end after
 * `shrinkAfterMs` with no start at all, as a process manager's idle timeout does, so idle RSS stays
 * the floor's.
 */
export class WarmGates {
  readonly #size: number;
  readonly #ceiling: number;
  readonly #shrinkAfterMs: number;
  readonly #start: () => Gate;
  readonly #clock: () => number;
  readonly #idle = new Set<Gate>();
  #target: number;
  #refill: NodeJS.Timeout | null = null;
  #grow: NodeJS.Immediate | null = null;
  #shrink: NodeJS.Timeout | null = null;
  #lastTakeAt = -Infinity;
  #closed = false;

  constructor(size: number, start: () => Gate, growth: WarmGateGrowth = {}) {
    this.#size = size;
    this.#target = size;
    this.#ceiling = size === 0 ? 0 : Math.max(size, growth.ceiling ?? size);
    this.#shrinkAfterMs = growth.shrinkAfterMs ?? WARM_SHRINK_AFTER_MS;
    this.#clock = growth.clock ?? (() => performance.now());
    this.#start = start;
  }

  get idle(): number {
    return this.#idle.size;
  }

  /** How many it keeps waiting now: the floor, or more after a burst. */
  get target(): number {
    return this.#target;
  }

  /** Starts gates until `size` wait idle, at once; any above it that a burst asked for, one per turn. */
  fill(): void {
    while (!this.#closed && this.#idle.size < this.#size) {
      if (!this.#startOne()) return;
    }
    this.#growSoon();
  }

  /** A waiting gate, or null when none is ready (the caller then starts its own). */
  take(): Gate | null {
    if (this.#size === 0 || this.#closed) return null;
    const now = this.#clock();
    let taken: Gate | null = null;
    for (const gate of this.#idle) {
      this.#idle.delete(gate);
      if (isWaiting(gate)) {
        taken = gate;
        break;
      }
    }
    if (taken) {
      taken.ref();
      (taken.stdin as Socket).ref();
    } else if (this.#target < this.#ceiling && now - this.#lastTakeAt < REFILL_DELAY_MS) {
      // Two starts closer together than a refill: a burst. A lone miss in a steady stream is only a
      // refill that came late, and growing for it would fork for gates that stream never needs.
      this.#target += 1;
    }
    this.#lastTakeAt = now;
    if (this.#target > this.#size) this.#shrinkLater();
    // No growth fork in the middle of a burst: the refill below starts growing again after it.
    if (this.#grow) clearImmediate(this.#grow);
    this.#grow = null;
    this.#refill ??= setTimeout(() => {
      this.#refill = null;
      this.fill();
    }, REFILL_DELAY_MS);
    return taken;
  }

  /**
   * Called when a start that found none waiting has forked its own gate. The next start is timed
   * from here, since that fork held the loop for milliseconds: timed from take(), a burst whose starts
   * each fork on the spot looked like a slow stream (each start more than REFILL_DELAY_MS after the
   * last), and the pool stopped growing at about 15 of a burst of 50.
   */
  startedOwn(): void {
    this.#lastTakeAt = this.#clock();
  }

  /** false when /bin/sh could not be started: starts fall back to their own gate, which reports why. */
  #startOne(): boolean {
    const gate = this.#start();
    if (gate.pid === undefined) {
      void gate.then(() => undefined);
      return false;
    }
    this.#idle.add(gate);
    // Idle gates do not keep a finished process alive (a pipe's stream is a net.Socket).
    gate.unref();
    (gate.stdin as Socket).unref();
    void gate.then(() => this.#idle.delete(gate));
    return true;
  }

  #growSoon(): void {
    if (this.#closed || this.#grow || this.#idle.size >= this.#target) return;
    this.#grow = setImmediate(() => {
      this.#grow = null;
      if (this.#closed || this.#idle.size >= this.#target || !this.#startOne()) return;
      this.#growSoon();
    });
    // Not unref'd: with only unref'd immediates pending, libuv blocks in poll, and the pool grew one
    // gate per wake-up from something else (after a burst of 50, it stood at 16 when the next came).
    // The chain ends by itself at the target, and close() clears it.
  }

  /** Back to the floor once a whole shrinkAfterMs has passed without a start. */
  #shrinkLater(): void {
    if (this.#shrink) this.#shrink.refresh();
    else {
      this.#shrink = setTimeout(() => {
        this.#shrink = null;
        this.#target = this.#size;
        for (const gate of this.#idle) {
          if (this.#idle.size <= this.#size) break;
          this.#idle.delete(gate);
          gate.stdin.end();
        }
      }, this.#shrinkAfterMs);
      this.#shrink.unref();
    }
  }

  /** Idle gates see their stdin close and exit without running anything. */
  close(): void {
    this.#closed = true;
    if (this.#refill) clearTimeout(this.#refill);
    if (this.#grow) clearImmediate(this.#grow);
    if (this.#shrink) clearTimeout(this.#shrink);
    this.#refill = this.#grow = this.#shrink = null;
    for (const gate of this.#idle) gate.stdin.end();
    this.#idle.clear();
  }
}
