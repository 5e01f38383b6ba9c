import { describe, it, expect } from 'vitest';
import { resolve } from 'node:path';
import { type Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { driverCases } from '../helpers/db.js';
import { seedRacs } from '../helpers/amie.js';
import { cliSiteEachTest, runAmie as amie } from '../helpers/cli.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const HANDLER = resolve('test/fixtures/handlers/account-handler.js');

/** Every RAC answered by exactly one NAC, and completed. */
async function expectExactlyOneReplyEach(db: Database, n: number) {
  const { rows } = await db.query<{ incoming_done: number; replies: number; max_per_trans: number; pending: number }>(
    `SELECT (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 1) AS incoming_done,
            (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 1) AS replies,
            (SELECT coalesce(max(c), 0)::int FROM (SELECT count(*) AS c FROM packet_tbl WHERE outgoing_flag = 1 GROUP BY trans_rec_id) x) AS max_per_trans,
            (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 2) AS pending`,
  );
  expect(rows[0]).toEqual({ incoming_done: n, replies: n, max_per_trans: 1, pending: 0 });
}

describe.each(driverCases())('amie process as separate processes on $name', (driver) => {
  const s = cliSiteEachTest(driver, { prefix: 'amie-process-', init: true });
  const writeConfig = (delayMs: number, level = 'warn') =>
    s.site.writeConfig([
      `handler: { module: "${HANDLER}", options: { delayMs: ${delayMs} } }`,
      'process: { batchSize: 10 }',
      `log: { level: ${level} }`,
    ]);
  /** Seeds through a connection the test closes again: the embedded database admits one process at a time. */
  const withDb = <T>(fn: (db: Database) => Promise<T>) => s.site.withDb(fn);

  const run = it.skipIf(!driver.available);

  for (const parallel of [2, 4]) {
    run(`${parallel} runs at once answer every packet exactly once`, async () => {
      const n = driver.name === 'pg' ? 400 : 150;
      await withDb(async (db) => {
        await initDatabase(db);
        await seedRacs(db, n);
      });
      writeConfig(0);
      const runs = Array.from({ length: parallel }, () => amie(['-c', s.site.config, 'process']));
      const results = await Promise.all(runs.map((r) => r.done));
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      // A run that found another at work says so and answers nothing; every other run says what it answered.
      const answered = results.map((r) =>
        r.stdout.startsWith('another `amie process`') ? 0 : Number(/(\d+) answered/.exec(r.stdout)?.[1] ?? NaN),
      );
      expect(answered.reduce((a, b) => a + b, 0)).toBe(n);
      await withDb((db) => expectExactlyOneReplyEach(db, n));
    });
  }

  // The embedded database's own case (on a server the run lock does this: hostile-concurrency's [12.7]).
  if (driver.name === 'pglite')
    run(
      'a cron run finding the embedded database held by another amie process leaves at once (exit 0, one line); the holder answers',
      async () => {
        await withDb(async (db) => {
          await initDatabase(db);
          await seedRacs(db, 5);
        });
        writeConfig(0, 'info');
        const watching = amie(['-c', s.site.config, 'process', '--watch', '60']);
        const deadline = Date.now() + 30_000;
        while (!watching.stderr().includes('"run finished"') && Date.now() < deadline) await sleep(50);
        const started = Date.now();
        const cron = await amie(['-c', s.site.config, 'process']).done;
        expect(cron.code, cron.stderr).toBe(0);
        expect(Date.now() - started, 'it did not wait for the database').toBeLessThan(20_000);
        expect(cron.stdout).toMatch(
          /^another `amie process` is running \(embedded database .* is held by process \d+ \(process\)\): it answers the pending packets, nothing done here\n$/,
        );
        watching.child.kill('SIGTERM');
        const watched = await watching.done;
        expect(watched.code, watched.stderr).toBe(0);
        expect(watched.stdout).toMatch(/^5 packet\(s\): 5 answered/);
        await withDb((db) => expectExactlyOneReplyEach(db, 5));
      },
    );

  const BACKLOG = 200;

  /**
   * A run on 200 RACs at 25 ms each (five seconds, batches of 10), sent `signal` once it has
   * answered 25 (its log says so at info level, one line a packet), so that the signal lands
   * mid-run, between or within batches. Returns how it ended and how many replies were written.
   */
  async function interruptedRun(signal: NodeJS.Signals) {
    await withDb(async (db) => {
      await initDatabase(db);
      await seedRacs(db, BACKLOG);
    });
    writeConfig(25, 'info');
    const first = amie(['-c', s.site.config, 'process']);
    const answered = () => first.stderr().split('packet reply').length - 1;
    const deadline = Date.now() + 30_000;
    while (answered() < 25 && first.child.exitCode === null && Date.now() < deadline) await sleep(20);
    first.child.kill(signal);
    const ended = await first.done;
    const replies = await withDb(
      async (db) =>
        (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM packet_tbl WHERE outgoing_flag = 1')).rows[0]!.n,
    );
    return { ended, replies };
  }

  /** A clean run after the interrupted one answers the rest, each packet exactly once. */
  async function rerunAnswersTheRest() {
    writeConfig(0);
    const second = await amie(['-c', s.site.config, 'process']).done;
    expect(second.code, second.stderr).toBe(0);
    await withDb((db) => expectExactlyOneReplyEach(db, BACKLOG));
  }

  run('a run killed with SIGKILL in the middle, then rerun: nothing answered twice, nothing lost', async () => {
    const { ended, replies } = await interruptedRun('SIGKILL');
    expect(ended.signal).toBe('SIGKILL');
    expect(replies).toBeGreaterThan(0);
    expect(replies).toBeLessThan(BACKLOG);
    await rerunAnswersTheRest();
  });

  run(
    'SIGTERM in the middle of a backlog ends the run after its batch (exit 0, its summary), not after the backlog',
    async () => {
      // As a service manager stops it.
      const { ended, replies } = await interruptedRun('SIGTERM');
      expect(ended.code, ended.stderr).toBe(0);
      const taken = Number(/^(\d+) packet\(s\): \1 answered/.exec(ended.stdout)?.[1]);
      // The batch in progress was finished (whole batches only), and the backlog was not.
      expect(taken % 10).toBe(0);
      expect(taken).toBeLessThanOrEqual(60);
      expect(replies).toBe(taken);
      await rerunAnswersTheRest();
    },
  );
});
