/**
 * What the REST simulator keeps beyond the AMIE tables of central's private database: per-packet
 * notes the REST API has and the tables do not (the packet a reply answers, the site's
 * client_state and client_json, when the packet last changed). One function per SQL operation.
 */
import type { Database, Queryable } from '../db/index.js';
import { STATE_IDS, packetTypeName, type StateName } from '../protocol/index.js';
import {
  packetColumns,
  rowToPacketWithTransaction,
  toNumber,
  type PacketRow,
  type PacketWithTransaction,
} from '../store/records.js';

export const SIM_SCHEMA = 'amie_sim';

/**
 * The notes table, and triggers that stamp a packet's update time whenever its state or its
 * transaction's state changes, whoever changes it (central's own code writes the AMIE tables
 * directly), so the `update_time` filter sees every change.
 */
const SIM_DDL = `
CREATE SCHEMA IF NOT EXISTS ${SIM_SCHEMA};
CREATE TABLE IF NOT EXISTS ${SIM_SCHEMA}.packet_notes (
  packet_rec_id int PRIMARY KEY REFERENCES packet_tbl (packet_rec_id),
  in_reply_to   int REFERENCES packet_tbl (packet_rec_id),
  client_state  text,
  client_json   jsonb,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS packet_notes_in_reply_to ON ${SIM_SCHEMA}.packet_notes (in_reply_to);

CREATE OR REPLACE FUNCTION ${SIM_SCHEMA}.touch_packet() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ${SIM_SCHEMA}.packet_notes (packet_rec_id) VALUES (NEW.packet_rec_id)
  ON CONFLICT (packet_rec_id) DO UPDATE SET updated_at = now();
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION ${SIM_SCHEMA}.touch_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ${SIM_SCHEMA}.packet_notes (packet_rec_id)
  SELECT packet_rec_id FROM packet_tbl WHERE trans_rec_id = NEW.trans_rec_id
  ON CONFLICT (packet_rec_id) DO UPDATE SET updated_at = now();
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS amie_sim_touch ON packet_tbl;
CREATE TRIGGER amie_sim_touch AFTER UPDATE OF state_id ON packet_tbl FOR EACH ROW EXECUTE FUNCTION ${SIM_SCHEMA}.touch_packet();
DROP TRIGGER IF EXISTS amie_sim_touch ON transaction_tbl;
CREATE TRIGGER amie_sim_touch AFTER UPDATE OF state_id ON transaction_tbl FOR EACH ROW EXECUTE FUNCTION ${SIM_SCHEMA}.touch_transaction();
`;

export async function createSimTables(db: Database): Promise<void> {
  await db.exec(SIM_DDL);
}

/** A packet as the REST API shows it: the AMIE rows plus the simulator's notes. */
export interface ServedPacket extends PacketWithTransaction {
  inReplyTo: number | null;
  clientState: string | null;
  clientJson: unknown;
  updatedAt: Date;
  expectedReplies: Array<{ type: string; timeout: number | null }>;
}

interface ServedRow extends PacketRow {
  in_reply_to: unknown;
  client_state: string | null;
  client_json: unknown;
  updated_at: unknown;
  expected: unknown;
}

const UPDATED_AT = `greatest(p.ts::timestamptz, n.updated_at)`;

const SERVED_COLUMNS = `${packetColumns(true)},
  n.in_reply_to, n.client_state, n.client_json, ${UPDATED_AT} AS updated_at,
  COALESCE((SELECT json_agg(json_build_array(e.type_id, e.timeout) ORDER BY e.type_id)
              FROM expected_reply_tbl e WHERE e.packet_rec_id = p.packet_rec_id), '[]'::json) AS expected`;

const SERVED_FROM = `packet_tbl p JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
  LEFT JOIN ${SIM_SCHEMA}.packet_notes n ON n.packet_rec_id = p.packet_rec_id`;

function toServed(r: ServedRow): ServedPacket {
  const p = rowToPacketWithTransaction(r);
  const expected = (typeof r.expected === 'string' ? JSON.parse(r.expected) : r.expected) as Array<[unknown, unknown]>;
  const clientJson: unknown = typeof r.client_json === 'string' ? JSON.parse(r.client_json) : r.client_json;
  return {
    ...p,
    inReplyTo: r.in_reply_to === null || r.in_reply_to === undefined ? null : toNumber(r.in_reply_to, 'in_reply_to'),
    clientState: r.client_state ?? null,
    clientJson: clientJson ?? null,
    updatedAt: r.updated_at instanceof Date ? r.updated_at : new Date(String(r.updated_at)),
    expectedReplies: expected.map(([typeId, timeout]) => ({
      type: packetTypeName(Number(typeId)) ?? `type_id ${String(typeId)}`,
      timeout: timeout === null ? null : Number(timeout),
    })),
  };
}

/** The query filters of `GET packets/{site}`; an absent filter does not restrict. */
export interface PacketFilter {
  site: string;
  transRecIds?: number[];
  /** true: packets the site sends (outgoing_flag 1); false: packets it receives. */
  outgoing?: boolean;
  states?: StateName[];
  transactionStates?: StateName[];
  clientStates?: string[];
  updatedFrom?: Date;
  updatedUntil?: Date;
  packetRecId?: number;
}

export async function listServedPackets(q: Queryable, f: PacketFilter): Promise<ServedPacket[]> {
  const ids = (names?: StateName[]) => (names ? names.map((s) => STATE_IDS[s]) : null);
  const { rows } = await q.query<ServedRow>(
    `SELECT ${SERVED_COLUMNS}
       FROM ${SERVED_FROM}
      WHERE t.local_site_name = $1
        AND ($2::int[] IS NULL OR p.trans_rec_id = ANY ($2::int[]))
        AND ($3::int IS NULL OR p.outgoing_flag = $3::int)
        AND ($4::int[] IS NULL OR p.state_id = ANY ($4::int[]))
        AND ($5::int[] IS NULL OR t.state_id = ANY ($5::int[]))
        AND ($6::text[] IS NULL OR n.client_state = ANY ($6::text[]))
        AND ($7::timestamptz IS NULL OR ${UPDATED_AT} >= $7::timestamptz)
        AND ($8::timestamptz IS NULL OR ${UPDATED_AT} <= $8::timestamptz)
        AND ($9::int IS NULL OR p.packet_rec_id = $9::int)
      ORDER BY p.packet_rec_id`,
    [
      f.site,
      f.transRecIds ?? null,
      f.outgoing === undefined ? null : f.outgoing ? 1 : 0,
      ids(f.states),
      ids(f.transactionStates),
      f.clientStates ?? null,
      f.updatedFrom?.toISOString() ?? null,
      f.updatedUntil?.toISOString() ?? null,
      f.packetRecId ?? null,
    ],
  );
  return rows.map(toServed);
}

/** One packet of the site, locked with its transaction for the rest of `q`'s transaction. */
export async function lockServedPacket(
  q: Queryable,
  site: string,
  packetRecId: number,
): Promise<ServedPacket | undefined> {
  const { rows } = await q.query<ServedRow>(
    `SELECT ${SERVED_COLUMNS}
       FROM ${SERVED_FROM}
      WHERE t.local_site_name = $1 AND p.packet_rec_id = $2
      FOR UPDATE OF p, t`,
    [site, packetRecId],
  );
  return rows[0] ? toServed(rows[0]) : undefined;
}

/** The reply already recorded for a packet, if any. */
export async function replyTo(q: Queryable, packetRecId: number): Promise<number | undefined> {
  const { rows } = await q.query<{ packet_rec_id: unknown }>(
    `SELECT packet_rec_id FROM ${SIM_SCHEMA}.packet_notes WHERE in_reply_to = $1`,
    [packetRecId],
  );
  return rows[0] ? toNumber(rows[0].packet_rec_id, 'packet_notes.packet_rec_id') : undefined;
}

export async function nextPacketId(q: Queryable, transRecId: number): Promise<number> {
  const { rows } = await q.query<{ next: unknown }>(
    'SELECT COALESCE(max(packet_id), 0) + 1 AS next FROM packet_tbl WHERE trans_rec_id = $1',
    [transRecId],
  );
  return toNumber(rows[0]!.next, 'next packet_id');
}

/** Records what the site's request changed about a packet; absent fields are left as they are. */
export async function notePacket(
  q: Queryable,
  packetRecId: number,
  note: { inReplyTo?: number; clientState?: string | null; clientJson?: unknown },
): Promise<void> {
  await q.query(
    `INSERT INTO ${SIM_SCHEMA}.packet_notes AS n (packet_rec_id, in_reply_to, client_state, client_json)
     VALUES ($1, $2, CASE WHEN $3 THEN $4 END, CASE WHEN $5 THEN $6::jsonb END)
     ON CONFLICT (packet_rec_id) DO UPDATE SET
       in_reply_to  = COALESCE(EXCLUDED.in_reply_to, n.in_reply_to),
       client_state = CASE WHEN $3 THEN EXCLUDED.client_state ELSE n.client_state END,
       client_json  = CASE WHEN $5 THEN EXCLUDED.client_json ELSE n.client_json END,
       updated_at   = now()`,
    [
      packetRecId,
      note.inReplyTo ?? null,
      note.clientState !== undefined,
      note.clientState ?? null,
      note.clientJson !== undefined,
      note.clientJson === undefined || note.clientJson === null ? null : JSON.stringify(note.clientJson),
    ],
  );
}
