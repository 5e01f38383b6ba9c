import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites that start processes or databases share two cores; keep the pool small.
    maxWorkers: 2,
    // The test files of a worker share its process: each file's imports are loaded once per
    // worker, not once per file (17 s of a 2.5-minute run). So a test that changes process-wide
    // state (process.env, listeners) puts it back when it ends.
    isolate: false,
    // Makes the embedded databases every test starts from, once per run (see test/helpers/db.ts).
    globalSetup: ['test/helpers/pglite-snapshot.ts'],
  },
});
