import { DatabaseError, type Queryable } from '../db/index.js';
import {
  DEFAULT_REPLY_TIMEOUT_MINUTES,
  PACKET_TYPE_IDS,
  STATE_IDS,
  type DataRow,
  type PacketTypeName,
  type StateName,
} from '../protocol/ids.js';
import {
  packetColumns,
  rowToPacket,
  rowToPacketWithTransaction,
  type PacketRecord,
  type PacketRow,
  type PacketWithTransaction,
} from './records.js';
import { stateId } from './transactions.js';

export function packetTypeId(type: PacketTypeName): number {
  const id = PACKET_TYPE_IDS[type];
  if (id === undefined)
    throw new DatabaseError(`unknown AMIE packet type '${String(type)}': it has no type_id in type_des`);
  return id;
}

export interface FindIncomingOptions {
  /** At most this many packets, oldest first. */
  limit?: number;
  /** Only these packet types. */
  types?: PacketTypeName[];
  /** Only packets of this transaction. */
  transRecId?: number;
  /**
   * Lock the packets found (FOR UPDATE SKIP LOCKED) so concurrent runs each claim different
   * work. Only meaningful inside a transaction, which holds the locks until it ends.
   */
  lock?: boolean;
}

/**
 * The work queue: incoming (outgoing_flag 0) in-progress packets of in-progress transactions,
 * oldest first, each with its data rows and its transaction, in one round trip. A transaction
 * waiting in transaction_depends_tbl on one that is not yet completed is left out: AMIE says it
 * must not be worked before then.
 */
export async function findIncomingInProgress(
  q: Queryable,
  opts: FindIncomingOptions = {},
): Promise<PacketWithTransaction[]> {
  const typeIds = opts.types ? opts.types.map(packetTypeId) : null;
  if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 0)) {
    throw new DatabaseError(`findIncomingInProgress: limit must be a non-negative integer, got ${opts.limit}`);
  }
  const { rows } = await q.query<PacketRow>(
    `SELECT ${packetColumns(true)}
     FROM packet_tbl p JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
     WHERE p.outgoing_flag = 0 AND p.state_id = $1 AND t.state_id = $1
       AND ($2::numeric[] IS NULL OR p.type_id = ANY ($2::numeric[]))
       AND ($3::int IS NULL OR p.trans_rec_id = $3::int)
       AND NOT EXISTS (
         SELECT 1 FROM transaction_depends_tbl dep JOIN transaction_tbl before ON before.trans_rec_id = dep.depends_on_trans_rec_id
         WHERE dep.trans_rec_id = t.trans_rec_id AND before.state_id <> $4)
     ORDER BY p.ts, p.packet_rec_id
     LIMIT $5${opts.lock ? '\n     FOR UPDATE OF p SKIP LOCKED' : ''}`,
    [STATE_IDS['in-progress'], typeIds, opts.transRecId ?? null, STATE_IDS.completed, opts.limit ?? null],
  );
  return rows.map(rowToPacketWithTransaction);
}

export interface NewPacket {
  transRecId: number;
  packetId: number;
  type: PacketTypeName;
  rows: readonly DataRow[];
  outgoing: boolean;
  /** Default in-progress. */
  state?: StateName;
  /** Default '1.0'. */
  version?: string;
  /** The reply this packet asks for; null or omitted when none is expected. */
  expectedReply?: { type: PacketTypeName; timeoutMinutes?: number } | null;
}

const TAG_MAX = 32;
const SUBTAG_MAX = 128;

/** Refuses what data_tbl would refuse (or, for a duplicate null-subtag row, silently accept). */
function checkRows(p: NewPacket): void {
  const what = `${p.type} packet ${p.packetId} of trans_rec_id ${p.transRecId}`;
  const seen = new Set<string>();
  for (const r of p.rows) {
    if (typeof r.tag !== 'string' || r.tag === '' || r.tag.length > TAG_MAX) {
      throw new DatabaseError(
        `${what}: tag '${String(r.tag)}' must be 1-${TAG_MAX} characters (data_tbl.tag is varchar(${TAG_MAX}))`,
      );
    }
    if (r.subtag !== null && (typeof r.subtag !== 'string' || r.subtag.length > SUBTAG_MAX)) {
      throw new DatabaseError(
        `${what}: tag ${r.tag} subtag '${String(r.subtag)}' must be null or at most ${SUBTAG_MAX} characters`,
      );
    }
    if (!Number.isInteger(r.seq) || r.seq < 0 || r.seq > 2147483647) {
      throw new DatabaseError(`${what}: tag ${r.tag} has seq ${String(r.seq)}, expected a non-negative integer`);
    }
    if (r.value !== null && typeof r.value !== 'string') {
      throw new DatabaseError(
        `${what}: tag ${r.tag} seq ${r.seq} has a ${typeof r.value} value, expected text or null`,
      );
    }
    // The unique key (packet_rec_id, tag, subtag, seq) treats NULL subtags as distinct, so
    // the database would take two values for the same single-valued tag without complaint.
    const key = JSON.stringify([r.tag, r.subtag, r.seq]);
    if (seen.has(key)) {
      throw new DatabaseError(
        `${what}: tag ${r.tag}${r.subtag === null ? '' : `/${r.subtag}`} seq ${r.seq} appears twice`,
      );
    }
    seen.add(key);
  }
}

/**
 * Writes a packet, all its data rows and its expected reply in one statement, so a packet is
 * never visible to the transfer daemon without its body.
 */
export async function writePacket(q: Queryable, p: NewPacket): Promise<{ packetRecId: number }> {
  const typeId = packetTypeId(p.type);
  const state = stateId(p.state ?? 'in-progress');
  checkRows(p);
  const reply = p.expectedReply ?? null;
  const replyTypeId = reply ? packetTypeId(reply.type) : null;
  const timeout = reply ? (reply.timeoutMinutes ?? DEFAULT_REPLY_TIMEOUT_MINUTES) : null;
  if (timeout !== null && (!Number.isInteger(timeout) || timeout <= 0)) {
    throw new DatabaseError(
      `${p.type} packet ${p.packetId}: expected reply timeout must be a positive number of minutes, got ${timeout}`,
    );
  }
  const { rows } = await q.query<{ packet_rec_id: unknown }>(
    `WITH p AS (
       INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       VALUES ($1, $2, $3, $4, $5, $6)
       RETURNING packet_rec_id
     ), d AS (
       INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
       SELECT p.packet_rec_id, r.tag, r.subtag, r.seq, r.value
       FROM p, unnest($7::text[], $8::text[], $9::int[], $10::text[]) AS r(tag, subtag, seq, value)
     ), e AS (
       INSERT INTO expected_reply_tbl (packet_rec_id, type_id, timeout)
       SELECT p.packet_rec_id, $11::numeric, $12::int FROM p WHERE $11::numeric IS NOT NULL
     )
     SELECT packet_rec_id FROM p`,
    [
      p.transRecId,
      p.packetId,
      typeId,
      p.version ?? '1.0',
      state,
      p.outgoing ? 1 : 0,
      p.rows.map((r) => r.tag),
      p.rows.map((r) => r.subtag),
      p.rows.map((r) => r.seq),
      p.rows.map((r) => r.value),
      replyTypeId,
      timeout,
    ],
  );
  return { packetRecId: Number(rows[0]!.packet_rec_id) };
}

export async function setPacketState(q: Queryable, packetRecId: number, state: StateName): Promise<void> {
  const res = await q.query('UPDATE packet_tbl SET state_id = $2 WHERE packet_rec_id = $1', [
    packetRecId,
    stateId(state),
  ]);
  if (res.rowCount === 0) {
    throw new DatabaseError(`cannot set packet packet_rec_id ${packetRecId} to ${state}: no such row in packet_tbl`);
  }
}

export async function getPacket(q: Queryable, packetRecId: number): Promise<PacketWithTransaction | undefined> {
  const { rows } = await q.query<PacketRow>(
    `SELECT ${packetColumns(true)}
     FROM packet_tbl p JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
     WHERE p.packet_rec_id = $1`,
    [packetRecId],
  );
  return rows[0] ? rowToPacketWithTransaction(rows[0]) : undefined;
}

/** A transaction's packets in conversation order: by packet_id, the incoming one first on a tie. */
export async function listTransactionPackets(q: Queryable, transRecId: number): Promise<PacketRecord[]> {
  const { rows } = await q.query<PacketRow>(
    `SELECT ${packetColumns(false)}
     FROM packet_tbl p
     WHERE p.trans_rec_id = $1
     ORDER BY p.packet_id, p.outgoing_flag, p.packet_rec_id`,
    [transRecId],
  );
  return rows.map(rowToPacket);
}
