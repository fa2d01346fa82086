import type { z } from 'zod';
import type { activitySchema } from './schemas.js';

/**
 * What the dashboard draws, kept in memory and bounded: the queue depth and running count per slot
 * of the last hour, and how long the last ended tasks waited and ran. It is filled from the event
 * stream's changes, so an idle service adds nothing to it and wakes no timer for it.
 */
// The shapes GET /v1/activity answers with: the schema is their one source.
export type ActivityView = z.infer<typeof activitySchema>;
export type ActivitySlot = ActivityView['slots'][number];
export type TypeDurations = ActivityView['byType'][number];

export interface EndedSample {
  type: string;
  state: string;
  endedAt: number;
  /** From received to started; null for a task that never started. */
  waitMs: number | null;
  /** From started to ended; null for a task that never started. */
  runMs: number | null;
}

const median = (values: number[]): number | null => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : Math.round((sorted[middle - 1]! + sorted[middle]!) / 2);
};

export class EventRing {
  readonly #slotMs: number;
  readonly #spanMs: number;
  readonly #maxEnded: number;
  readonly #slots: ActivitySlot[] = [];
  readonly #ended: EndedSample[] = [];

  constructor({ slotMs = 10_000, spanMs = 3_600_000, maxEnded = 500 } = {}) {
    this.#slotMs = slotMs;
    this.#spanMs = spanMs;
    this.#maxEnded = maxEnded;
  }

  /** The counts as they are now; one slot keeps the highest and the last of its samples. */
  sample(now: number, queued: number, running: number): void {
    const at = now - (now % this.#slotMs);
    const last = this.#slots.at(-1);
    if (last && last.at === at) {
      last.queuedMax = Math.max(last.queuedMax, queued);
      last.runningMax = Math.max(last.runningMax, running);
      last.queued = queued;
      last.running = running;
    } else {
      this.#slots.push({ at, queuedMax: queued, runningMax: running, queued, running });
    }
    // The newest slot before the span stays: it holds the counts the span starts with.
    while (this.#slots.length > 1 && this.#slots[1]!.at < at - this.#spanMs) this.#slots.shift();
  }

  ended(sample: EndedSample): void {
    this.#ended.push(sample);
    if (this.#ended.length > this.#maxEnded) this.#ended.shift();
  }

  /**
   * Every slot of the last span, a slot without a sample carrying the last counts before it (nothing
   * changed in it), and the durations of the ended tasks of the span by task type.
   */
  view(now: number): ActivityView {
    const to = now - (now % this.#slotMs);
    const from = to - this.#spanMs + this.#slotMs;
    const slots: ActivitySlot[] = [];
    let index = 0;
    // The counts before the first slot shown: the newest slot older than the span, or nothing yet.
    let carried = { queued: 0, running: 0 };
    while (index < this.#slots.length && this.#slots[index]!.at < from) carried = this.#slots[index++]!;
    for (let at = from; at <= to; at += this.#slotMs) {
      const slot = this.#slots[index];
      if (slot && slot.at === at) {
        slots.push({ ...slot });
        carried = slot;
        index += 1;
      } else {
        slots.push({ at, queuedMax: carried.queued, runningMax: carried.running, queued: carried.queued, running: carried.running });
      }
    }
    const byType = new Map<string, EndedSample[]>();
    for (const sample of this.#ended) {
      if (sample.endedAt < now - this.#spanMs) continue;
      const list = byType.get(sample.type) ?? [];
      list.push(sample);
      byType.set(sample.type, list);
    }
    return {
      slotMs: this.#slotMs,
      from,
      to,
      slots,
      byType: [...byType.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([type, samples]) => {
          const waits = samples.flatMap((s) => (s.waitMs === null ? [] : [s.waitMs]));
          const runs = samples.flatMap((s) => (s.runMs === null ? [] : [s.runMs]));
          return {
            type,
            count: samples.length,
            waitMedianMs: median(waits),
            waitMaxMs: waits.length ? Math.max(...waits) : null,
            runMedianMs: median(runs),
            runMaxMs: runs.length ? Math.max(...runs) : null,
          };
        }),
    };
  }
}
