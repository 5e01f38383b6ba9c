import { DatabaseError, type Queryable } from '../db/index.js';
import { STATE_IDS, type StateName } from '../protocol/ids.js';
import { TOOLKIT_SCHEMA } from './migration.js';
import { TRANSACTION_COLUMNS, rowToTransaction, type TransactionRecord, type TransactionRow } from './records.js';

export function stateId(state: StateName): number {
  const id = STATE_IDS[state];
  if (id === undefined) {
    throw new DatabaseError(
      `unknown AMIE state '${String(state)}': expected one of ${Object.keys(STATE_IDS).join(', ')}`,
    );
  }
  return id;
}

export interface NewTransaction {
  originatingSiteName: string;
  localSiteName: string;
  remoteSiteName: string;
  /** Given for transactions another site numbered; omitted for ones this site originates. */
  transactionId?: number;
  /** Default in-progress. */
  state?: StateName;
}

/**
 * Inserts a transaction_tbl row. Without a transactionId the next value of the toolkit's
 * sequence is used (COALESCE evaluates nextval only when needed, so given ids burn none).
 */
export async function openTransaction(q: Queryable, t: NewTransaction): Promise<TransactionRecord> {
  const { rows } = await q.query<TransactionRow>(
    `INSERT INTO transaction_tbl AS t (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id)
     VALUES ($1, COALESCE($2::numeric, nextval('${TOOLKIT_SCHEMA}.transaction_id_seq')), $3, $4, $5)
     RETURNING ${TRANSACTION_COLUMNS}`,
    [
      t.originatingSiteName,
      t.transactionId ?? null,
      t.localSiteName,
      t.remoteSiteName,
      stateId(t.state ?? 'in-progress'),
    ],
  );
  return rowToTransaction(rows[0]!);
}

export async function getTransaction(q: Queryable, transRecId: number): Promise<TransactionRecord | undefined> {
  const { rows } = await q.query<TransactionRow>(
    `SELECT ${TRANSACTION_COLUMNS} FROM transaction_tbl t WHERE t.trans_rec_id = $1`,
    [transRecId],
  );
  return rows[0] ? rowToTransaction(rows[0]) : undefined;
}

export async function setTransactionState(q: Queryable, transRecId: number, state: StateName): Promise<void> {
  const res = await q.query('UPDATE transaction_tbl SET state_id = $2 WHERE trans_rec_id = $1', [
    transRecId,
    stateId(state),
  ]);
  if (res.rowCount === 0) {
    throw new DatabaseError(
      `cannot set transaction trans_rec_id ${transRecId} to ${state}: no such row in transaction_tbl`,
    );
  }
}

/**
 * Records that `transRecId` must not be worked before `dependsOn` is completed. Recording the
 * same pair twice is not an error.
 */
export async function addTransactionDependency(q: Queryable, transRecId: number, dependsOn: number): Promise<void> {
  if (transRecId === dependsOn) {
    throw new DatabaseError(`transaction trans_rec_id ${transRecId} cannot depend on itself`);
  }
  await q.query(
    `INSERT INTO transaction_depends_tbl (trans_rec_id, depends_on_trans_rec_id) VALUES ($1, $2)
     ON CONFLICT (trans_rec_id, depends_on_trans_rec_id) DO NOTHING`,
    [transRecId, dependsOn],
  );
}
