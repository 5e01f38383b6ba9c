import { describe, it, expect } from 'vitest';
import { DatabaseError, type Queryable } from '../../src/db/index.js';
import {
  AMIE_TABLES,
  MIGRATIONS,
  TOOLKIT_SCHEMA,
  applyMigrations,
  initDatabase,
  openTransaction,
  prepareDatabase,
} from '../../src/store/index.js';
import { TYPE_DES } from '../helpers/amie.js';
import { databaseEachTest, driverCases } from '../helpers/db.js';
import { LEGACY_AMIE_DDL } from './legacy-ddl.js';

const skipNote = (available: boolean) => (available ? '' : ' [skipped: no AMIE_TEST_DATABASE_URL]');

/** §2 of the protocol reference, written out column by column. */
const EXPECTED_COLUMNS = [
  // table, column, data_type, precision, scale, char length, nullable, default
  ['data_tbl', 'packet_rec_id', 'integer', 32, 0, null, 'NO', null],
  ['data_tbl', 'tag', 'character varying', null, null, 32, 'NO', null],
  ['data_tbl', 'subtag', 'character varying', null, null, 128, 'YES', null],
  ['data_tbl', 'seq', 'integer', 32, 0, null, 'NO', null],
  ['data_tbl', 'value', 'text', null, null, null, 'YES', null],
  ['expected_reply_tbl', 'packet_rec_id', 'integer', 32, 0, null, 'NO', null],
  ['expected_reply_tbl', 'type_id', 'numeric', 3, 0, null, 'NO', null],
  ['expected_reply_tbl', 'timeout', 'integer', 32, 0, null, 'YES', null],
  ['packet_tbl', 'packet_rec_id', 'integer', 32, 0, null, 'NO', "nextval('packet_tbl_packet_rec_id_seq'::regclass)"],
  ['packet_tbl', 'trans_rec_id', 'integer', 32, 0, null, 'NO', null],
  ['packet_tbl', 'packet_id', 'numeric', 38, 0, null, 'NO', null],
  ['packet_tbl', 'type_id', 'numeric', 3, 0, null, 'NO', null],
  ['packet_tbl', 'version', 'character varying', null, null, 4, 'NO', null],
  ['packet_tbl', 'state_id', 'numeric', 3, 0, null, 'NO', null],
  ['packet_tbl', 'outgoing_flag', 'numeric', 1, 0, null, 'NO', null],
  ['packet_tbl', 'ts', 'timestamp without time zone', null, null, null, 'NO', 'CURRENT_TIMESTAMP'],
  ['state_des', 'state_id', 'numeric', 3, 0, null, 'NO', null],
  ['state_des', 'state_name', 'character varying', null, null, 32, 'NO', null],
  ['transaction_depends_tbl', 'trans_rec_id', 'integer', 32, 0, null, 'NO', null],
  ['transaction_depends_tbl', 'depends_on_trans_rec_id', 'integer', 32, 0, null, 'NO', null],
  [
    'transaction_tbl',
    'trans_rec_id',
    'integer',
    32,
    0,
    null,
    'NO',
    "nextval('transaction_tbl_trans_rec_id_seq'::regclass)",
  ],
  ['transaction_tbl', 'originating_site_name', 'character varying', null, null, 16, 'NO', null],
  ['transaction_tbl', 'transaction_id', 'numeric', 38, 0, null, 'NO', null],
  ['transaction_tbl', 'local_site_name', 'character varying', null, null, 16, 'NO', null],
  ['transaction_tbl', 'remote_site_name', 'character varying', null, null, 16, 'NO', null],
  ['transaction_tbl', 'state_id', 'numeric', 3, 0, null, 'NO', null],
  ['transaction_tbl', 'ts', 'timestamp without time zone', null, null, null, 'NO', 'CURRENT_TIMESTAMP'],
  ['type_des', 'type_id', 'numeric', 3, 0, null, 'NO', null],
  ['type_des', 'type_name', 'character varying', null, null, 48, 'NO', null],
];

/** Keys as "table name KIND (columns) [-> table(columns)]"; names are the reference schema's. */
const EXPECTED_CONSTRAINTS = [
  'data_tbl data_packet_fk FOREIGN KEY (packet_rec_id) -> packet_tbl(packet_rec_id)',
  'data_tbl data_uk UNIQUE (packet_rec_id,tag,subtag,seq)',
  'expected_reply_tbl expected_reply_packet_fk FOREIGN KEY (packet_rec_id) -> packet_tbl(packet_rec_id)',
  'expected_reply_tbl expected_reply_pk PRIMARY KEY (packet_rec_id,type_id)',
  'expected_reply_tbl expected_reply_type_fk FOREIGN KEY (type_id) -> type_des(type_id)',
  'packet_tbl packet_pk PRIMARY KEY (packet_rec_id)',
  'packet_tbl packet_state_fk FOREIGN KEY (state_id) -> state_des(state_id)',
  'packet_tbl packet_trans_fk FOREIGN KEY (trans_rec_id) -> transaction_tbl(trans_rec_id)',
  'packet_tbl packet_type_fk FOREIGN KEY (type_id) -> type_des(type_id)',
  'packet_tbl packet_uk UNIQUE (trans_rec_id,packet_id,outgoing_flag)',
  'state_des state_des_name_uk UNIQUE (state_name)',
  'state_des state_des_pk PRIMARY KEY (state_id)',
  'transaction_depends_tbl transaction_depends_fk1 FOREIGN KEY (trans_rec_id) -> transaction_tbl(trans_rec_id)',
  'transaction_depends_tbl transaction_depends_fk2 FOREIGN KEY (depends_on_trans_rec_id) -> transaction_tbl(trans_rec_id)',
  'transaction_depends_tbl transaction_depends_uk UNIQUE (trans_rec_id,depends_on_trans_rec_id)',
  'transaction_tbl transaction_pk PRIMARY KEY (trans_rec_id)',
  'transaction_tbl transaction_state_fk FOREIGN KEY (state_id) -> state_des(state_id)',
  'transaction_tbl transaction_uk UNIQUE (originating_site_name,transaction_id,local_site_name,remote_site_name)',
  'type_des type_des_name_uk UNIQUE (type_name)',
  'type_des type_des_pk PRIMARY KEY (type_id)',
];

const EXPECTED_DATA_INDEXES = [
  'data_prid_idx CREATE INDEX data_prid_idx ON public.data_tbl USING btree (packet_rec_id)',
  'data_prid_tag_idx CREATE INDEX data_prid_tag_idx ON public.data_tbl USING btree (packet_rec_id, tag)',
  'data_uk CREATE UNIQUE INDEX data_uk ON public.data_tbl USING btree (packet_rec_id, tag, subtag, seq)',
];

const EXPECTED_STATES = [
  [1, 'completed'],
  [2, 'in-progress'],
  [3, 'failed'],
  [4, 'rejected'],
  [5, 'on-hold'],
  [6, 'x-pending'],
  [7, 'killed'],
];

async function readColumns(q: Queryable) {
  const { rows } = await q.query<Record<string, unknown>>(
    `SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, character_maximum_length,
            is_nullable, column_default
     FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = ANY ($1::text[])
     ORDER BY table_name, ordinal_position`,
    [AMIE_TABLES],
  );
  return rows.map((r) => [
    r.table_name,
    r.column_name,
    r.data_type,
    r.numeric_precision === null ? null : Number(r.numeric_precision),
    r.numeric_scale === null ? null : Number(r.numeric_scale),
    r.character_maximum_length === null ? null : Number(r.character_maximum_length),
    r.is_nullable,
    r.column_default,
  ]);
}

async function readConstraints(q: Queryable) {
  const { rows } = await q.query<{
    table_name: string;
    constraint_name: string;
    constraint_type: string;
    cols: string;
    ref: string | null;
  }>(
    `SELECT tc.table_name, tc.constraint_name, tc.constraint_type,
            (SELECT string_agg(k.column_name, ',' ORDER BY k.ordinal_position)
             FROM information_schema.key_column_usage k
             WHERE k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name) AS cols,
            CASE WHEN tc.constraint_type = 'FOREIGN KEY' THEN
              (SELECT min(u.table_name) || '(' || string_agg(u.column_name, ',' ORDER BY u.column_name) || ')'
               FROM information_schema.constraint_column_usage u
               WHERE u.constraint_schema = tc.constraint_schema AND u.constraint_name = tc.constraint_name)
            END AS ref
     FROM information_schema.table_constraints tc
     WHERE tc.table_schema = current_schema() AND tc.table_name = ANY ($1::text[])
       AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')
     ORDER BY tc.table_name, tc.constraint_name`,
    [AMIE_TABLES],
  );
  return rows.map(
    (r) => `${r.table_name} ${r.constraint_name} ${r.constraint_type} (${r.cols})${r.ref ? ` -> ${r.ref}` : ''}`,
  );
}

async function readDataIndexes(q: Queryable) {
  const { rows } = await q.query<{ indexname: string; indexdef: string }>(
    `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'data_tbl' ORDER BY indexname`,
  );
  return rows.map((r) => `${r.indexname} ${r.indexdef}`);
}

async function readRows(q: Queryable, sql: string) {
  const { rows } = await q.query<Record<string, unknown>>(sql);
  return rows.map((r) => Object.values(r).map((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v)));
}

/** Every row of every AMIE table, as JSON text: what "untouched" is compared against. */
async function snapshot(q: Queryable) {
  const out: Record<string, unknown> = {};
  for (const t of AMIE_TABLES) {
    const { rows } = await q.query<{ j: unknown }>(
      `SELECT coalesce(json_agg(x ORDER BY x::text), '[]'::json)::text AS j FROM ${t} x`,
    );
    out[t] = rows[0]!.j;
  }
  return out;
}

async function toolkitSchemaExists(q: Queryable): Promise<boolean> {
  const { rows } = await q.query<{ n: unknown }>('SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1', [
    TOOLKIT_SCHEMA,
  ]);
  return Number(rows[0]!.n) === 1;
}

describe.each(driverCases())('AMIE schema on $name', (driver) => {
  const fresh = databaseEachTest(driver, { init: false });
  /** The transaction_id the site hands out next. */
  const nextTransactionId = async (db: Queryable) =>
    (await openTransaction(db, { originatingSiteName: 'EXAMPLE', localSiteName: 'EXAMPLE', remoteSiteName: 'TGCDB' }))
      .transactionId;
  const note = skipNote(driver.available);

  it.skipIf(!driver.available)(
    `initDatabase creates the seven tables exactly as the reference schema has them${note}`,
    async () => {
      const db = fresh.db;
      const first = await initDatabase(db);
      expect(first).toEqual({ amieTables: 'created', migrationsApplied: MIGRATIONS.map((m) => m.id) });
      expect(await readColumns(db)).toEqual(EXPECTED_COLUMNS);
      expect(await readConstraints(db)).toEqual(EXPECTED_CONSTRAINTS);
      expect(await readDataIndexes(db)).toEqual(EXPECTED_DATA_INDEXES);
      expect(await readRows(db, 'SELECT state_id, state_name FROM state_des ORDER BY state_id')).toEqual(
        EXPECTED_STATES,
      );
      expect(await readRows(db, 'SELECT type_id, type_name FROM type_des ORDER BY type_id')).toEqual(TYPE_DES);

      const before = await snapshot(db);
      const second = await initDatabase(db);
      expect(second).toEqual({ amieTables: 'existing', migrationsApplied: [] });
      expect(await snapshot(db)).toEqual(before);
      expect(await applyMigrations(db)).toEqual([]);
      await prepareDatabase(db);
    },
  );

  it.skipIf(!driver.available)(`the reference DDL copy matches the same expected schema${note}`, async () => {
    const db = fresh.db;
    await db.exec(LEGACY_AMIE_DDL);
    expect(await readColumns(db)).toEqual(EXPECTED_COLUMNS);
    expect(await readConstraints(db)).toEqual(EXPECTED_CONSTRAINTS);
    expect(await readDataIndexes(db)).toEqual(EXPECTED_DATA_INDEXES);
  });

  it.skipIf(!driver.available)(
    `leaves an existing AMIE database and its rows untouched and adds the toolkit schema${note}`,
    async () => {
      const db = fresh.db;
      await db.exec(LEGACY_AMIE_DDL);
      await db.exec(`
INSERT INTO transaction_tbl (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id, ts)
  VALUES ('TGCDB', 51234, 'EXAMPLE', 'TGCDB', 1, '2019-03-04 05:06:07'),
       ('EXAMPLE', 977, 'EXAMPLE', 'TGCDB', 2, '2019-03-05 05:06:07');
INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag, ts)
  VALUES (1, 1, 19, '1.0', 1, 0, '2019-03-04 05:06:07'), (1, 1, 7, '1.0', 1, 1, '2019-03-04 05:06:08');
INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
  VALUES (1, 'GrantNumber', NULL, 0, 'TG-ABC123'), (1, 'ResourceList', NULL, 0, 'cluster.example.edu'),
       (1, 'SitePersonId', 'PersonID', 0, 'jdoe'), (1, 'SitePersonId', 'Site', 0, 'X-PORTAL');
INSERT INTO expected_reply_tbl (packet_rec_id, type_id, timeout) VALUES (2, 2, 30240);
INSERT INTO transaction_depends_tbl (trans_rec_id, depends_on_trans_rec_id) VALUES (2, 1);`);
      const before = await snapshot(db);
      expect(await toolkitSchemaExists(db)).toBe(false);

      expect(await initDatabase(db)).toEqual({
        amieTables: 'existing',
        migrationsApplied: MIGRATIONS.map((m) => m.id),
      });
      expect(await snapshot(db)).toEqual(before);
      expect(await toolkitSchemaExists(db)).toBe(true);
      expect(await initDatabase(db)).toEqual({ amieTables: 'existing', migrationsApplied: [] });
      expect(await snapshot(db)).toEqual(before);

      // Ids the site hands out start above every transaction_id already used.
      expect(await nextTransactionId(db)).toBe(51235);
    },
  );

  it.skipIf(!driver.available)(
    `prepareDatabase on legacy tables without init adds the toolkit schema, ids above existing ones${note}`,
    async () => {
      const db = fresh.db;
      await db.exec(LEGACY_AMIE_DDL);
      await db.exec(`INSERT INTO transaction_tbl (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id)
      VALUES ('TGCDB', 700, 'EXAMPLE', 'TGCDB', 2)`);
      await prepareDatabase(db);
      expect(await toolkitSchemaExists(db)).toBe(true);
      expect(await nextTransactionId(db)).toBe(701);
    },
  );

  it.skipIf(!driver.available)(
    `refuses a database with only some AMIE tables, naming the missing ones${note}`,
    async () => {
      const db = fresh.db;
      const partial = LEGACY_AMIE_DDL.slice(0, LEGACY_AMIE_DDL.indexOf('CREATE TABLE transaction_tbl'));
      await db.exec(partial);
      const err = await initDatabase(db).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatabaseError);
      expect((err as Error).message).toContain('state_des, type_des exist');
      expect((err as Error).message).toContain(
        'transaction_tbl, packet_tbl, data_tbl, expected_reply_tbl, transaction_depends_tbl are missing',
      );
      // Nothing half-done is left behind.
      expect(await toolkitSchemaExists(db)).toBe(false);
      await expect(prepareDatabase(db)).rejects.toThrow(
        'the AMIE tables are missing (transaction_tbl, packet_tbl, data_tbl, expected_reply_tbl, transaction_depends_tbl): run `amie db init`',
      );
    },
  );

  it.skipIf(!driver.available)(`prepareDatabase on an empty database says to run db init${note}`, async () => {
    const db = fresh.db;
    const err = await prepareDatabase(db).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseError);
    expect((err as Error).message).toMatch(
      /the AMIE tables are missing \(state_des, type_des, .*transaction_depends_tbl\): run `amie db init`/,
    );
  });
});
