import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LaneQueue, type LaneItem } from '../src/lane-queue.js';

const item = (nid: number, orderKey = nid): LaneItem => ({ nid, orderKey, lane: null });

describe('LaneQueue', () => {
  it('offers the oldest head across lanes, and only one holder per lane', () => {
    const q = new LaneQueue<LaneItem>();
    const [a1, a2, b1] = [item(1, 30), item(2, 10), item(3, 20)];
    q.place(a1, 'rid:1');
    q.place(a2, 'rid:1');
    q.place(b1, 'rid:2');
    expect(q.take()).toBe(a2);
    // rid:1 is held by a2 now, so its next task waits although it is older than nothing else.
    expect(q.take()).toBe(b1);
    expect(q.take()).toBeUndefined();
    q.release(a2);
    expect(q.take()).toBe(a1);
  });

  it('orders equal keys by nid', () => {
    const q = new LaneQueue<LaneItem>();
    for (const nid of [5, 3, 4]) q.place(item(nid, 100), `nid:${nid}`);
    expect([q.take()?.nid, q.take()?.nid, q.take()?.nid]).toEqual([3, 4, 5]);
  });

  it('peeks without taking', () => {
    const q = new LaneQueue<LaneItem>();
    const a = item(1);
    q.place(a, 'rid:1');
    expect(q.peek()).toBe(a);
    expect(q.peek()).toBe(a);
    expect(q.snapshot(10)).toEqual([{ lane: 'rid:1', queued: 1, holder: null }]);
    expect(q.take()).toBe(a);
    expect(q.snapshot(10)).toEqual([{ lane: 'rid:1', queued: 0, holder: a }]);
  });

  it('drops a waiting item so that it is never offered, and forgets an empty lane', () => {
    const q = new LaneQueue<LaneItem>();
    const [a, b] = [item(1), item(2)];
    q.place(a, 'rid:1');
    q.place(b, 'rid:1');
    q.drop(a);
    expect(q.take()).toBe(b);
    q.release(b);
    expect(q.laneCount).toBe(0);
  });

  it('keeps a lane for its holder until released, and puts a requeued holder back at the head', () => {
    const q = new LaneQueue<LaneItem>();
    const [a, b] = [item(1), item(2)];
    q.place(a, 'rid:1');
    q.place(b, 'rid:1');
    expect(q.take()).toBe(a);
    expect(q.requeueHolder(a)).toBe(true);
    expect(q.requeueHolder(a)).toBe(false);
    expect(q.take()).toBe(a);
    q.drop(a);
    expect(q.isHolder(a)).toBe(false);
    expect(q.take()).toBe(b);
  });

  it('offers an older item that joined while the lane was held, when the holder is put back for its retry', () => {
    const q = new LaneQueue<LaneItem>();
    const retrying = item(1, 200);
    q.place(retrying, 'rid:5');
    expect(q.take()).toBe(retrying);
    const older = item(2, 150);
    q.place(older, 'rid:5');
    q.requeueHolder(retrying);
    expect(q.take()).toBe(older);
  });

  it('refuses to give a held lane a second holder', () => {
    const q = new LaneQueue<LaneItem>();
    const [a, b] = [item(1), item(2)];
    expect(q.hold(a, 'rid:1')).toBe(true);
    expect(q.hold(b, 'rid:1')).toBe(false);
    expect(q.isHolder(a)).toBe(true);
  });

  it('holds a lane for an item that never queued (an adopted child)', () => {
    const q = new LaneQueue<LaneItem>();
    const [adopted, next] = [item(9), item(1)];
    q.hold(adopted, 'rid:4');
    q.place(next, 'rid:4');
    expect(q.take()).toBeUndefined();
    q.release(adopted);
    expect(q.take()).toBe(next);
  });

  it('hands out every placed item exactly once, in lane order, whatever is dropped', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ lane: fc.integer({ min: 1, max: 4 }), key: fc.integer({ min: 0, max: 20 }), drop: fc.boolean() }), { maxLength: 60 }),
        (specs) => {
          const q = new LaneQueue<LaneItem>();
          const items = specs.map((s, i) => ({ ...item(i + 1, s.key), spec: s }));
          for (const it of items) q.place(it, `rid:${it.spec.lane}`);
          for (const it of items) if (it.spec.drop) q.drop(it);
          const taken: typeof items = [];
          for (let next = q.take(); next; next = q.take()) {
            taken.push(next as (typeof items)[number]);
            q.release(next);
          }
          const kept = items.filter((it) => !it.spec.drop);
          expect(taken.map((t) => t.nid).sort((x, y) => x - y)).toEqual(kept.map((t) => t.nid));
          for (const lane of [1, 2, 3, 4]) {
            const order = taken.filter((t) => t.spec.lane === lane);
            for (let i = 1; i < order.length; i += 1) {
              const [p, c] = [order[i - 1]!, order[i]!];
              expect(p.orderKey < c.orderKey || (p.orderKey === c.orderKey && p.nid < c.nid)).toBe(true);
            }
          }
          expect(q.laneCount).toBe(0);
        },
      ),
    );
  });
});
