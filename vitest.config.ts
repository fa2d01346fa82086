import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The fault, flood and crash suite has its own command (npm run test:chaos) and configuration.
    exclude: ['test/chaos/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests spawn real processes and bind real ports; two workers match the two cores CI has.
    maxWorkers: 2,
    // In the forks pool, children's exits reach the test's event loop only after a delay of a second or more, which slows every subprocess test.
    pool: 'threads',
  },
});
