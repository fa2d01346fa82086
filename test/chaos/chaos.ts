import fs from 'node:fs/promises';
import { afterAll } from 'vitest';

/** Counts come from the environment so that CI can run the same checks, smaller. */
function count(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

export const KILL_CYCLES = count('CHAOS_KILL_CYCLES', 30);
export const BAD_REQUESTS = count('CHAOS_BAD_REQUESTS', 10_000);
export const FLOOD = count('CHAOS_FLOOD', 1000);
/** Connections that send their body a byte at a time, and clients following one task's log. */
export const SLOW_CLIENTS = count('CHAOS_SLOW_CLIENTS', 2000);
export const FOLLOWERS = count('CHAOS_FOLLOWERS', 2000);
/** One seed for every random choice of a run, printed in the summary so that a failure can be replayed. */
export const SEED = count('CHAOS_SEED', 1 + Math.floor(Math.random() * 2 ** 31));

/** mulberry32: small, seedable, good enough to pick delays and lanes. */
export function random(seed = SEED): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const lines: string[] = [];

/** Adds a line to this file's summary; the lines are printed once all its tests ran, passed or not. */
export function summary(line: string): void {
  lines.push(`chaos: ${line}`);
}

export function printSummaryAfterAll(): void {
  afterAll(() => {
    // Straight to stdout, outside vitest's per-test console capture, so the lines read as one block at the end.
    for (const line of lines.splice(0)) process.stdout.write(`${line}\n`);
  });
}

/** Alive and not a zombie. A reaped-late zombie has no code left to run, so it is no survivor. */
export async function isRunningProcess(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Resident memory of a process, in KiB. */
export async function rssKiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}

/** The sum of the samples of a Prometheus counter or gauge that carry these labels (every series is there from the start, at 0). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = new Map([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (wanted.every(([k, v]) => present.get(k) === v)) sum += Number(match[3]);
  }
  return sum;
}

/** Open file descriptors of a process. */
export async function descriptors(pid: number): Promise<number> {
  return (await fs.readdir(`/proc/${pid}/fd`)).length;
}

/** CPU time a process has used (user and system), in milliseconds. */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime, in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export const seconds = (startedAt: number) => ((Date.now() - startedAt) / 1000).toFixed(1);
