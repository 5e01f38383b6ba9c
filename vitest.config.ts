import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites that start processes or databases share two cores; keep the pool small.
    maxWorkers: 2,
    // Makes the embedded databases every test starts from, once per run (see test/helpers/db.ts).
    globalSetup: ['test/helpers/pglite-snapshot.ts'],
  },
});
