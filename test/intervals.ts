import type { RunRecord } from './helpers.js';

/** Runs as record-run.sh records them, and checks on how they overlapped in time. */
export interface Interval {
  nid: number;
  start: bigint;
  end: bigint;
}

/** Pairs record-run.sh's start and end lines by pid; a start without an end is a run still going or killed. */
export function intervals(records: RunRecord[]): Interval[] {
  const open = new Map<number, { nid: number; at: bigint }>();
  const out: Interval[] = [];
  for (const r of records) {
    if (r.event === 'start') open.set(r.pid, { nid: r.nid, at: r.at });
    else {
      const start = open.get(r.pid);
      if (start) out.push({ nid: r.nid, start: start.at, end: r.at });
      open.delete(r.pid);
    }
  }
  return out;
}

export function groupBy<T, K>(list: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const map = new Map<K, T[]>();
  for (const item of list) {
    const k = key(item);
    const group = map.get(k);
    if (group) group.push(item);
    else map.set(k, [item]);
  }
  return map;
}

/** The largest number of intervals open at one instant; an end and a start at the same instant do not overlap. */
export function peakOverlap<T extends { start: bigint | number; end: bigint | number }>(list: readonly T[]): number {
  const events = list.flatMap((i) => [
    { at: BigInt(i.start), delta: 1 },
    { at: BigInt(i.end), delta: -1 },
  ]);
  events.sort((a, b) => (a.at === b.at ? a.delta - b.delta : a.at < b.at ? -1 : 1));
  let open = 0;
  let peak = 0;
  for (const e of events) {
    open += e.delta;
    peak = Math.max(peak, open);
  }
  return peak;
}

/** Pairs of intervals in one group that overlap: 0 when the group ran one at a time. */
export function overlappingPairs<T extends { start: bigint | number; end: bigint | number }>(list: readonly T[]): number {
  const sorted = [...list].sort((a, b) => (BigInt(a.start) < BigInt(b.start) ? -1 : BigInt(a.start) > BigInt(b.start) ? 1 : 0));
  let pairs = 0;
  let latestEnd: bigint | null = null;
  for (const i of sorted) {
    if (latestEnd !== null && BigInt(i.start) < latestEnd) pairs += 1;
    latestEnd = latestEnd === null || BigInt(i.end) > latestEnd ? BigInt(i.end) : latestEnd;
  }
  return pairs;
}
