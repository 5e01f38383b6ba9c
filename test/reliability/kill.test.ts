/**
 * A crash at any moment loses nothing and answers nothing twice: `amie process` with the registry
 * handler is killed with SIGKILL at random moments while 1,000 transactions are pending, then a
 * clean run finishes the work, and the conversations and the registry are checked as a whole.
 */
import { describe, it, expect } from 'vitest';
import { tempDirs } from '../helpers/cli.js';
import { databaseEachTest, driverCase } from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import {
  CRASH_BACKLOG,
  countCompleted,
  countPending,
  expectConsistentEnd,
  plainLines,
  runAmie,
  scenarioRng,
  seedBacklog,
  sleep,
  writeAmieConfig,
} from '../helpers/reliability.js';

const TRANSACTIONS = CRASH_BACKLOG.transactions;
const KILLS = 20;

describe.skipIf(!hasPostgres())(`amie process killed with SIGKILL${pgSkipNote}`, () => {
  const t = databaseEachTest(driverCase('pg'));
  const tempDir = tempDirs('amie-kill-');
  it(`${KILLS} kills at random moments while ${TRANSACTIONS} transactions are pending, then a clean run: every packet answered once, registry consistent`, async () => {
    const rng = scenarioRng('kill -9');
    const dir = tempDir();
    const items = await seedBacklog(t.db, rng, CRASH_BACKLOG);
    // Each run gets a random batch size and one of two kinds of kill: a quarter of them at a
    // random moment from spawn (start-up, migrations check, first claim, first batch), the
    // others after the run's first commit plus a random part of a batch's time (inside the
    // handler, the reply statement, the commit, between batches). Batches shrink as the
    // backlog does, so that every kill still finds work pending.
    const trail: string[] = [];
    let landed = 0;
    for (let i = 0; i < KILLS; i++) {
      const pending = await countPending(t.db);
      const done = TRANSACTIONS - pending;
      const batchSize = Math.max(1, Math.min(rng.pick([1, 5, 10, 25, 50, 100]), Math.floor(pending / (KILLS - i))));
      const early = rng.chance(0.25);
      // The kill comes within start-up and a first batch or two: a longer wait let a fast run
      // finish the whole backlog, leaving the kills after it nothing to hit.
      const delayMs = early ? rng.int(0, 600) : rng.int(0, Math.min(batchSize * 4, 60));
      const run = runAmie(['-c', writeAmieConfig(dir, t.url!, { batchSize }), 'process']);
      let exited = false;
      void run.done.then(() => (exited = true));
      if (!early) while (!exited && (await countCompleted(t.db)) === done) await sleep(5);
      await sleep(delayMs);
      run.child.kill('SIGKILL');
      const r = await run.done;
      const after = await countCompleted(t.db);
      if (r.signal === 'SIGKILL' && after < TRANSACTIONS) landed++;
      // A run that got to the end before its kill must have ended normally.
      if (r.signal !== 'SIGKILL')
        expect(r.code, `run ${i + 1} ended by itself: ${plainLines(r.stderr).join(' | ')}`).toBe(0);
      trail.push(
        `${done}→${after} [batch ${batchSize}, ${early ? 'spawn' : 'commit'}+${delayMs}ms${r.signal === 'SIGKILL' ? '' : ', finished'}]`,
      );
    }
    console.log(`[reliability] kill -9: completed packets before→after each killed run: ${trail.join(', ')}`);
    // The kills must have hit live runs with work left, or the test proved nothing.
    expect(landed, trail.join(', ')).toBeGreaterThanOrEqual(KILLS - 2);

    const clean = await runAmie(['-c', writeAmieConfig(dir, t.url!), 'process']).done;
    expect(clean.code, clean.stderr.slice(-2000)).toBe(0);
    await expectConsistentEnd(t.db, items, rng);
  }, 240_000);
});
