import { MinHeap } from './min-heap.js';

/** What the lane queue needs of a queued thing: its order key and nid, and the lane it was placed in. */
export interface LaneItem {
  nid: number;
  orderKey: number;
  lane: string | null;
}

interface Lane<T> {
  key: string;
  heap: MinHeap<T>;
  /** The items still waiting in the lane; heap entries not in here left it and are skipped lazily. */
  waiting: Set<T>;
  /** The item that owns the lane: running, or waiting to be retried. */
  holder: T | null;
}

interface ReadyEntry<T> {
  lane: Lane<T>;
  head: T;
}

const before = (a: LaneItem, b: LaneItem) => a.orderKey < b.orderKey || (a.orderKey === b.orderKey && a.nid < b.nid);

/**
 * Lanes (one per rid: a site, platform or server) and the heap of lanes ready to start their head.
 * One holder per lane; oldest first within a lane and across lane heads. Both heaps delete lazily,
 * so placing, taking and dropping cost O(log n) however long the queue is. A pure data structure:
 * no timers, no I/O, no knowledge of what a task does.
 */
export class LaneQueue<T extends LaneItem> {
  readonly #lanes = new Map<string, Lane<T>>();
  readonly #ready = new MinHeap<ReadyEntry<T>>((a, b) => before(a.head, b.head));

  get laneCount(): number {
    return this.#lanes.size;
  }

  /** Puts an item at its place in a lane; it becomes ready when it is the lane's head and the lane has no holder. */
  place(item: T, key: string): void {
    item.lane = key;
    const lane = this.#laneFor(key);
    lane.heap.push(item);
    lane.waiting.add(item);
    if (lane.holder === null && this.#headOf(lane) === item) this.#ready.push({ lane, head: item });
  }

  /** The next item that may start (the oldest head of a lane without holder), left in place. */
  peek(): T | undefined {
    for (;;) {
      const entry = this.#ready.peek();
      if (!entry) return undefined;
      const { lane, head } = entry;
      if (this.#lanes.get(lane.key) === lane && lane.holder === null && this.#headOf(lane) === head) return head;
      this.#ready.pop();
    }
  }

  /** Takes the next item out of its lane and makes it the lane's holder. */
  take(): T | undefined {
    const item = this.peek();
    if (item === undefined) return undefined;
    this.#ready.pop();
    const lane = this.#lanes.get(item.lane!)!;
    lane.heap.pop();
    lane.waiting.delete(item);
    lane.holder = item;
    return item;
  }

  /** Makes an item the holder of a lane without queuing it (a child that runs already); false when the lane has another holder. */
  hold(item: T, key: string): boolean {
    const lane = this.#laneFor(key);
    if (lane.holder !== null && lane.holder !== item) return false;
    item.lane = key;
    lane.holder = item;
    return true;
  }

  /** Lets the lane's holder go; the lane's next item becomes ready. */
  release(item: T): void {
    const lane = this.#laneOf(item);
    if (!lane || lane.holder !== item) return;
    lane.holder = null;
    this.#afterChange(lane);
  }

  /** Puts a holder back at the head of its own lane (a retry that is due), so that nothing overtakes it. */
  requeueHolder(item: T): boolean {
    const lane = this.#laneOf(item);
    if (!lane || lane.holder !== item) return false;
    lane.holder = null;
    this.place(item, lane.key);
    // An older item may have joined while the holder held the lane: it is the head to offer, not this one.
    this.#afterChange(lane);
    return true;
  }

  /** Takes an item out, waiting or holding; the lane is forgotten once it is empty. */
  drop(item: T): void {
    const lane = this.#laneOf(item);
    if (!lane) return;
    if (lane.holder === item) {
      this.release(item);
      return;
    }
    if (!lane.waiting.delete(item)) return;
    this.#afterChange(lane);
  }

  /** What stands before an item in its lane: the holder, else the head when that is another item; null when it is next. */
  ahead(item: T): T | null {
    const lane = this.#laneOf(item);
    if (!lane || lane.holder === item) return null;
    if (lane.holder !== null) return lane.holder;
    const head = this.#headOf(lane);
    return head === undefined || head === item ? null : head;
  }

  isHolder(item: T): boolean {
    return this.#laneOf(item)?.holder === item;
  }

  /** Lanes in the order they were made, with how many wait and who holds each. */
  snapshot(limit: number): Array<{ lane: string; queued: number; holder: T | null }> {
    const out = [];
    for (const lane of this.#lanes.values()) {
      if (out.length >= limit) break;
      out.push({ lane: lane.key, queued: lane.waiting.size, holder: lane.holder });
    }
    return out;
  }

  #laneFor(key: string): Lane<T> {
    let lane = this.#lanes.get(key);
    if (!lane) {
      lane = { key, heap: new MinHeap<T>(before), waiting: new Set(), holder: null };
      this.#lanes.set(key, lane);
    }
    return lane;
  }

  #laneOf(item: T): Lane<T> | undefined {
    return item.lane === null ? undefined : this.#lanes.get(item.lane);
  }

  /** A lane without holder offers its head again, or is forgotten when nothing is left in it. */
  #afterChange(lane: Lane<T>): void {
    if (lane.holder !== null) return;
    const head = this.#headOf(lane);
    if (head) this.#ready.push({ lane, head });
    else this.#lanes.delete(lane.key);
  }

  /** The oldest waiting item of a lane; entries of items that left it are discarded on the way. */
  #headOf(lane: Lane<T>): T | undefined {
    for (;;) {
      const top = lane.heap.peek();
      if (top === undefined) return undefined;
      if (lane.waiting.has(top) && top.lane === lane.key) return top;
      lane.heap.pop();
    }
  }
}
