/**
 * Databases for tests: a fresh one per test on either driver (embedded PGlite, or a new
 * database on the test PostgreSQL server), empty or already initialised like `amie db init`
 * leaves it. PGlite databases are copies of the ones test/helpers/pglite-snapshot.ts prepares
 * once per run, which skips the seconds initdb takes; outside vitest they are made from scratch.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, openAsBlob, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach } from 'vitest';
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

/**
 * A fresh embedded database (empty unless `init`), closed by cleanup(): a copy of the run's
 * prepared one, as a data directory in a temporary directory of its own (removed by cleanup)
 * or loaded into memory, whichever costs less here (PgliteSnapshots.copyDirs).
 */
export async function freshPgliteDatabase(options: OpenOptions = {}): Promise<TestDatabase> {
  const snapshots = await pgliteSnapshots();
  const snapshot = snapshots?.[options.init ? 'initialised' : 'empty'];
  if (snapshot && snapshots.copyDirs) {
    const dir = mkdtempSync(join(tmpdir(), 'amie-db-'));
    const remove = () => rmSync(dir, { recursive: true, force: true });
    try {
      cpSync(snapshot.dir, join(dir, 'db'), { recursive: true });
      const db = await openPglite({ path: join(dir, 'db') });
      return { db, cleanup: () => db.close().finally(remove) };
    } catch (err) {
      remove();
      throw err;
    }
  }
  const db = await openPglite(snapshot ? { from: await dumpOf(snapshot.dump) } : {});
  const t: TestDatabase = { db, cleanup: () => db.close() };
  if (options.init && !snapshot) await initialise(t);
  return t;
}

/**
 * Puts an initialised embedded database at `path` (a data directory a test's config names),
 * as `amie db init` would leave it: copied from the run's prepared directory when there is one.
 */
export async function initialisedPgliteDir(path: string): Promise<void> {
  const snapshots = await pgliteSnapshots();
  if (snapshots) {
    cpSync(snapshots.initialised.dir, path, { recursive: true });
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
 * Gives every test of the enclosing describe block a fresh database on `driver` (initialised
 * unless `init: false`). On PostgreSQL each test gets a new database, dropped after it. On
 * PGlite, whose every start costs a tenth of a second or more, the block shares one database
 * that is put back to its start between tests (SharedPglite): the same tables, rows and
 * sequences, the session reset; a test that changed the schema or closed it gets a new one.
 * Nothing is opened when the driver is not available (its tests are skipped).
 */
export function databaseEachTest(driver: DriverCase, options: OpenOptions = {}): EachTestDatabase {
  const init = options.init ?? true;
  const shared = driver.name === 'pglite' ? new SharedPglite(() => driver.open({ init })) : undefined;
  let current: TestDatabase | undefined;
  beforeEach(async () => {
    if (driver.available) current = shared ? await shared.fresh() : await driver.open({ init });
  });
  afterEach(async () => {
    const t = current;
    current = undefined;
    if (!shared) await t?.cleanup();
  });
  afterAll(() => shared?.close());
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

/**
 * Everything a test could have changed outside the rows: relations, columns, constraints,
 * defaults, functions, triggers, types, schemas and roles. Equal before and after a test
 * means the test ran no DDL, so emptying the tables brings the database back to its start.
 */
const SCHEMA_FINGERPRINT = `
  WITH ns AS (SELECT oid FROM pg_namespace
              WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg_toast%')
  SELECT md5(string_agg(d, ',' ORDER BY d)) AS fingerprint FROM (
    SELECT concat_ws(' ', 'c', c.oid, c.relname, c.relkind) FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns)
    UNION ALL
    SELECT concat_ws(' ', 'a', a.attrelid, a.attname, a.atttypid, a.attnotnull, a.atthasdef, a.attisdropped)
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws(' ', 'o', oid) FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws(' ', 'd', oid) FROM pg_attrdef
    UNION ALL SELECT concat_ws(' ', 'p', oid) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws(' ', 't', oid) FROM pg_trigger
    UNION ALL SELECT concat_ws(' ', 'y', oid) FROM pg_type WHERE typnamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws(' ', 'n', oid) FROM ns
    UNION ALL SELECT concat_ws(' ', 'r', oid) FROM pg_roles
  ) AS objects(d)`;

interface Baseline {
  fingerprint: string;
  /** Every table, for one TRUNCATE. */
  tables: string[];
  /** The rows of the tables that had some (the toolkit's migrations, the AMIE code tables). */
  rows: Array<{ table: string; json: string }>;
  sequences: Array<{ name: string; value: string; called: boolean }>;
}

/** One embedded database for a describe block, put back to how it was opened before each test. */
class SharedPglite {
  private t: TestDatabase | undefined;
  private baseline: Baseline | undefined;

  constructor(private readonly open: () => Promise<TestDatabase>) {}

  async fresh(): Promise<TestDatabase> {
    if (this.t && this.baseline && (await this.reset(this.t.db, this.baseline))) return this.t;
    await this.close();
    this.t = await this.open();
    this.baseline = await baselineOf(this.t.db);
    return this.t;
  }

  async close(): Promise<void> {
    const t = this.t;
    this.t = undefined;
    this.baseline = undefined;
    await t?.cleanup().catch(() => {});
  }

  /** False when the database cannot be put back (closed, DDL run, a transaction left open). */
  private async reset(db: Database, b: Baseline): Promise<boolean> {
    try {
      // Ends the session's own state first: settings, temporary tables, advisory locks, prepared statements.
      await db.exec('DISCARD ALL');
      const { rows } = await db.query<{ fingerprint: string }>(SCHEMA_FINGERPRINT);
      if (rows[0]?.fingerprint !== b.fingerprint) return false;
      await db.transaction(async (tx) => {
        await tx.exec(`SET LOCAL session_replication_role = replica`);
        if (b.tables.length) await tx.exec(`TRUNCATE ${b.tables.join(', ')}`);
        for (const r of b.rows) {
          await tx.query(`INSERT INTO ${r.table} SELECT * FROM json_populate_recordset(NULL::${r.table}, $1)`, [
            r.json,
          ]);
        }
        if (b.sequences.length) {
          await tx.query('SELECT setval(s, v, c) FROM unnest($1::text[], $2::bigint[], $3::bool[]) AS x(s, v, c)', [
            b.sequences.map((s) => s.name),
            b.sequences.map((s) => s.value),
            b.sequences.map((s) => s.called),
          ]);
        }
      });
      return true;
    } catch {
      return false;
    }
  }
}

async function baselineOf(db: Database): Promise<Baseline> {
  const { rows: fp } = await db.query<{ fingerprint: string }>(SCHEMA_FINGERPRINT);
  const { rows: tables } = await db.query<{ name: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
     WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
  );
  const rows: Baseline['rows'] = [];
  for (const { name } of tables) {
    const { rows: r } = await db.query<{ json: string | null }>(`SELECT json_agg(t)::text AS json FROM ${name} t`);
    if (r[0]?.json) rows.push({ table: name, json: r[0].json });
  }
  const { rows: sequences } = await db.query<{ name: string; value: string; called: boolean }>(
    `SELECT format('%I.%I', schemaname, sequencename) AS name,
            coalesce(last_value, start_value)::text AS value, last_value IS NOT NULL AS called
     FROM pg_sequences`,
  );
  return { fingerprint: fp[0]!.fingerprint, tables: tables.map((t) => t.name), rows, sequences };
}

let snapshotsOnce: Promise<PgliteSnapshots | undefined> | undefined;
const dumps = new Map<string, Promise<Blob>>();

/** The databases the global setup prepared, or undefined outside vitest (the benchmarks). */
function pgliteSnapshots(): Promise<PgliteSnapshots | undefined> {
  snapshotsOnce ??= (async () => {
    if (!process.env.VITEST) return undefined;
    const { inject } = await import('vitest');
    return inject('pgliteSnapshots');
  })();
  return snapshotsOnce;
}

function dumpOf(path: string): Promise<Blob> {
  let blob = dumps.get(path);
  if (!blob) {
    blob = openAsBlob(path);
    dumps.set(path, blob);
  }
  return blob;
}
