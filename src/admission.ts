import os from 'node:os';

const MINUTE = 60_000;

export interface AdmissionLimits {
  concurrency: number;
  maxStartsPerMinute?: number | undefined;
  maxLoad?: number | undefined;
}

/** Why the next task may not start now, and when it is worth looking again (null: when something else changes). */
export type Verdict =
  | { open: true }
  | { open: false; reason: 'paused' | 'closing' | 'concurrency'; recheckInMs: null }
  | { open: false; reason: 'rate'; until: number; recheckInMs: number }
  | { open: false; reason: 'load'; load: number; recheckInMs: number };

export interface AdmissionOptions {
  limits: AdmissionLimits;
  loadAverage?: (() => number) | undefined;
  /** How soon a start held back by the load limit is tried again. */
  loadRecheckMs?: number | undefined;
}

/**
 * Answers "may the next task start now?": paused, the concurrency limit, the starts-per-minute
 * budget and the load limit. It holds no timer: the caller looks again when told to.
 */
export class Admission {
  readonly limits: AdmissionLimits;
  readonly #loadAverage: () => number;
  readonly #loadRecheckMs: number;
  readonly #startTimes: number[] = [];
  #paused = false;
  #closing = false;
  /** The gate (rate or load) that held the last start back, cleared by the next start it let through. */
  deferredBy: 'rate' | 'load' | null = null;

  constructor(options: AdmissionOptions) {
    this.limits = options.limits;
    this.#loadAverage = options.loadAverage ?? (() => os.loadavg()[0]!);
    this.#loadRecheckMs = options.loadRecheckMs ?? 5_000;
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

  /** The gates a chosen task must pass: the start-rate budget and the load limit. */
  gates(now: number): Verdict {
    const max = this.limits.maxStartsPerMinute;
    if (max !== undefined && this.startsInLastMinute(now) >= max) {
      this.deferredBy = 'rate';
      const until = this.#startTimes[0]! + MINUTE;
      return { open: false, reason: 'rate', until, recheckInMs: until - now + 1 };
    }
    const maxLoad = this.limits.maxLoad;
    if (maxLoad !== undefined) {
      const load = this.#loadAverage();
      if (load > maxLoad) {
        this.deferredBy = 'load';
        return { open: false, reason: 'load', load, recheckInMs: this.#loadRecheckMs };
      }
    }
    this.deferredBy = null;
    return { open: true };
  }

  recordStart(now: number): void {
    if (this.limits.maxStartsPerMinute !== undefined) this.#startTimes.push(now);
  }

  startsInLastMinute(now: number): number {
    while (this.#startTimes.length > 0 && this.#startTimes[0]! <= now - MINUTE) this.#startTimes.shift();
    return this.#startTimes.length;
  }
}
