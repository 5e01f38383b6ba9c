import { describe, it, expect } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, openPglite, openPg, DatabaseError, DatabaseInUse } from '../src/db/index.js';
import { driverCases } from './helpers/db.js';

describe.each(driverCases())('database driver $name', (driver) => {
  it.skipIf(!driver.available)(
    `runs queries and transactions${driver.available ? '' : ' [skipped: no PostgreSQL server]'}`,
    async () => {
      const { db, cleanup } = await driver.open();
      try {
        await db.exec('CREATE TABLE t (id int primary key, v text); CREATE INDEX t_v ON t (v);');
        await db.query('INSERT INTO t VALUES ($1, $2)', [1, 'a']);
        await db.transaction(async (tx) => {
          await tx.query('INSERT INTO t VALUES ($1, $2)', [2, 'b']);
        });
        await expect(
          db.transaction(async (tx) => {
            await tx.query('INSERT INTO t VALUES ($1, $2)', [3, 'c']);
            throw new Error('boom');
          }),
        ).rejects.toThrow('boom');
        const { rows } = await db.query<{ id: number }>('SELECT id FROM t ORDER BY id');
        expect(rows.map((r) => r.id)).toEqual([1, 2]);
        const upd = await db.query('UPDATE t SET v = $1', ['z']);
        expect(upd.rowCount).toBe(2);
        expect(db.roundTrips).toBeGreaterThan(5);
      } finally {
        await cleanup();
      }
    },
  );
});

describe('openDatabase', () => {
  it('opens an embedded database at database.path, and AMIE_DATABASE_URL overrides the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amie-db-'));
    try {
      const db = await openDatabase({ path: join(dir, 'db') }, {});
      expect(db.kind).toBe('pglite');
      await db.close();
      await expect(
        openDatabase({ path: join(dir, 'db') }, { AMIE_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' }),
      ).rejects.toThrow(/cannot use database postgres:\/\/nobody@127\.0\.0\.1:1\/none: connection refused/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never shows a password in its errors', async () => {
    const err = await openPg({ url: 'postgres://u:s3cret@127.0.0.1:1/x', connectTimeoutMs: 2000 }).catch((e) => e);
    expect(err).toBeInstanceOf(DatabaseError);
    expect(err.message).not.toContain('s3cret');
  });

  it('refuses a second process on the same embedded directory while the first holds it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amie-db-'));
    try {
      const path = join(dir, 'db');
      const first = await openPglite({ path });
      // Same process, but the lock file is what another process would see.
      await expect(openPglite({ path, lockWaitMs: 200 })).rejects.toThrow(/in use by process/);
      await first.close();
      const again = await openPglite({ path, lockWaitMs: 200 });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('does not wait for a holder in the same role when asked to leave then (an amie process run), and waits for any other', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amie-db-'));
    try {
      const path = join(dir, 'db');
      const run = await openPglite({ path, role: 'process' });
      const started = Date.now();
      const err: unknown = await openPglite({
        path,
        role: 'process',
        leaveIfHeldInRole: true,
        lockWaitMs: 30_000,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatabaseInUse);
      expect((err as Error).message).toMatch(/is held by process \d+ \(process\)$/);
      expect(Date.now() - started, 'it did not wait').toBeLessThan(5_000);
      // Another role, or none, waits as before (and gives up after its wait).
      await expect(openPglite({ path, role: 'status', leaveIfHeldInRole: true, lockWaitMs: 200 })).rejects.toThrow(
        /in use by process/,
      );
      await expect(openPglite({ path, role: 'process', lockWaitMs: 200 })).rejects.toThrow(/in use by process/);
      await run.close();
      // A holder in no role is waited for even by one that would leave.
      const plain = await openPglite({ path });
      await expect(
        openPglite({ path, role: 'process', leaveIfHeldInRole: true, lockWaitMs: 200 }),
      ).rejects.not.toBeInstanceOf(DatabaseInUse);
      await plain.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
