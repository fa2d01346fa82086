import { describe, expect, it } from 'vitest';
import { EventRing } from '../src/event-ring.js';

const T0 = 1_800_000_000_000; // on a slot boundary of 10 s

describe('EventRing', () => {
  it('keeps the highest and the last count of each slot, and carries the last counts over slots without a change', () => {
    const ring = new EventRing({ slotMs: 10_000, spanMs: 60_000 });
    ring.sample(T0 + 1_000, 5, 1);
    ring.sample(T0 + 2_000, 9, 2);
    ring.sample(T0 + 9_000, 3, 1);
    ring.sample(T0 + 31_000, 0, 0);
    const view = ring.view(T0 + 45_000);
    expect(view.slots.map((s) => s.at - T0)).toEqual([-10_000, 0, 10_000, 20_000, 30_000, 40_000]);
    expect(view.slots.map((s) => [s.queuedMax, s.runningMax, s.queued, s.running])).toEqual([
      [0, 0, 0, 0],
      [9, 2, 3, 1],
      [3, 1, 3, 1],
      [3, 1, 3, 1],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]);
  });

  it('forgets slots older than its span, but still starts the span from the counts before it', () => {
    const ring = new EventRing({ slotMs: 10_000, spanMs: 30_000 });
    ring.sample(T0, 7, 1);
    const view = ring.view(T0 + 100_000);
    expect(view.slots).toHaveLength(3);
    expect(view.slots.every((s) => s.queued === 7 && s.running === 1)).toBe(true);
    ring.sample(T0 + 200_000, 2, 0);
    expect(ring.view(T0 + 200_000).slots.map((s) => s.queued)).toEqual([7, 7, 2]);
  });

  it('gives the median and the longest wait and run of the span by task type, over the last maxEnded tasks only', () => {
    const ring = new EventRing({ slotMs: 10_000, spanMs: 3_600_000, maxEnded: 4 });
    ring.ended({ type: 'verify', state: 'succeeded', endedAt: T0, waitMs: 999_999, runMs: 999_999 }); // pushed out by the four below
    for (const [wait, run] of [
      [10, 100],
      [30, 300],
      [20, 200],
    ])
      ring.ended({ type: 'verify', state: 'succeeded', endedAt: T0, waitMs: wait!, runMs: run! });
    ring.ended({ type: 'backup', state: 'cancelled', endedAt: T0, waitMs: null, runMs: null });
    expect(ring.view(T0 + 1000).byType).toEqual([
      { type: 'backup', count: 1, waitMedianMs: null, waitMaxMs: null, runMedianMs: null, runMaxMs: null },
      { type: 'verify', count: 3, waitMedianMs: 20, waitMaxMs: 30, runMedianMs: 200, runMaxMs: 300 },
    ]);
    expect(ring.view(T0 + 3_600_001).byType).toEqual([]);
  });
});
