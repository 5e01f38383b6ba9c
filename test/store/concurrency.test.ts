import { describe, it, expect } from 'vitest';
import { openPg, type Database } from '../../src/db/index.js';
import { MIGRATIONS, getPacket, initDatabase, openTransaction, writePacket } from '../../src/store/index.js';
import { runLockKey } from '../../src/store/run-lock.js';
import { driverCases } from '../helpers/db.js';

const skipNote = (available: boolean) => (available ? '' : ' [skipped: no AMIE_TEST_DATABASE_URL]');

const PER_WRITER = 100;

/** Opens transactions the site originates and writes an NPU in each, as a usage reporter does. */
async function writer(db: Database, name: string): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < PER_WRITER; i++) {
    const id = await db.transaction(async (tx) => {
      const t = await openTransaction(tx, {
        originatingSiteName: 'EXAMPLE',
        localSiteName: 'EXAMPLE',
        remoteSiteName: 'TGCDB',
      });
      await writePacket(tx, {
        transRecId: t.transRecId,
        packetId: 1,
        type: 'notify_project_usage',
        outgoing: true,
        rows: [
          { tag: 'JobIdentity', subtag: 'LocalJobID', seq: 0, value: `${name}-${i}` },
          { tag: 'ProjectID', subtag: null, seq: 0, value: 'abc123' },
        ],
        expectedReply: { type: 'inform_transaction_complete' },
      });
      return t.transactionId;
    });
    ids.push(id);
  }
  return ids;
}

describe.each(driverCases())('store under concurrency on $name', (driver) => {
  const note = skipNote(driver.available);

  // On PGlite the two run interleaved on one backend: the same test, serialised.
  it.skipIf(!driver.available)(
    `two writers opening ${PER_WRITER} transactions each at once never collide${note}`,
    async () => {
      const { db, url, cleanup } = await driver.open();
      const other = url ? await openPg({ url, max: 2 }) : db;
      try {
        await initDatabase(db);
        const [a, b] = await Promise.all([writer(db, 'a'), writer(other, 'b')]);
        const all = [...a, ...b];
        expect(new Set(all).size).toBe(2 * PER_WRITER);
        const { rows } = await db.query<{ n: number; d: number; tx: number }>(
          `SELECT (SELECT count(*) FROM packet_tbl)::int AS n, (SELECT count(*) FROM data_tbl)::int AS d,
                (SELECT count(DISTINCT transaction_id)::int FROM transaction_tbl) AS tx`,
        );
        expect(rows[0]).toEqual({ n: 2 * PER_WRITER, d: 4 * PER_WRITER, tx: 2 * PER_WRITER });
        const p = await getPacket(db, 1);
        expect(p?.rows).toHaveLength(2);
      } finally {
        if (other !== db) await other.close();
        await cleanup();
      }
    },
  );

  it.skipIf(!driver.available)(
    `two initDatabase calls at once both succeed, one creating and one finding the tables${note}`,
    async () => {
      const { db, url, cleanup } = await driver.open();
      const other = url ? await openPg({ url, max: 2 }) : db;
      try {
        const results = await Promise.all([initDatabase(db), initDatabase(other)]);
        expect(results.map((r) => r.amieTables).sort()).toEqual(['created', 'existing']);
        // Every migration applied exactly once, by whichever call got the schema lock first.
        expect(results.flatMap((r) => r.migrationsApplied)).toEqual(MIGRATIONS.map((m) => m.id));
      } finally {
        if (other !== db) await other.close();
        await cleanup();
      }
    },
  );
});

describe('the run lock of a scope', () => {
  it('is one lock for one site and set of resources, whatever their order, case or repeats, and another for any other scope', () => {
    const key = runLockKey({ name: 'EX', resource: 'a.example.org', resources: ['a.example.org', 'b.example.org'] });
    expect(
      runLockKey({
        name: 'EX',
        resource: 'b.example.org',
        resources: ['B.example.org', 'a.example.org', 'b.example.org'],
      }),
    ).toBe(key);
    expect(runLockKey({ name: 'EX', resource: 'a.example.org' })).toBe(
      runLockKey({ name: 'EX', resource: 'a.example.org', resources: ['a.example.org'] }),
    );
    expect(runLockKey({ name: 'EX', resource: 'a.example.org' })).not.toBe(key);
    expect(
      runLockKey({ name: 'OTHER', resource: 'a.example.org', resources: ['a.example.org', 'b.example.org'] }),
    ).not.toBe(key);
    // A key of pg_try_advisory_lock(int, int): a 32-bit signed integer.
    expect(Number.isInteger(key) && key >= -(2 ** 31) && key < 2 ** 31).toBe(true);
  });
});
