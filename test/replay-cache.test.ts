import { describe, expect, it } from 'vitest';
import { ReplayCache } from '../src/replay-cache.js';

describe('ReplayCache', () => {
  it('remembers an id for ten minutes, then forgets it', () => {
    const cache = new ReplayCache<number>();
    cache.remember('a', 1, 0);
    expect(cache.get('a', 10 * 60_000 - 1)).toBe(1);
    expect(cache.get('a', 10 * 60_000)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('keeps at most maxEntries, dropping the oldest', () => {
    const cache = new ReplayCache<number>(60_000, 3);
    for (let i = 0; i < 5; i += 1) cache.remember(`id${i}`, i, 0);
    expect(cache.size).toBe(3);
    expect(cache.get('id0', 1)).toBeUndefined();
    expect(cache.get('id4', 1)).toBe(4);
  });
});
