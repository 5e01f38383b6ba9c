/**
 * Databases for tests: a fresh one per test on either driver (PGlite in memory, or a new
 * database on the test PostgreSQL server), empty or already initialised like `amie db init`
 * leaves it. PGlite databases start from the dumps test/helpers/pglite-snapshot.ts makes once
 * per run, which skips the seconds initdb takes; outside vitest they are made from scratch.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, openAsBlob } from 'node:fs';
import { afterEach, beforeEach } from 'vitest';
import pg from 'pg';
import { openPg, openPglite, type Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import type { PgliteSnapshots } from './pglite-snapshot.js';
import { PG_URL, hasPostgres } from './env.js';

export interface TestDatabase {
  db: Database;
  /** A URL another process can use for the same database (pg only). */
  url?: string;
  cleanup: () => Promise<void>;
}

export interface OpenOptions {
  /** Create the AMIE tables and apply the toolkit's migrations, as `amie db init` does. */
  init?: boolean;
}

/** A fresh database on the test PostgreSQL server (empty unless `init`), dropped by cleanup(). */
export async function freshPgDatabase(options: OpenOptions = {}): Promise<TestDatabase> {
  const name = `amie_t_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const db = await openPg({ url, max: 8 });
  const t: TestDatabase = {
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
  if (options.init) await initialise(t);
  return t;
}

/** A fresh in-memory PGlite database (empty unless `init`), closed by cleanup(). */
export async function freshPgliteDatabase(options: OpenOptions = {}): Promise<TestDatabase> {
  const from = await pgliteSnapshot(options.init ? 'initialised' : 'empty');
  const db = await openPglite({ from });
  const t: TestDatabase = { db, cleanup: () => db.close() };
  if (options.init && !from) await initialise(t);
  return t;
}

/**
 * Puts an initialised embedded database at `path` (a data directory a test's config names),
 * as `amie db init` would leave it: copied from the run's prepared directory when there is one.
 */
export async function initialisedPgliteDir(path: string): Promise<void> {
  const snapshots = await pgliteSnapshots();
  if (snapshots) {
    cpSync(snapshots.initialisedDir, path, { recursive: true });
    return;
  }
  const db = await openPglite({ path });
  try {
    await initDatabase(db);
  } finally {
    await db.close();
  }
}

async function initialise(t: TestDatabase): Promise<void> {
  try {
    await initDatabase(t.db);
  } catch (err) {
    await t.cleanup();
    throw err;
  }
}

export interface DriverCase {
  name: 'pglite' | 'pg';
  /** False when the server is not configured: the suite is skipped with the reason in its title. */
  available: boolean;
  open(options?: OpenOptions): Promise<TestDatabase>;
}

/** Both drivers, for `describe.each`: PGlite always, PostgreSQL when the environment provides one. */
export function driverCases(): DriverCase[] {
  return [
    { name: 'pglite', available: true, open: freshPgliteDatabase },
    { name: 'pg', available: hasPostgres(), open: freshPgDatabase },
  ];
}

/** One driver by name, for tests that need that one: PGlite (always there) or the PostgreSQL server. */
export function driverCase(name: DriverCase['name']): DriverCase {
  return driverCases().find((d) => d.name === name)!;
}

/** The PostgreSQL server when the environment provides one, else PGlite: for tests that need only one. */
export function preferredDriver(): DriverCase {
  const cases = driverCases();
  return cases.find((d) => d.name === 'pg' && d.available) ?? cases[0]!;
}

/** The database of the test running now; `db` and `url` throw outside a test. */
export interface EachTestDatabase {
  readonly db: Database;
  readonly url: string | undefined;
}

/**
 * Gives every test of the enclosing describe block its own fresh database on `driver`
 * (initialised unless `init: false`), closed or dropped after the test. Nothing is opened
 * when the driver is not available (its tests are skipped).
 */
export function databaseEachTest(driver: DriverCase, options: OpenOptions = {}): EachTestDatabase {
  let current: TestDatabase | undefined;
  beforeEach(async () => {
    if (driver.available) current = await driver.open({ init: options.init ?? true });
  });
  afterEach(async () => {
    const t = current;
    current = undefined;
    await t?.cleanup();
  });
  const open = () => {
    if (!current) throw new Error(`no ${driver.name} test database is open here`);
    return current;
  };
  return {
    get db() {
      return open().db;
    },
    get url() {
      return open().url;
    },
  };
}

let snapshotsOnce: Promise<PgliteSnapshots | undefined> | undefined;
const blobs = new Map<keyof PgliteSnapshots, Promise<Blob>>();

/** The paths the global setup provided, or undefined outside vitest (the benchmarks). */
function pgliteSnapshots(): Promise<PgliteSnapshots | undefined> {
  snapshotsOnce ??= (async () => {
    if (!process.env.VITEST) return undefined;
    const { inject } = await import('vitest');
    return inject('pgliteSnapshots');
  })();
  return snapshotsOnce;
}

async function pgliteSnapshot(kind: 'empty' | 'initialised'): Promise<Blob | undefined> {
  const snapshots = await pgliteSnapshots();
  if (!snapshots) return undefined;
  let blob = blobs.get(kind);
  if (!blob) {
    blob = openAsBlob(snapshots[kind]);
    blobs.set(kind, blob);
  }
  return blob;
}
