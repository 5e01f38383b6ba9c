/**
 * The toolkit's schema changes in the order they are applied, and applying them. Every table
 * the toolkit keeps is defined in the store (the registry's books and the REST source's outbox
 * too), so this list never reaches up into the features that use those tables.
 */
import type { Database, Queryable } from '../db/index.js';
import { TOOLKIT_SCHEMA, type Migration } from './migration.js';
import { REGISTRY_MIGRATION, SLURM_ACCOUNT_MIGRATION } from './registry-schema.js';
import { USAGE_ALERTS_MIGRATION, USAGE_MIGRATION } from './usage.js';
import { REST_SOURCE_MIGRATION } from './rest-schema.js';
import { SOURCE_IDS_MIGRATION } from './work.js';
import { PROCESS_PASSES_MIGRATION } from './status.js';

export { TOOLKIT_SCHEMA, type Migration } from './migration.js';

/**
 * Applied in this order, each exactly once. A module defining tables exports its migration and
 * is named here; an entry is never edited after release, a change is a new entry.
 */
export const MIGRATIONS: Migration[] = [
  {
    id: '0001_toolkit_schema',
    sql: `
CREATE SCHEMA IF NOT EXISTS ${TOOLKIT_SCHEMA};
CREATE TABLE IF NOT EXISTS ${TOOLKIT_SCHEMA}.migrations (
  id         text        PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
-- Transactions the site originates (NPU) need a transaction_id of their own. The legacy
-- library took max(transaction_id)+1 without a lock, which collides when two writers run;
-- a sequence cannot.
CREATE SEQUENCE IF NOT EXISTS ${TOOLKIT_SCHEMA}.transaction_id_seq AS bigint MINVALUE 1;
`,
  },
  {
    // What the dispatcher did with each packet (the audit), and how often a handler failed on it.
    id: '0002_dispatch_audit',
    sql: `
CREATE TABLE IF NOT EXISTS ${TOOLKIT_SCHEMA}.audit (
  audit_id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  run_id text NOT NULL,
  packet_rec_id int NOT NULL,
  trans_rec_id int NOT NULL,
  packet_type text NOT NULL,
  outcome text NOT NULL,
  reason text,
  reply_packet_rec_id int,
  reply_type text,
  duration_ms int,
  handler text
);
CREATE INDEX IF NOT EXISTS audit_packet ON ${TOOLKIT_SCHEMA}.audit (packet_rec_id);
CREATE INDEX IF NOT EXISTS audit_at ON ${TOOLKIT_SCHEMA}.audit (at);
CREATE TABLE IF NOT EXISTS ${TOOLKIT_SCHEMA}.packet_errors (
  packet_rec_id int PRIMARY KEY,
  error_count int NOT NULL,
  last_error text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Finding pending incoming packets must not scan every packet a site ever exchanged.
-- A partial index on the AMIE table, named for the toolkit; it changes no data.
CREATE INDEX IF NOT EXISTS amie_toolkit_pending_incoming ON packet_tbl (packet_rec_id)
  WHERE outgoing_flag = 0 AND state_id = 2;
`,
  },
  REGISTRY_MIGRATION,
  USAGE_MIGRATION,
  SLURM_ACCOUNT_MIGRATION,
  REST_SOURCE_MIGRATION,
  SOURCE_IDS_MIGRATION,
  PROCESS_PASSES_MIGRATION,
  USAGE_ALERTS_MIGRATION,
];

/**
 * One key for every schema change the toolkit makes (AMIE tables and its own), so a second
 * `amie db init` or a cron run starting at the same moment waits instead of racing.
 */
export const SCHEMA_LOCK_KEY = 0x414d4945; // 'AMIE'

/** Takes the schema lock for the rest of the surrounding transaction. */
export async function lockSchema(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [SCHEMA_LOCK_KEY]);
}

async function appliedMigrationIds(q: Queryable): Promise<Set<string> | undefined> {
  const exists = await q.query<{ t: string | null }>(`SELECT to_regclass('${TOOLKIT_SCHEMA}.migrations')::text AS t`);
  if (!exists.rows[0]?.t) return undefined;
  const { rows } = await q.query<{ id: string }>(`SELECT id FROM ${TOOLKIT_SCHEMA}.migrations`);
  return new Set(rows.map((r) => r.id));
}

/**
 * Applies the pending migrations inside a transaction that already holds the schema lock.
 * Returns the ids applied now, in order.
 */
export async function applyMigrationsLocked(tx: Queryable): Promise<string[]> {
  // The migrations table is where we learn what is applied, so it must exist before the
  // first migration (which also creates it, harmlessly, for readers of the list).
  await tx.exec(`
CREATE SCHEMA IF NOT EXISTS ${TOOLKIT_SCHEMA};
CREATE TABLE IF NOT EXISTS ${TOOLKIT_SCHEMA}.migrations (
  id         text        PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);`);
  const applied = (await appliedMigrationIds(tx)) ?? new Set<string>();
  const now: string[] = [];
  for (const m of MIGRATIONS) {
    if (applied.has(m.id)) continue;
    await tx.exec(m.sql);
    await tx.query(`INSERT INTO ${TOOLKIT_SCHEMA}.migrations (id) VALUES ($1)`, [m.id]);
    now.push(m.id);
  }
  return now;
}

/** True when every migration in MIGRATIONS is recorded as applied (checked without a lock). */
export async function migrationsUpToDate(q: Queryable): Promise<boolean> {
  const applied = await appliedMigrationIds(q);
  return applied !== undefined && MIGRATIONS.every((m) => applied.has(m.id));
}

/**
 * Brings the toolkit schema up to date. Idempotent; two processes running it at once are
 * serialised by an advisory lock held for the whole transaction, so the second finds
 * nothing left to do. Returns the ids applied by this call.
 */
export async function applyMigrations(db: Database): Promise<string[]> {
  return db.transaction(async (tx) => {
    await lockSchema(tx);
    return applyMigrationsLocked(tx);
  });
}
