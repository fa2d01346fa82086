/**
 * Remembers accepted webhook ids for a while so a replay is answered as a duplicate and does nothing.
 * Entries are kept in insertion order, which is also expiry order, so pruning only ever looks at the oldest.
 */
export class ReplayCache<T> {
  readonly #entries = new Map<string, { value: T; expiresAt: number }>();

  constructor(
    private readonly ttlMs = 10 * 60_000,
    private readonly maxEntries = 200_000,
  ) {}

  get(id: string, now = Date.now()): T | undefined {
    this.#prune(now);
    return this.#entries.get(id)?.value;
  }

  remember(id: string, value: T, now = Date.now()): void {
    this.#prune(now);
    this.#entries.delete(id);
    this.#entries.set(id, { value, expiresAt: now + this.ttlMs });
    // Past the cap the oldest go first; the timestamp tolerance and nid dedupe still stop those from running anything twice.
    while (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  get size(): number {
    return this.#entries.size;
  }

  #prune(now: number): void {
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt > now) break;
      this.#entries.delete(id);
    }
  }
}
