import fs from 'node:fs';
import os from 'node:os';

const MINUTE = 60_000;
const MB = 1024 * 1024;

export interface AdmissionLimits {
  concurrency: number;
  maxStartsPerMinute?: number | undefined;
  maxLoad?: number | undefined;
  /** The 1-minute load average divided by the CPUs (BOA's _CPU_TASK_RATIO). */
  maxLoadPerCpu?: number | undefined;
  /** Free space below this on diskPath holds starts back: a backup on a full disk is corrupt. */
  minFreeDiskMb?: number | undefined;
  diskPath?: string | undefined;
  /** While this file exists no task starts: a maintenance window a script can open and close. */
  pauseFile?: string | undefined;
}

export type GateReason = 'rate' | 'load' | 'disk' | 'pause_file';

/** Why the next task may not start now, and when it is worth looking again (null: when something else changes). */
export type Verdict =
  | { open: true }
  | { open: false; reason: 'paused' | 'closing' | 'concurrency'; recheckInMs: null }
  | { open: false; reason: 'rate'; until: number; recheckInMs: number }
  | { open: false; reason: 'load'; load: number; limit: number; perCpu: boolean; recheckInMs: number }
  | { open: false; reason: 'disk'; path: string; freeMb: number | null; limit: number; recheckInMs: number }
  | { open: false; reason: 'pause_file'; path: string; recheckInMs: number };

/** Why a queued task has not started, as operators see it in the API (a stable reason, its details, a sentence). */
export interface WaitingFor {
  reason: 'next' | 'lane_unknown' | 'lane_busy' | 'retry' | 'paused' | 'closing' | 'concurrency' | GateReason;
  message: string;
  nid?: number;
  until?: string;
  load?: number;
  limit?: number;
  path?: string;
  freeMb?: number | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The operator's words for a verdict that holds starts back. */
export function waitingForVerdict(verdict: Exclude<Verdict, { open: true }>, concurrency: number): WaitingFor {
  switch (verdict.reason) {
    case 'paused':
      return { reason: 'paused', message: 'the queue is paused' };
    case 'closing':
      return { reason: 'closing', message: 'the service is stopping; it starts after the next start of the service' };
    case 'concurrency':
      return { reason: 'concurrency', limit: concurrency, message: `${concurrency} ${concurrency === 1 ? 'task runs' : 'tasks run'} already (TASKD_CONCURRENCY)` };
    case 'rate':
      return { reason: 'rate', until: iso(verdict.until), message: `the starts-per-minute limit is reached until ${iso(verdict.until)}` };
    case 'load':
      return {
        reason: 'load',
        load: verdict.load,
        limit: verdict.limit,
        message: `the load average ${verdict.load.toFixed(2)} is above ${verdict.limit.toFixed(2)} (${verdict.perCpu ? 'TASKD_MAX_LOAD_PER_CPU' : 'TASKD_MAX_LOAD'})`,
      };
    case 'disk':
      return {
        reason: 'disk',
        path: verdict.path,
        freeMb: verdict.freeMb,
        limit: verdict.limit,
        message: verdict.freeMb === null ? `the free space of ${verdict.path} cannot be read` : `${verdict.path} has ${verdict.freeMb} MB free, less than ${verdict.limit} MB (TASKD_MIN_FREE_DISK)`,
      };
    case 'pause_file':
      return { reason: 'pause_file', path: verdict.path, message: `the pause file ${verdict.path} exists` };
  }
}

export interface AdmissionOptions {
  limits: AdmissionLimits;
  loadAverage?: (() => number) | undefined;
  cpus?: number | undefined;
  /** How soon a start held back by the load, disk or pause-file gate is tried again. */
  loadRecheckMs?: number | undefined;
}

/** Free megabytes for an unprivileged user on the filesystem of a path; null when it cannot be read. */
export function freeDiskMb(path: string): number | null {
  try {
    const s = fs.statfsSync(path);
    return Math.floor((s.bavail * s.bsize) / MB);
  } catch {
    return null;
  }
}

/**
 * Answers "may the next task start now?": paused, the concurrency limit, and the gates of a shared
 * server (a pause file, free disk, load per CPU and in all, the starts-per-minute budget). It holds
 * no timer: the caller looks again when told to.
 */
export class Admission {
  readonly limits: AdmissionLimits;
  readonly #loadAverage: () => number;
  readonly #cpus: number;
  readonly #recheckMs: number;
  readonly #startTimes: number[] = [];
  #paused = false;
  #closing = false;
  /** The gate that held the last start back, cleared by the next start it let through. */
  deferredBy: GateReason | null = null;

  constructor(options: AdmissionOptions) {
    this.limits = options.limits;
    this.#loadAverage = options.loadAverage ?? (() => os.loadavg()[0]!);
    this.#cpus = options.cpus ?? os.availableParallelism();
    this.#recheckMs = options.loadRecheckMs ?? 5_000;
  }

  get paused(): boolean {
    return this.#paused;
  }

  set paused(value: boolean) {
    this.#paused = value;
  }

  get closing(): boolean {
    return this.#closing;
  }

  close(): void {
    this.#closing = true;
  }

  /** Whether a start is allowed at all now, before a task is chosen: nothing is counted or read. */
  hasRoom(running: number): Verdict {
    if (this.#closing) return { open: false, reason: 'closing', recheckInMs: null };
    if (this.#paused) return { open: false, reason: 'paused', recheckInMs: null };
    if (running >= this.limits.concurrency) return { open: false, reason: 'concurrency', recheckInMs: null };
    return { open: true };
  }

  /** The gates a chosen task must pass; reads the pause file, the disk and the load only when they are configured. */
  gates(now: number): Verdict {
    const { pauseFile, minFreeDiskMb, maxStartsPerMinute, maxLoad, maxLoadPerCpu } = this.limits;
    if (pauseFile !== undefined && fs.existsSync(pauseFile)) return { open: false, reason: 'pause_file', path: pauseFile, recheckInMs: this.#recheckMs };
    if (minFreeDiskMb !== undefined) {
      const path = this.limits.diskPath ?? '/';
      const freeMb = freeDiskMb(path);
      // A folder that cannot be read holds starts back too: the operator asked for the guard, and /v1/queue shows why.
      if (freeMb === null || freeMb < minFreeDiskMb) return { open: false, reason: 'disk', path, freeMb, limit: minFreeDiskMb, recheckInMs: this.#recheckMs };
    }
    if (maxStartsPerMinute !== undefined && this.startsInLastMinute(now) >= maxStartsPerMinute) {
      const until = this.#startTimes[0]! + MINUTE;
      return { open: false, reason: 'rate', until, recheckInMs: until - now + 1 };
    }
    if (maxLoad !== undefined || maxLoadPerCpu !== undefined) {
      const load = this.#loadAverage();
      if (maxLoad !== undefined && load > maxLoad) return { open: false, reason: 'load', load, limit: maxLoad, perCpu: false, recheckInMs: this.#recheckMs };
      if (maxLoadPerCpu !== undefined && load / this.#cpus > maxLoadPerCpu) {
        return { open: false, reason: 'load', load, limit: maxLoadPerCpu * this.#cpus, perCpu: true, recheckInMs: this.#recheckMs };
      }
    }
    return { open: true };
  }

  /** The gates as the pump met them: remembered for /v1/queue until a start gets through. */
  check(now: number): Verdict {
    const verdict = this.gates(now);
    this.deferredBy = verdict.open ? null : (verdict.reason as GateReason);
    return verdict;
  }

  recordStart(now: number): void {
    if (this.limits.maxStartsPerMinute !== undefined) this.#startTimes.push(now);
  }

  startsInLastMinute(now: number): number {
    while (this.#startTimes.length > 0 && this.#startTimes[0]! <= now - MINUTE) this.#startTimes.shift();
    return this.#startTimes.length;
  }
}
