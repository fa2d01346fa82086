import { defineConfig } from 'vitest/config';

// The chaos suite: long, process-heavy checks of crash safety, hostile input, floods, runaway
// children, frontend faults, slow and long-lived clients. Counts come from CHAOS_KILL_CYCLES, CHAOS_BAD_REQUESTS,
// CHAOS_FLOOD, CHAOS_SLOW_CLIENTS and CHAOS_FOLLOWERS.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    // Timings and memory are measured per file: two workers match the two cores CI has, and keep one file's load off another's numbers as far as that goes.
    maxWorkers: 2,
    // As in vitest.config.ts: in the forks pool, child exits reach the test only after a delay.
    pool: 'threads',
  },
});
