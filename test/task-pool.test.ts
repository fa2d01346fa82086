import { describe, expect, it } from 'vitest';
import { TaskPool } from '../src/task-pool.js';
import { waitFor } from './helpers.js';

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

// These pin the better-queue behaviour the scheduler relies on.
describe('TaskPool (better-queue)', () => {
  it('never runs more jobs at once than its concurrency, and starts a waiting job when a slot frees', async () => {
    const pool = new TaskPool(2);
    let running = 0;
    let peak = 0;
    const gates = [deferred(), deferred(), deferred()];
    const started: number[] = [];
    const results = gates.map((gate, i) =>
      pool.run(async () => {
        running += 1;
        peak = Math.max(peak, running);
        started.push(i);
        await gate.promise;
        running -= 1;
        return i;
      }),
    );
    await waitFor(() => started.length === 2);
    expect(started).toEqual([0, 1]);
    gates[0]!.resolve();
    await results[0];
    await waitFor(() => started.length === 3);
    expect(started).toEqual([0, 1, 2]);
    gates[1]!.resolve();
    gates[2]!.resolve();
    expect(await Promise.all(results)).toEqual([0, 1, 2]);
    expect(peak).toBe(2);
    await pool.destroy();
  });

  it('runs a job after one that threw, and hands the error to its caller', async () => {
    const pool = new TaskPool(1);
    await expect(pool.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(pool.run(async () => 'next')).resolves.toBe('next');
    await pool.destroy();
  });

  it('does not merge jobs that were given at the same time (ids are its own)', async () => {
    const pool = new TaskPool(1);
    const seen: string[] = [];
    await Promise.all(['a', 'a', 'b'].map((v) => pool.run(async () => void seen.push(v))));
    expect(seen).toEqual(['a', 'a', 'b']);
    await pool.destroy();
  });
});
