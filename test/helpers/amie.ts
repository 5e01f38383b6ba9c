import pino from 'pino';
import type { Database } from '../../src/db/index.js';
import { PacketBody, type PacketTypeName, type TagValue } from '../../src/protocol/index.js';
import { initDatabase, openTransaction, writePacket } from '../../src/store/index.js';

export const SITE = { name: 'EXAMPLE', resource: 'cluster.example.org', remoteSite: 'TGCDB' };

/** A logger that writes nothing (tests read the audit table, not the log). */
export const quietLog = pino({ level: 'silent' });

export function racTags(n: number, extra: Record<string, TagValue> = {}): Record<string, TagValue> {
  return {
    GrantNumber: 'TG-ABC123',
    ProjectID: 'p-abc123',
    ResourceList: [SITE.resource],
    UserFirstName: `Ann${n}`,
    UserLastName: "O'Neil",
    UserOrganization: 'Example University',
    UserOrgCode: '0012345',
    UserRequestedLoginList: [''],
    ...extra,
  };
}

/** Opens a central-originated transaction and puts one incoming in-progress packet in it. */
export async function seedIncoming(
  db: Database,
  type: PacketTypeName,
  tags: Record<string, TagValue>,
  opts: { packetId?: number; transRecId?: number } = {},
): Promise<{ transRecId: number; packetRecId: number }> {
  return db.transaction(async (tx) => {
    const transRecId =
      opts.transRecId ??
      (
        await openTransaction(tx, {
          originatingSiteName: SITE.remoteSite,
          localSiteName: SITE.name,
          remoteSiteName: SITE.remoteSite,
        })
      ).transRecId;
    const { packetRecId } = await writePacket(tx, {
      transRecId,
      packetId: opts.packetId ?? 1,
      type,
      rows: PacketBody.fromTags(tags).toRows(),
      outgoing: false,
    });
    return { transRecId, packetRecId };
  });
}

export async function initTestDatabase(db: Database): Promise<void> {
  await initDatabase(db);
}

/** Outgoing packets with their type names and bodies, oldest first. */
export async function outgoingPackets(db: Database) {
  const { rows } = await db.query<{
    packet_rec_id: number;
    trans_rec_id: number;
    packet_id: string;
    type_name: string;
    state_id: string;
  }>(
    `SELECT p.packet_rec_id, p.trans_rec_id, p.packet_id::text, td.type_name, p.state_id::text
       FROM packet_tbl p JOIN type_des td ON td.type_id = p.type_id
      WHERE p.outgoing_flag = 1 ORDER BY p.packet_rec_id`,
  );
  const out = [];
  for (const r of rows) {
    const { rows: data } = await db.query<{ tag: string; subtag: string | null; seq: number; value: string | null }>(
      'SELECT tag, subtag, seq, value FROM data_tbl WHERE packet_rec_id = $1',
      [r.packet_rec_id],
    );
    out.push({ ...r, packetId: Number(r.packet_id), body: PacketBody.fromRows(data).toJSON() });
  }
  return out;
}

export async function packetState(db: Database, packetRecId: number): Promise<number> {
  const { rows } = await db.query<{ state_id: string }>(
    'SELECT state_id::text FROM packet_tbl WHERE packet_rec_id = $1',
    [packetRecId],
  );
  return Number(rows[0]?.state_id);
}

export async function auditOf(db: Database, packetRecId: number) {
  const { rows } = await db.query<{ outcome: string; reason: string | null; reply_type: string | null }>(
    'SELECT outcome, reason, reply_type FROM amie_toolkit.audit WHERE packet_rec_id = $1 ORDER BY audit_id',
    [packetRecId],
  );
  return rows;
}

/**
 * Many RAC transactions at once, one statement, as the transfer daemon would leave them.
 * Each request is for a different person (first name "Ann<n>", last name "O'Neil<n>").
 */
export async function seedRacs(db: Database, n: number, firstTransactionId = 900000): Promise<void> {
  const rows = PacketBody.fromTags(racTags(0)).toRows();
  await db.query(
    `WITH t AS (
       INSERT INTO transaction_tbl (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id)
       SELECT $7, $8::bigint + g, $2, $7, 2 FROM generate_series(1, $1::int) g RETURNING trans_rec_id, transaction_id),
     p AS (
       INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       SELECT trans_rec_id, 1, 16, '1.0', 2, 0 FROM t RETURNING packet_rec_id, trans_rec_id),
     n AS (SELECT p.packet_rec_id, t.transaction_id - $8::bigint AS k FROM p JOIN t USING (trans_rec_id))
     INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
     SELECT n.packet_rec_id, x.tag, x.subtag, x.seq,
            CASE x.tag WHEN 'UserFirstName' THEN 'Ann' || n.k WHEN 'UserLastName' THEN x.value || n.k ELSE x.value END
       FROM n, unnest($3::text[], $4::text[], $5::int[], $6::text[]) AS x(tag, subtag, seq, value)`,
    [
      n,
      SITE.name,
      rows.map((r) => r.tag),
      rows.map((r) => r.subtag),
      rows.map((r) => r.seq),
      rows.map((r) => r.value),
      SITE.remoteSite,
      firstTransactionId,
    ],
  );
}
