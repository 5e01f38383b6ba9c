/**
 * The database connection dropped in the middle of a run (the server restarted, a network blip,
 * an administrator's pg_terminate_backend): `amie process` must stop with exit 2 and one line
 * saying what happened, leave every packet answered or pending (never half-written), and the
 * next run must finish the work without answering anything twice.
 */
import { describe, it, expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Database } from '../../src/db/index.js';
import { SITE } from '../helpers/amie.js';
import { tempDirs } from '../helpers/cli.js';
import { databaseEachTest, driverCase } from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import {
  CRASH_BACKLOG,
  countOutgoing,
  countPending,
  expectConsistentEnd,
  plainLines,
  runAmie,
  scenarioRng,
  seedBacklog,
  sleep,
  writeAmieConfig,
} from '../helpers/reliability.js';

const SLOW_REGISTRY = resolve('test/reliability/fixtures/slow-registry.js');

/**
 * Terminates the backends `amie process` opened (tagged through PGAPPNAME, which the pg driver
 * sends as application_name) that are inside a transaction: running a statement (`active`) or
 * waiting for the handler (`idle in transaction`). An idle pooled connection is not the run's
 * work; dropping it costs nothing and the run rightly goes on.
 */
async function dropRunConnections(
  db: Database,
  database: string,
  app: string,
  state: 'active' | 'idle in transaction',
): Promise<number> {
  // The candidates first (OFFSET 0 keeps the planner from folding the subquery, and with it
  // from calling pg_terminate_backend on rows the other conditions would have excluded).
  const { rows } = await db.query<{ terminated: boolean }>(
    `SELECT pg_terminate_backend(pid) AS terminated FROM (
       SELECT pid FROM pg_stat_activity
        WHERE datname = $1 AND application_name = $2 AND state = $3 AND pid <> pg_backend_pid() OFFSET 0) run`,
    [database, app, state],
  );
  return rows.filter((r) => r.terminated).length;
}

/** Nothing half-written: a completed incoming packet has exactly one reply, a pending one none. */
async function halfWritten(db: Database): Promise<string[]> {
  const { rows } = await db.query<{ packet_rec_id: number; state_id: string; replies: number }>(
    `SELECT p.packet_rec_id, p.state_id::text,
            (SELECT count(*)::int FROM packet_tbl r WHERE r.trans_rec_id = p.trans_rec_id AND r.outgoing_flag = 1) AS replies
       FROM packet_tbl p WHERE p.outgoing_flag = 0`,
  );
  return rows
    .filter((r) => r.replies !== (r.state_id === '1' ? 1 : 0))
    .map((r) => `packet ${r.packet_rec_id}: state ${r.state_id} with ${r.replies} replies`);
}

describe.skipIf(!hasPostgres())(`the database connection lost during amie process${pgSkipNote}`, () => {
  const t = databaseEachTest(driverCase('pg'));
  const tempDir = tempDirs('amie-drop-');
  it('each drop (in a statement, during site work) ends the run with exit 2 and one line; the next run completes, nothing answered twice', async () => {
    const rng = scenarioRng('connection lost');
    const database = new URL(t.url!).pathname.slice(1);
    const dir = tempDir();
    const items = await seedBacklog(t.db, rng, CRASH_BACKLOG);
    const registry = writeAmieConfig(dir, t.url!);
    // Site work that takes a while in a hook: the batch's transaction sits idle meanwhile.
    const slow = join(dir, 'slow.yaml');
    writeFileSync(
      slow,
      [
        `site: { name: ${SITE.name}, resource: ${SITE.resource} }`,
        `database: { url: "${t.url}" }`,
        `handler: { module: "${SLOW_REGISTRY}", options: { delayMs: 20 } }`,
        'log: { level: warn }',
      ].join('\n'),
    );

    const drops = [
      { config: registry, state: 'active' as const, what: 'while a statement runs' },
      { config: slow, state: 'idle in transaction' as const, what: 'while a hook does site work' },
      { config: registry, state: 'active' as const, what: 'while a statement runs' },
      { config: slow, state: 'idle in transaction' as const, what: 'while a hook does site work' },
    ];
    for (const [i, drop] of drops.entries()) {
      const app = `amie-reliability-drop-${i}`;
      const before = await countOutgoing(t.db);
      const run = runAmie(['-c', drop.config, 'process'], { PGAPPNAME: app });
      let exited = false;
      void run.done.then(() => (exited = true));
      // Mid-run: after the run's first commit, and a random while later.
      while (!exited && (await countOutgoing(t.db)) === before) await sleep(5);
      await sleep(rng.int(0, 200));
      // Dropped until the run ends: a backend seen 'active' may have finished its statement (a
      // COMMIT between batches) before the signal reached it, and the run rightly goes on
      // without that idle connection; the next drop then catches a statement.
      let dropped = 0;
      while (!exited) {
        dropped += await dropRunConnections(t.db, database, app, drop.state);
        await sleep(2);
      }
      const r = await run.done;
      const label = `drop ${i + 1} (${drop.what})`;
      expect(dropped, `${label}: the run ended before its connection could be dropped: ${r.stdout}`).toBeGreaterThan(0);
      expect(r.code, `${label}: ${r.stderr.slice(-3000)}`).toBe(2);
      // What the operator reads in the cron mail: one line, saying what to do, no stack trace.
      const lines = plainLines(r.stderr);
      expect(lines, label).toHaveLength(1);
      expect(lines[0], label).toMatch(/^amie: lost the connection to postgres:\/\/\S+ .*run again/);
      expect(await halfWritten(t.db), label).toEqual([]);
    }

    expect(await countPending(t.db)).toBeGreaterThan(0);
    const next = await runAmie(['-c', registry, 'process']).done;
    expect(next.code, next.stderr.slice(-2000)).toBe(0);
    await expectConsistentEnd(t.db, items, rng);
  }, 180_000);
});
