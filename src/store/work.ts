import type { Queryable } from '../db/index.js';
import type { Migration } from './migration.js';
import { PACKET_TYPE_IDS, STATE_IDS, type DataRow, type PacketTypeName } from '../protocol/ids.js';

/**
 * The dispatcher's statements: claiming work and recording what became of it. Each is one round trip: claiming a batch brings the
 * packets, their data, the opening request of their transaction and their error count;
 * answering writes the reply, its data, its expected reply, the handled packet's state and
 * the audit row together.
 */

const OPENING_REQUEST_TYPES = [PACKET_TYPE_IDS.request_project_create, PACKET_TYPE_IDS.request_account_create];

export interface ClaimedRow {
  packet_rec_id: number;
  trans_rec_id: number;
  packet_id: string;
  type_id: string;
  version: string;
  ts: Date;
  originating_site_name: string;
  transaction_id: string;
  local_site_name: string;
  remote_site_name: string;
  trans_state_id: string;
  trans_ts: Date;
  data: Array<[string, string | null, number, string | null]>;
  request: null | {
    packet_rec_id: number;
    packet_id: string | number;
    type_id: string | number;
    data: Array<[string, string | null, number, string | null]>;
  };
  error_count: number;
}

/** Which packets a configuration answers: its site (local_site_name) and the resources it serves. */
export interface SiteScope {
  name: string;
  /** The one-resource form; stands for `resources` when that is not given. */
  resource: string;
  resources?: readonly string[];
}

/** The resources of a scope as compared: trimmed, lower case (ResourceList text is compared the same way). */
export function scopeResources(site: SiteScope): string[] {
  return (site.resources?.length ? site.resources : [site.resource]).map((r) => r.trim().toLowerCase());
}

/** The resource a packet is about, for matching against a scope: its first non-blank ResourceList entry, trimmed, lower case. */
export function resourceKey(values: readonly string[]): string | null {
  return values.map((v) => v.trim().toLowerCase()).find((v) => v !== '') ?? null;
}

/** How long a packet for another configuration may wait before `amie process` (and status checks) warn about it. */
export const FOREIGN_WARNING_AGE_MS = 24 * 60 * 60 * 1000;

/**
 * SQL condition: packet `p` of transaction `t` is this configuration's to answer. The transaction
 * must be this site's (local_site_name, exactly: an expression on it would hide the column's
 * statistics from the planner, which then sorts every pending packet to claim a batch) and the
 * packet's resource one of the scope's
 * ($site: the site name, $resources: scopeResources()). A packet's resource is its own ResourceList,
 * or, for packets that carry none (DPC, DAC, ITC), that of the RPC/RAC that opened the transaction.
 * A packet with no resource at all is the site's: request_user_modify and request_person_merge are
 * about a person, not a resource, and a request whose ResourceList is missing or blank is malformed
 * for this site (validation fails it) rather than someone else's.
 */
export function thisScopeSql(p: string, t: string, siteParam: string, resourcesParam: string): string {
  const resourceList = (packet: string) =>
    `SELECT lower(btrim(d.value)) FROM data_tbl d
      WHERE d.packet_rec_id = ${packet}.packet_rec_id AND d.tag = 'ResourceList' AND d.subtag IS NULL AND btrim(d.value) <> ''`;
  return `(${t}.local_site_name = ${siteParam}::text
       AND COALESCE(
             COALESCE((${resourceList(p)} ORDER BY d.seq LIMIT 1),
                      (SELECT (${resourceList('o')} ORDER BY d.seq LIMIT 1)
                         FROM packet_tbl o
                        WHERE o.trans_rec_id = ${p}.trans_rec_id AND o.outgoing_flag = 0
                          AND o.type_id IN (${OPENING_REQUEST_TYPES.join(', ')})
                        ORDER BY o.packet_id LIMIT 1))
             = ANY(${resourcesParam}::text[]),
           true))`;
}

/**
 * A pending packet a pass has seen and left pending ("stuck": `amie packets list --stuck`, the
 * status page): a handler error counted, or a last audited outcome that kept it. Over the aliases
 * `e` (amie_toolkit.packet_errors) and `a` (the packet's latest amie_toolkit.audit row).
 */
export const LEFT_PENDING_BY_A_PASS = `(e.error_count > 0 OR a.outcome IN ('defer', 'error', 'unhandled'))`;

/** Pending incoming packets of in-progress transactions: what a claim chooses from. */
const PENDING_INCOMING = `p.outgoing_flag = 0 AND p.state_id = ${STATE_IDS['in-progress']} AND t.state_id = ${STATE_IDS['in-progress']}`;

/**
 * Locks up to `limit` pending incoming packets (and their transactions) for this run.
 * SKIP LOCKED lets concurrent runs take disjoint batches; a transaction whose
 * transaction_depends_tbl prerequisites are not completed is not offered at all, and a packet
 * outside `site` (another site's transaction, another resource) is never locked: it is left as
 * it is for the configuration that serves it.
 */
export async function claimBatch(
  q: Queryable,
  opts: {
    limit: number;
    exclude: readonly number[];
    only?: readonly number[];
    types?: readonly PacketTypeName[];
    site: SiteScope;
  },
): Promise<ClaimedRow[]> {
  const typeIds = opts.types?.length ? opts.types.map((t) => PACKET_TYPE_IDS[t]) : null;
  const { rows } = await q.query<ClaimedRow>(
    `SELECT p.packet_rec_id, p.trans_rec_id, p.packet_id::text AS packet_id, p.type_id::text AS type_id, p.version, p.ts,
            t.originating_site_name, t.transaction_id::text AS transaction_id, t.local_site_name, t.remote_site_name,
            t.state_id::text AS trans_state_id, t.ts AS trans_ts,
            COALESCE((SELECT json_agg(json_build_array(d.tag, d.subtag, d.seq, d.value))
                        FROM data_tbl d WHERE d.packet_rec_id = p.packet_rec_id), '[]'::json) AS data,
            (SELECT json_build_object('packet_rec_id', r.packet_rec_id, 'packet_id', r.packet_id, 'type_id', r.type_id,
                      'data', COALESCE((SELECT json_agg(json_build_array(d.tag, d.subtag, d.seq, d.value))
                                          FROM data_tbl d WHERE d.packet_rec_id = r.packet_rec_id), '[]'::json))
               FROM packet_tbl r
              WHERE r.trans_rec_id = p.trans_rec_id AND r.outgoing_flag = 0 AND r.type_id = ANY($4::numeric[])
                AND r.packet_rec_id <> p.packet_rec_id
              ORDER BY r.packet_id LIMIT 1) AS request,
            COALESCE(e.error_count, 0)::int AS error_count
       FROM packet_tbl p
       JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
       LEFT JOIN amie_toolkit.packet_errors e ON e.source = 'tables' AND e.packet_rec_id = p.packet_rec_id
      WHERE ${PENDING_INCOMING}
        AND ${thisScopeSql('p', 't', '$6', '$7')}
        AND NOT (p.packet_rec_id = ANY($1::int[]))
        AND ($2::numeric[] IS NULL OR p.type_id = ANY($2::numeric[]))
        AND ($5::int[] IS NULL OR p.packet_rec_id = ANY($5::int[]))
        AND NOT EXISTS (SELECT 1 FROM transaction_depends_tbl dep
                          JOIN transaction_tbl pre ON pre.trans_rec_id = dep.depends_on_trans_rec_id
                         WHERE dep.trans_rec_id = p.trans_rec_id AND pre.state_id <> ${STATE_IDS.completed})
      ORDER BY p.packet_rec_id
      LIMIT $3
      FOR UPDATE OF p, t SKIP LOCKED`,
    [
      opts.exclude,
      typeIds,
      opts.limit,
      OPENING_REQUEST_TYPES,
      opts.only ?? null,
      opts.site.name,
      scopeResources(opts.site),
    ],
  );
  return rows;
}

/**
 * How many pending incoming packets (tables source) no configuration of this scope takes and
 * have waited longer than `olderThanMs`: packets of another resource or site that nobody answers
 * when the configuration serving them is missing or not running.
 */
export async function countForeignWaiting(
  q: Queryable,
  site: SiteScope,
  olderThanMs: number = FOREIGN_WARNING_AGE_MS,
): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n
       FROM packet_tbl p JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
      WHERE ${PENDING_INCOMING} AND NOT ${thisScopeSql('p', 't', '$1', '$2')}
        AND p.ts < localtimestamp - make_interval(secs => $3::double precision)`,
    [site.name, scopeResources(site), olderThanMs / 1000],
  );
  return rows[0]?.n ?? 0;
}

/** SQL condition for `amie packets list --foreign` (aliases p, t; parameters as thisScopeSql). */
export function foreignPendingSql(siteParam: string, resourcesParam: string): string {
  return `(${PENDING_INCOMING} AND NOT ${thisScopeSql('p', 't', siteParam, resourcesParam)})`;
}

export function rowsFromJson(data: ClaimedRow['data']): DataRow[] {
  return data.map(([tag, subtag, seq, value]) => ({ tag, subtag, seq: Number(seq), value }));
}

export interface AuditEntry {
  runId: string;
  packetRecId: number;
  transRecId: number;
  packetType: string;
  outcome: string;
  reason?: string | null;
  durationMs: number;
  handler: string;
}

export interface ReplyToWrite {
  type: PacketTypeName;
  rows: readonly DataRow[];
  expectedReply: { type: PacketTypeName; timeoutMinutes: number } | null;
}

/**
 * Which packet source a row of amie_toolkit.audit or packet_errors is about: the AMIE tables and
 * the REST API number their packets independently, so a packet_rec_id alone names no packet.
 */
export type PacketSourceKind = 'tables' | 'rest';

/**
 * CTEs of a decisions statement (either source) that keep the error counts: a completed packet's
 * (`upd`: its packet_rec_id) is forgotten, a handler error's (`d`: packet_rec_id, complete,
 * count_error, reason) goes up.
 */
export function errorCountCtes(source: PacketSourceKind): string {
  return `ce AS (DELETE FROM amie_toolkit.packet_errors e USING upd WHERE e.source = '${source}' AND e.packet_rec_id = upd.packet_rec_id),
     pe AS (
       INSERT INTO amie_toolkit.packet_errors AS e (source, packet_rec_id, error_count, last_error)
       SELECT '${source}', packet_rec_id, 1, reason FROM d WHERE d.count_error AND NOT d.complete
       ON CONFLICT (source, packet_rec_id) DO UPDATE SET error_count = e.error_count + 1, last_error = EXCLUDED.last_error, updated_at = now())`;
}

/**
 * Ids that come from outside (the REST API's packet_rec_id and trans_rec_id, 3,000,000,000 and
 * beyond) are bigint wherever the toolkit keeps them, and the audit and error counts say which
 * source a packet_rec_id belongs to. Rows from before are the tables' unless their id is only
 * known as a REST packet. The toolkit names the source in every row it writes; the default is
 * for rows written by hand or by older code (the tables were the only source before REST).
 */
export const SOURCE_IDS_MIGRATION: Migration = {
  id: '0007-bigint-ids-and-source',
  sql: `
ALTER TABLE amie_toolkit.audit
  ALTER COLUMN packet_rec_id TYPE bigint, ALTER COLUMN trans_rec_id TYPE bigint, ALTER COLUMN reply_packet_rec_id TYPE bigint,
  ADD COLUMN source text NOT NULL DEFAULT 'tables' CHECK (source IN ('tables', 'rest'));
ALTER TABLE amie_toolkit.packet_errors
  ALTER COLUMN packet_rec_id TYPE bigint,
  ADD COLUMN source text NOT NULL DEFAULT 'tables' CHECK (source IN ('tables', 'rest'));
UPDATE amie_toolkit.audit a SET source = 'rest'
 WHERE EXISTS (SELECT 1 FROM amie_toolkit.rest_packets r WHERE r.packet_rec_id = a.packet_rec_id)
   AND NOT EXISTS (SELECT 1 FROM packet_tbl p WHERE p.packet_rec_id = a.packet_rec_id);
UPDATE amie_toolkit.packet_errors e SET source = 'rest'
 WHERE EXISTS (SELECT 1 FROM amie_toolkit.rest_packets r WHERE r.packet_rec_id = e.packet_rec_id)
   AND NOT EXISTS (SELECT 1 FROM packet_tbl p WHERE p.packet_rec_id = e.packet_rec_id);
ALTER TABLE amie_toolkit.packet_errors DROP CONSTRAINT packet_errors_pkey, ADD PRIMARY KEY (source, packet_rec_id);
DROP INDEX IF EXISTS amie_toolkit.audit_packet;
CREATE INDEX audit_packet ON amie_toolkit.audit (source, packet_rec_id);
ALTER TABLE amie_toolkit.allocation_history ALTER COLUMN packet_rec_id TYPE bigint;
ALTER TABLE amie_toolkit.rpc_records ALTER COLUMN packet_rec_id TYPE bigint;
`,
};

/** One handled packet's fate, as `recordDecisions` writes it. */
export interface DecisionToWrite {
  /** completed: the packet is done (with `reply`, or none); pending: it stays to be offered again. */
  state: 'completed' | 'pending';
  reply: ReplyToWrite | null;
  /** A handler exception: the packet's error count goes up. */
  countError: boolean;
  audit: AuditEntry;
}

/**
 * Records a whole batch of decisions in one statement: completed packets change state and get
 * their replies (packet, data rows, expected reply), error counts go up or are forgotten, and
 * every decision gets its audit row. A reply's packet_id is the next one in its transaction: the
 * claim holds the transaction rows locked, so max()+1 cannot race another writer.
 * Returns the reply packet_rec_id of each decision (null without a reply), in order; throws when
 * a packet to complete was no longer in progress, so the caller's transaction rolls back.
 */
export async function recordDecisions(
  q: Queryable,
  decisions: readonly DecisionToWrite[],
): Promise<Array<number | null>> {
  if (decisions.length === 0) return [];
  const d = decisions.map((x, i) => ({
    i,
    packet_rec_id: x.audit.packetRecId,
    trans_rec_id: x.audit.transRecId,
    complete: x.state === 'completed',
    count_error: x.countError,
    reply_type_id: x.reply ? PACKET_TYPE_IDS[x.reply.type] : null,
    expected_type_id: x.reply?.expectedReply ? PACKET_TYPE_IDS[x.reply.expectedReply.type] : null,
    timeout: x.reply?.expectedReply?.timeoutMinutes ?? null,
    data: x.reply ? x.reply.rows.map((r) => [r.tag, r.subtag, r.seq, r.value]) : null,
    run_id: x.audit.runId,
    packet_type: x.audit.packetType,
    outcome: x.audit.outcome,
    reason: x.audit.reason ?? null,
    reply_type: x.reply?.type ?? null,
    duration_ms: x.audit.durationMs,
    handler: x.audit.handler,
  }));
  const { rows } = await q.query<{ completed: number; replies: Array<[number, number]> | null }>(
    `WITH d AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
         i int, packet_rec_id int, trans_rec_id int, complete boolean, count_error boolean, reply_type_id numeric,
         expected_type_id numeric, timeout int, data jsonb, run_id text, packet_type text, outcome text, reason text,
         reply_type text, duration_ms int, handler text)),
     upd AS (
       UPDATE packet_tbl p SET state_id = ${STATE_IDS.completed}
         FROM d WHERE d.complete AND p.packet_rec_id = d.packet_rec_id AND p.state_id = ${STATE_IDS['in-progress']}
       RETURNING p.packet_rec_id),
     -- The reply's packet_rec_id is drawn here, so that its data rows need no join back to the
     -- inserted packets (a join of two CTEs, which the planner cannot size, is a nested loop).
     r AS (
       SELECT d.i, d.trans_rec_id, d.reply_type_id, d.expected_type_id, d.timeout, d.data,
              nextval(pg_get_serial_sequence('packet_tbl', 'packet_rec_id'))::int AS reply_rec_id,
              (SELECT COALESCE(max(x.packet_id), 0) FROM packet_tbl x WHERE x.trans_rec_id = d.trans_rec_id)
                + row_number() OVER (PARTITION BY d.trans_rec_id ORDER BY d.i) AS packet_id
         FROM d JOIN upd ON upd.packet_rec_id = d.packet_rec_id
        WHERE d.reply_type_id IS NOT NULL),
     rp AS (
       INSERT INTO packet_tbl (packet_rec_id, trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       SELECT reply_rec_id, trans_rec_id, packet_id, reply_type_id, '1.0', ${STATE_IDS['in-progress']}, 1 FROM r),
     rd AS (
       INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
       SELECT r.reply_rec_id, e->>0, e->>1, (e->>2)::int, e->>3 FROM r, jsonb_array_elements(r.data) AS e),
     er AS (
       INSERT INTO expected_reply_tbl (packet_rec_id, type_id, timeout)
       SELECT reply_rec_id, expected_type_id, timeout FROM r WHERE expected_type_id IS NOT NULL),
     ${errorCountCtes('tables')},
     au AS (
       INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason,
                                       reply_packet_rec_id, reply_type, duration_ms, handler)
       SELECT 'tables', d.run_id, d.packet_rec_id, d.trans_rec_id, d.packet_type, d.outcome, d.reason, r.reply_rec_id, d.reply_type, d.duration_ms, d.handler
         FROM d LEFT JOIN r ON r.i = d.i)
     SELECT (SELECT count(*) FROM upd)::int AS completed,
            (SELECT json_agg(json_build_array(i, reply_rec_id)) FROM r) AS replies`,
    [JSON.stringify(d)],
  );
  const toComplete = decisions.filter((x) => x.state === 'completed').length;
  if (rows[0]!.completed !== toComplete) {
    throw new Error(
      `${toComplete - rows[0]!.completed} of the batch's packets were no longer in progress when their outcome was written`,
    );
  }
  const ids: Array<number | null> = decisions.map(() => null);
  for (const [i, id] of rows[0]!.replies ?? []) ids[i] = id;
  return ids;
}

/**
 * Completes a handled packet: writes its reply (if any) with data and expected reply, marks the
 * packet completed, forgets its error count and records the audit row, in one statement.
 * Returns the reply's packet_rec_id, or null when no reply was written. The reply's packet_id is
 * the next one in the transaction: the claim holds the transaction row locked, so this max()+1
 * cannot race another writer.
 */
export async function completePacket(
  q: Queryable,
  audit: AuditEntry,
  reply: ReplyToWrite | null,
): Promise<number | null> {
  const rows = reply?.rows ?? [];
  const { rows: out } = await q.query<{ handled: number | null; reply: number | null }>(
    `WITH upd AS (
       UPDATE packet_tbl SET state_id = ${STATE_IDS.completed}
        WHERE packet_rec_id = $1 AND state_id = ${STATE_IDS['in-progress']} RETURNING packet_rec_id, trans_rec_id),
     rp AS (
       INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       SELECT upd.trans_rec_id,
              (SELECT COALESCE(max(x.packet_id), 0) + 1 FROM packet_tbl x WHERE x.trans_rec_id = upd.trans_rec_id),
              $2, '1.0', ${STATE_IDS['in-progress']}, 1
         FROM upd WHERE $2::numeric IS NOT NULL
       RETURNING packet_rec_id),
     rd AS (
       INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
       SELECT rp.packet_rec_id, x.tag, x.subtag, x.seq, x.value
         FROM rp, unnest($3::text[], $4::text[], $5::int[], $6::text[]) AS x(tag, subtag, seq, value)),
     er AS (
       INSERT INTO expected_reply_tbl (packet_rec_id, type_id, timeout)
       SELECT rp.packet_rec_id, $7, $8 FROM rp WHERE $7::numeric IS NOT NULL),
     ce AS (DELETE FROM amie_toolkit.packet_errors WHERE source = 'tables' AND packet_rec_id = $1),
     au AS (
       INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason,
                                       reply_packet_rec_id, reply_type, duration_ms, handler)
       SELECT 'tables', $9, $1, $10, $11, $12, $13, (SELECT packet_rec_id FROM rp), $14, $15, $16 FROM upd)
     SELECT (SELECT packet_rec_id FROM upd) AS handled, (SELECT packet_rec_id FROM rp) AS reply`,
    [
      audit.packetRecId,
      reply ? PACKET_TYPE_IDS[reply.type] : null,
      rows.map((r) => r.tag),
      rows.map((r) => r.subtag),
      rows.map((r) => r.seq),
      rows.map((r) => r.value),
      reply?.expectedReply ? PACKET_TYPE_IDS[reply.expectedReply.type] : null,
      reply?.expectedReply?.timeoutMinutes ?? null,
      audit.runId,
      audit.transRecId,
      audit.packetType,
      audit.outcome,
      audit.reason ?? null,
      reply?.type ?? null,
      audit.durationMs,
      audit.handler,
    ],
  );
  if (out[0]?.handled == null) {
    throw new Error(`packet ${audit.packetRecId} was no longer in progress when its reply was written`);
  }
  return out[0].reply ?? null;
}

/**
 * Leaves a packet in progress and records why. With `countError` the packet's error count goes
 * up (handler exceptions); a deliberate deferral or an unhandled type leaves it alone.
 * Returns the new error count.
 */
export async function recordDeferral(q: Queryable, audit: AuditEntry, countError: boolean): Promise<number> {
  const { rows } = await q.query<{ error_count: number | null }>(
    `WITH pe AS (
       INSERT INTO amie_toolkit.packet_errors AS e (source, packet_rec_id, error_count, last_error)
       SELECT 'tables', $1, 1, $2 WHERE $9
       ON CONFLICT (source, packet_rec_id) DO UPDATE SET error_count = e.error_count + 1, last_error = EXCLUDED.last_error, updated_at = now()
       RETURNING error_count),
     au AS (
       INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, duration_ms, handler)
       VALUES ('tables', $3, $1, $4, $5, $6, $2, $7, $8))
     SELECT (SELECT error_count FROM pe) AS error_count`,
    [
      audit.packetRecId,
      audit.reason ?? null,
      audit.runId,
      audit.transRecId,
      audit.packetType,
      audit.outcome,
      audit.durationMs,
      audit.handler,
      countError,
    ],
  );
  return rows[0]?.error_count ?? 0;
}

/** Makes a deferred or failed packet pending again: state in-progress, error count cleared. */
export async function reofferPacket(q: Queryable, packetRecId: number, runId: string): Promise<boolean> {
  const { rows } = await q.query<{ packet_rec_id: number }>(
    `WITH p AS (
       UPDATE packet_tbl SET state_id = ${STATE_IDS['in-progress']}
        WHERE packet_rec_id = $1 AND outgoing_flag = 0 RETURNING packet_rec_id, trans_rec_id, type_id),
     ce AS (DELETE FROM amie_toolkit.packet_errors WHERE source = 'tables' AND packet_rec_id = $1),
     au AS (
       INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, duration_ms, handler)
       SELECT 'tables', $2, p.packet_rec_id, p.trans_rec_id, COALESCE(td.type_name, p.type_id::text), 'retry', 'offered again by an operator', 0, 'amie packets retry'
         FROM p LEFT JOIN type_des td ON td.type_id = p.type_id)
     SELECT packet_rec_id FROM p`,
    [packetRecId, runId],
  );
  return rows.length > 0;
}
