import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites that start processes or databases: a small pool. Many tests spend part of their
    // time waiting on the processes they started, so on a 2-core machine a third worker keeps
    // both cores busy (a bare clone's run: 116 s with two workers, 106 s with three).
    maxWorkers: 3,
    // The test files of a worker share its process: each file's imports are loaded once per
    // worker, not once per file (17 s of a 2.5-minute run). So a test that changes process-wide
    // state (process.env, listeners) puts it back when it ends.
    isolate: false,
    // --expose-gc: so that memory tests can measure what is held rather than the garbage other
    // files left in the shared heap (test/usage/sacct.test.ts). --no-liftoff-only: a worker opens
    // hundreds of embedded databases, and PostgreSQL's WebAssembly optimised once serves them all
    // (see compilePgliteBaselineOnly).
    execArgv: ['--expose-gc', '--no-liftoff-only'],
    // Makes the embedded databases every test starts from, once per run (see test/helpers/db.ts).
    globalSetup: ['test/helpers/pglite-snapshot.ts'],
  },
});
