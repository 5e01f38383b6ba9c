import pino from 'pino';
import type { Database } from '../../src/db/index.js';
import { AmieHandler, type HandlerResult, type IncomingPacket } from '../../src/dispatch/index.js';
import { createLogger, type Logger } from '../../src/log.js';
import { PacketBody, type PacketTypeName, type StateName, type TagValue } from '../../src/protocol/index.js';
import { initDatabase, openTransaction, writePacket } from '../../src/store/index.js';

export const SITE = { name: 'EXAMPLE', resource: 'cluster.example.org', remoteSite: 'TGCDB' };

/** type_des as the protocol reference lists it (§2), written out rather than derived from the code under test. */
export const TYPE_DES: Array<[number, string]> = [
  [1, 'data_account_create'],
  [2, 'data_project_create'],
  [3, 'inform_transaction_complete'],
  [4, 'notify_account_inactivate'],
  [5, 'notify_account_reactivate'],
  [6, 'notify_account_create'],
  [7, 'notify_project_create'],
  [8, 'notify_project_inactivate'],
  [9, 'notify_project_modify'],
  [10, 'notify_project_reactivate'],
  [11, 'notify_project_resources'],
  [12, 'notify_project_usage'],
  [13, 'notify_user_modify'],
  [14, 'notify_user_reactivate'],
  [15, 'notify_user_suspend'],
  [16, 'request_account_create'],
  [17, 'request_account_inactivate'],
  [18, 'request_account_reactivate'],
  [19, 'request_project_create'],
  [20, 'request_project_inactivate'],
  [21, 'request_project_modify'],
  [22, 'request_project_reactivate'],
  [23, 'request_project_resources'],
  [24, 'request_user_modify'],
  [25, 'request_user_reactivate'],
  [26, 'request_user_suspend'],
  [27, 'request_user_create'],
  [28, 'notify_user_create'],
  [29, 'notify_person_ids'],
  [30, 'notify_person_duplicate'],
  [31, 'request_person_merge'],
];

/** A logger that writes nothing (tests read the audit table, not the log). */
export const quietLog = pino({ level: 'silent' });

/** The toolkit's logger at debug level, its JSON lines kept in `lines` for the test to read. */
export function capturedLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } }), lines };
}

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

/** The NAC a test site answers RAC `packetRecId` with: PersonID u-<packetRecId>, login zoe<packetRecId>. */
export function nacFor(packetRecId: number): HandlerResult<'notify_account_create'> {
  return {
    UserPersonID: `u-${packetRecId}`,
    UserRemoteSiteLogin: `zoe${packetRecId}`,
    AccountActivityTime: '2026-11-24T00:00:00Z',
  };
}

/** A site that answers every RAC with nacFor's NAC and leaves every other type unhandled. */
export class NacHandler extends AmieHandler {
  override async request_account_create(
    p: IncomingPacket<'request_account_create'>,
  ): Promise<HandlerResult<'notify_account_create'>> {
    return nacFor(p.packetRecId);
  }
}

/**
 * The request_project_create central sends for Jane Doe's project TG-ABC123 (50000 units from
 * July 2026 to June 2027), with `extra` over it.
 */
export function rpcTags(extra: Record<string, TagValue> = {}): Record<string, TagValue> {
  return {
    AllocationType: 'new',
    GrantNumber: 'TG-ABC123',
    PfosNumber: '1234567',
    PiFirstName: 'Jane',
    PiLastName: 'Doe',
    PiOrganization: 'Example University',
    PiOrgCode: '0012345',
    StartDate: '2026-07-01',
    EndDate: '2027-06-30',
    ResourceList: [SITE.resource],
    RecordID: 'rec-1',
    ServiceUnitsAllocated: '50000',
    ...extra,
  };
}

/** A PI as an RPC names them: a GlobalID, and a requested login when given. */
export interface RpcPi {
  first: string;
  last: string;
  globalId: string;
  login?: string;
}

/** The RPC of project `grant` (ProjectID `projectId`, titled "Project <grant>", 1000 units) led by `pi`. */
export function projectRpc(
  grant: string,
  projectId: string,
  pi: RpcPi,
  extra: Record<string, TagValue> = {},
): Record<string, TagValue> {
  return rpcTags({
    GrantNumber: grant,
    ProjectID: projectId,
    PiFirstName: pi.first,
    PiLastName: pi.last,
    PiGlobalID: pi.globalId,
    ...(pi.login === undefined ? {} : { PiRequestedLoginList: [pi.login] }),
    RecordID: `rec-${grant}`,
    ServiceUnitsAllocated: '1000',
    ProjectTitle: `Project ${grant}`,
    ...extra,
  });
}

/**
 * Opens a central-originated transaction (of `site`, this site unless given) and puts one packet
 * in it, incoming and in progress unless `outgoing` or `state` say otherwise.
 */
export async function seedIncoming(
  db: Database,
  type: PacketTypeName,
  tags: Record<string, TagValue>,
  opts: { packetId?: number; transRecId?: number; site?: string; state?: StateName; outgoing?: boolean } = {},
): Promise<{ transRecId: number; packetRecId: number }> {
  return db.transaction(async (tx) => {
    const transRecId =
      opts.transRecId ??
      (
        await openTransaction(tx, {
          originatingSiteName: SITE.remoteSite,
          localSiteName: opts.site ?? SITE.name,
          remoteSiteName: SITE.remoteSite,
        })
      ).transRecId;
    const { packetRecId } = await writePacket(tx, {
      transRecId,
      packetId: opts.packetId ?? 1,
      type,
      rows: PacketBody.fromTags(tags).toRows(),
      outgoing: opts.outgoing ?? false,
      state: opts.state ?? 'in-progress',
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
