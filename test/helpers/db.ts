import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openPg, openPglite, type Database } from '../../src/db/index.js';
import { PG_URL, hasPostgres } from './env.js';

export interface TestDatabase {
  db: Database;
  /** A URL another process can use for the same database (pg only). */
  url?: string;
  cleanup: () => Promise<void>;
}

/** A fresh, empty database on the test PostgreSQL server, dropped by cleanup(). */
export async function freshPgDatabase(): Promise<TestDatabase> {
  const name = `amie_t_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const db = await openPg({ url, max: 8 });
  return {
    db,
    url,
    async cleanup() {
      await db.close().catch(() => {});
      const a = new pg.Client({ connectionString: PG_URL });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

export async function freshPgliteDatabase(): Promise<TestDatabase> {
  const db = await openPglite();
  return { db, cleanup: () => db.close() };
}

export interface DriverCase {
  name: 'pglite' | 'pg';
  /** False when the server is not configured: the suite is skipped with the reason in its title. */
  available: boolean;
  open(): Promise<TestDatabase>;
}

/** Both drivers, for `describe.each`: PGlite always, PostgreSQL when the environment provides one. */
export function driverCases(): DriverCase[] {
  return [
    { name: 'pglite', available: true, open: freshPgliteDatabase },
    { name: 'pg', available: hasPostgres(), open: freshPgDatabase },
  ];
}
