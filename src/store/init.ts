import { DatabaseError, type Database, type Queryable } from '../db/index.js';
import { PACKET_TYPE_IDS, STATE_IDS } from '../protocol/ids.js';
import { TOOLKIT_SCHEMA } from './migration.js';
import { applyMigrationsLocked, lockSchema, migrationsUpToDate } from './migrations.js';

/** The seven tables of the legacy AMIE site database, in creation order (referenced before referencing). */
export const AMIE_TABLES = [
  'state_des',
  'type_des',
  'transaction_tbl',
  'packet_tbl',
  'data_tbl',
  'expected_reply_tbl',
  'transaction_depends_tbl',
] as const;
export type AmieTableName = (typeof AMIE_TABLES)[number];

export interface InitResult {
  amieTables: 'created' | 'existing';
  migrationsApplied: string[];
}

/**
 * The AMIE tables exactly as the legacy site database has them: the transfer daemon and older
 * site scripts read these, so names, types, nullability and keys must not drift. Constraint
 * names follow the reference schema so an operator comparing the two sees the same names.
 */
export const AMIE_TABLES_DDL = `
CREATE TABLE state_des (
  state_id   numeric(3,0) NOT NULL,
  state_name varchar(32)  NOT NULL,
  CONSTRAINT state_des_pk PRIMARY KEY (state_id),
  CONSTRAINT state_des_name_uk UNIQUE (state_name)
);

CREATE TABLE type_des (
  type_id   numeric(3,0) NOT NULL,
  type_name varchar(48)  NOT NULL,
  CONSTRAINT type_des_pk PRIMARY KEY (type_id),
  CONSTRAINT type_des_name_uk UNIQUE (type_name)
);

CREATE TABLE transaction_tbl (
  trans_rec_id          serial,
  originating_site_name varchar(16)   NOT NULL,
  transaction_id        numeric(38,0) NOT NULL,
  local_site_name       varchar(16)   NOT NULL,
  remote_site_name      varchar(16)   NOT NULL,
  state_id              numeric(3,0)  NOT NULL,
  ts                    timestamp     DEFAULT CURRENT_TIMESTAMP NOT NULL,
  CONSTRAINT transaction_pk PRIMARY KEY (trans_rec_id),
  CONSTRAINT transaction_uk UNIQUE (originating_site_name, transaction_id, local_site_name, remote_site_name),
  CONSTRAINT transaction_state_fk FOREIGN KEY (state_id) REFERENCES state_des (state_id)
);

CREATE TABLE packet_tbl (
  packet_rec_id serial,
  trans_rec_id  int           NOT NULL,
  packet_id     numeric(38,0) NOT NULL,
  type_id       numeric(3,0)  NOT NULL,
  version       varchar(4)    NOT NULL,
  state_id      numeric(3,0)  NOT NULL,
  outgoing_flag numeric(1,0)  NOT NULL,
  ts            timestamp     DEFAULT CURRENT_TIMESTAMP NOT NULL,
  CONSTRAINT packet_pk PRIMARY KEY (packet_rec_id),
  CONSTRAINT packet_uk UNIQUE (trans_rec_id, packet_id, outgoing_flag),
  CONSTRAINT packet_type_fk FOREIGN KEY (type_id) REFERENCES type_des (type_id),
  CONSTRAINT packet_state_fk FOREIGN KEY (state_id) REFERENCES state_des (state_id),
  CONSTRAINT packet_trans_fk FOREIGN KEY (trans_rec_id) REFERENCES transaction_tbl (trans_rec_id)
);

CREATE TABLE data_tbl (
  packet_rec_id int          NOT NULL,
  tag           varchar(32)  NOT NULL,
  subtag        varchar(128) NULL,
  seq           int          NOT NULL,
  value         text         NULL,
  CONSTRAINT data_uk UNIQUE (packet_rec_id, tag, subtag, seq),
  CONSTRAINT data_packet_fk FOREIGN KEY (packet_rec_id) REFERENCES packet_tbl (packet_rec_id)
);
CREATE INDEX data_prid_idx ON data_tbl USING btree (packet_rec_id);
CREATE INDEX data_prid_tag_idx ON data_tbl USING btree (packet_rec_id, tag);

CREATE TABLE expected_reply_tbl (
  packet_rec_id int          NOT NULL,
  type_id       numeric(3,0) NOT NULL,
  timeout       int          NULL,
  CONSTRAINT expected_reply_pk PRIMARY KEY (packet_rec_id, type_id),
  CONSTRAINT expected_reply_packet_fk FOREIGN KEY (packet_rec_id) REFERENCES packet_tbl (packet_rec_id),
  CONSTRAINT expected_reply_type_fk FOREIGN KEY (type_id) REFERENCES type_des (type_id)
);

CREATE TABLE transaction_depends_tbl (
  trans_rec_id            int NOT NULL,
  depends_on_trans_rec_id int NOT NULL,
  CONSTRAINT transaction_depends_uk UNIQUE (trans_rec_id, depends_on_trans_rec_id),
  CONSTRAINT transaction_depends_fk1 FOREIGN KEY (trans_rec_id) REFERENCES transaction_tbl (trans_rec_id),
  CONSTRAINT transaction_depends_fk2 FOREIGN KEY (depends_on_trans_rec_id) REFERENCES transaction_tbl (trans_rec_id)
);
`;

/** Which of the AMIE tables are missing, looked up through the search_path like every other statement. */
export async function missingAmieTables(q: Queryable): Promise<AmieTableName[]> {
  const { rows } = await q.query<{ name: AmieTableName }>(
    'SELECT name FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) WHERE to_regclass(name) IS NULL ORDER BY n',
    [AMIE_TABLES],
  );
  return rows.map((r) => r.name);
}

async function createAmieTables(tx: Queryable): Promise<void> {
  await tx.exec(AMIE_TABLES_DDL);
  await tx.query('INSERT INTO state_des (state_id, state_name) SELECT * FROM unnest($1::numeric[], $2::text[])', [
    Object.values(STATE_IDS),
    Object.keys(STATE_IDS),
  ]);
  await tx.query('INSERT INTO type_des (type_id, type_name) SELECT * FROM unnest($1::numeric[], $2::text[])', [
    Object.values(PACKET_TYPE_IDS),
    Object.keys(PACKET_TYPE_IDS),
  ]);
}

/**
 * Moves the toolkit's transaction_id sequence above every transaction_id already in
 * transaction_tbl, so ids it hands out never meet ones the legacy software or the central
 * side used. Only ever moves forward. Runs under the schema lock at init; a process calling
 * nextval at the same moment is not excluded, which is why this is an init-time step.
 */
export async function advanceTransactionIdSequence(tx: Queryable): Promise<void> {
  await tx.query(`
SELECT setval('${TOOLKIT_SCHEMA}.transaction_id_seq', m.max_id::bigint)
FROM (SELECT max(transaction_id) AS max_id FROM transaction_tbl) m, ${TOOLKIT_SCHEMA}.transaction_id_seq s
WHERE m.max_id IS NOT NULL
  AND m.max_id >= s.last_value + CASE WHEN s.is_called THEN 1 ELSE 0 END`);
}

function describeMissing(missing: readonly string[], present: readonly string[]): string {
  return `the database has only some of the AMIE tables: ${present.join(', ')} exist but ${missing.join(', ')} ${
    missing.length === 1 ? 'is' : 'are'
  } missing. Refusing to guess: create the missing tables from the AMIE reference schema, or use an empty database`;
}

/**
 * `amie db init`: creates the seven AMIE tables with their state_des and type_des rows when
 * none exists, leaves them (and every row) alone when all exist, and refuses when only some
 * exist. Then applies the toolkit's migrations and positions its transaction_id sequence.
 * All in one transaction under the schema lock: safe to run twice, or twice at once.
 */
export async function initDatabase(db: Database): Promise<InitResult> {
  return db.transaction(async (tx) => {
    await lockSchema(tx);
    const missing = await missingAmieTables(tx);
    let amieTables: InitResult['amieTables'];
    if (missing.length === AMIE_TABLES.length) {
      await createAmieTables(tx);
      amieTables = 'created';
    } else if (missing.length === 0) {
      amieTables = 'existing';
    } else {
      const present = AMIE_TABLES.filter((t) => !missing.includes(t));
      throw new DatabaseError(`${db.description}: ${describeMissing(missing, present)}`);
    }
    const migrationsApplied = await applyMigrationsLocked(tx);
    await advanceTransactionIdSequence(tx);
    return { amieTables, migrationsApplied };
  });
}

/**
 * Every command but `amie db init` starts here: the AMIE tables must already exist (the
 * toolkit never creates them behind an operator's back), and pending toolkit migrations are
 * applied. When everything is in place this costs two reads and takes no lock.
 */
export async function prepareDatabase(db: Database): Promise<void> {
  const missing = await missingAmieTables(db);
  if (missing.length > 0) {
    throw new DatabaseError(
      `${db.description}: the AMIE tables are missing (${missing.join(', ')}): run \`amie db init\``,
    );
  }
  if (await migrationsUpToDate(db)) return;
  await db.transaction(async (tx) => {
    await lockSchema(tx);
    await applyMigrationsLocked(tx);
    // A site whose tables the legacy software created may never run `db init`: its
    // sequence is born here and must still start above the ids already in use.
    await advanceTransactionIdSequence(tx);
  });
}
