/**
 * What the status page (`amie report --html`) shows, read from the database into a plain model:
 * no HTML here, so the figures can be tested without a page and the page rendered without a
 * database. Every query is read-only and bounded (a window of days, a limit on listed rows).
 */
import type { AmieConfig } from '../config/index.js';
import { configuredHandler } from '../config/schema.js';
import type { Queryable } from '../db/index.js';
import { PacketBody } from '../protocol/index.js';
import {
  LEFT_PENDING_BY_A_PASS,
  pendingIncomingSql,
  readStatusFigures,
  runLockKey,
  type PacketSourceKind,
  type StatusFigures,
} from '../store/index.js';
import { toDate, toNumber } from '../store/records.js';
import { chargeRuleOf, defaultUsageConfig, type UsageConfig } from '../usage/config.js';
import { describeProjection, usageByDay, usageSummary } from '../usage/summary.js';
import type { SlurmDrift } from '../slurm/check.js';

const S = 'amie_toolkit';

export interface ReportOptions {
  /** Days of history the page covers, ending now. */
  days: number;
  /** At most this many rows in each list (failures, stuck packets). */
  limit: number;
  /** "Now" (default: the clock of this process); tests fix it. */
  now?: Date;
  /**
   * Reads the drift between the registry and Slurm (`amie slurm check`); null when the handler is
   * not the Slurm handler. The caller supplies it because the check needs the handler and Slurm.
   */
  drift?: () => Promise<SlurmDrift | null>;
}

/** One bar segment: the packets of one type that got one outcome on one (UTC) day. */
export interface DailyPackets {
  /** YYYY-MM-DD, UTC. */
  day: string;
  type: string;
  outcome: string;
  packets: number;
}

/** A received packet a pass has left pending (deferred, handler errors, unhandled). */
export interface StuckPacket {
  packetRecId: number;
  type: string | null;
  /** Seconds since it arrived. */
  ageSeconds: number;
  errors: number;
  lastOutcome: string | null;
  lastReason: string | null;
  lastAt: Date | null;
  /** Who or what the packet is about (names, ProjectID, ...): packet text, shown escaped. */
  subject: string;
}

/** A packet answered with a failure (fail: the handler refused it; invalid: its body was unusable). */
export interface FailedPacket {
  at: Date;
  packetRecId: number;
  type: string;
  outcome: string;
  reason: string | null;
  subject: string;
}

/** One project's usage against its current allocation, as `amie usage summary` computes it, over time. */
export interface ProjectUsageSeries {
  projectId: string;
  grantNumber: string;
  /** The current allocation, in `unit`. */
  allocation: number;
  startDate: string | null;
  endDate: string | null;
  active: boolean;
  /** Charged in the current allocation period, as reported (accepted records). */
  used: number;
  /** When it runs out at the rate of the last 30 days, in words. */
  runsOut: string;
  /** Cumulative charge at the end of each day with usage, within the allocation period. */
  series: Array<{ day: string; used: number }>;
}

export interface UsageSection {
  /** The configured charge unit, the unit of every amount. */
  unit: string;
  projects: ProjectUsageSeries[];
  /** Usage records not accepted (yet): they are not counted above. */
  unreported: { pending: number; failed: number };
}

/** What the page reads of the configuration. */
export type ReportConfig = Pick<AmieConfig, 'site' | 'source' | 'handler'> & {
  usage?: Pick<UsageConfig, 'charge'> | undefined;
};

/** Counts of differences between the registry and Slurm, by kind, from `amie slurm check`. */
export interface DriftSection {
  checkedAt: Date | null;
  counts: Array<{ kind: string; count: number }>;
}

export interface ReportModel {
  generatedAt: Date;
  site: string;
  source: PacketSourceKind;
  handler: string | null;
  days: number;
  /** Start of the window: the first day shown, 00:00 UTC. */
  since: Date;
  packetsPerDay: DailyPackets[];
  status: StatusFigures;
  stuck: StuckPacket[];
  failures: FailedPacket[];
  /** Failures in the window, also those beyond `limit`. */
  failureCount: number;
  /** null: not available (see `notAvailable`). */
  usage: UsageSection | null;
  drift: DriftSection | null;
  /** Why a section is absent, by section name, shown on the page in its place. */
  notAvailable: Partial<Record<'usage' | 'drift', string>>;
}

/** Reads everything the page shows. The database must be prepared (`prepareDatabase`). */
export async function gatherReport(q: Queryable, config: ReportConfig, opts: ReportOptions): Promise<ReportModel> {
  const now = opts.now ?? new Date();
  const since = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - (opts.days - 1)));
  const source = config.source.kind;
  const handler = configuredHandler(config);
  const status = await readStatusFigures(q, {
    source,
    usagePendingSeconds: 2 * 3600,
    runLockKey: runLockKey(config.site),
  });
  const packetsPerDay = await gatherPacketsPerDay(q, source, since);
  const stuck = await gatherStuck(q, source, opts.limit);
  const { failures, failureCount } = await gatherFailures(q, source, since, opts.limit);
  const subjects = await packetSubjects(q, source, [
    ...stuck.map((s) => s.packetRecId),
    ...failures.map((f) => f.packetRecId),
  ]);
  for (const p of [...stuck, ...failures]) p.subject = subjects.get(p.packetRecId) ?? '';
  const notAvailable: ReportModel['notAvailable'] = {};
  const usage = await gatherUsage(q, config, now);
  if (usage) usage.unreported = { pending: status.usagePending, failed: status.usageFailed };
  if (!usage) notAvailable.usage = 'no project is in the registry';
  let drift: DriftSection | null = null;
  try {
    const found = opts.drift ? await opts.drift() : null;
    if (found) drift = driftSection(found, now);
    else notAvailable.drift = 'only for the slurm handler (drift between the registry and Slurm)';
  } catch (err) {
    // Slurm down must not cost the rest of the page: the section says why it is missing.
    notAvailable.drift = `amie slurm check failed: ${(err as Error).message}`;
  }
  return {
    generatedAt: now,
    site: config.site.name,
    source,
    handler,
    days: opts.days,
    since,
    packetsPerDay,
    status,
    stuck,
    failures,
    failureCount,
    usage,
    drift,
    notAvailable,
  };
}

/**
 * The handler's decisions per day, packet type and outcome, from the audit. A packet deferred
 * on Monday and answered on Tuesday counts once on each day, with each day's outcome.
 */
async function gatherPacketsPerDay(q: Queryable, source: PacketSourceKind, since: Date): Promise<DailyPackets[]> {
  const { rows } = await q.query<{ day: string; type: string; outcome: string; packets: unknown }>(
    `SELECT to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, a.packet_type AS type, a.outcome,
            count(DISTINCT a.packet_rec_id)::int AS packets
       FROM ${S}.audit a
      WHERE a.source = $1 AND a.at >= $2
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    [source, since.toISOString()],
  );
  return rows.map((r) => ({ day: r.day, type: r.type, outcome: r.outcome, packets: Number(r.packets) }));
}

/** Pending packets a pass has seen and left pending: what `amie packets list --stuck` lists. */
async function gatherStuck(q: Queryable, source: PacketSourceKind, limit: number): Promise<StuckPacket[]> {
  const { rows } = await q.query<{
    packet_rec_id: unknown;
    age: unknown;
    errors: unknown;
    packet_type: string | null;
    outcome: string | null;
    reason: string | null;
    at: unknown;
  }>(
    `WITH pending AS (${pendingIncomingSql(source)})
     SELECT pending.packet_rec_id::float8 AS packet_rec_id, pending.age::float8 AS age,
            coalesce(e.error_count, 0)::int AS errors, a.packet_type, a.outcome, a.reason, a.at
       FROM pending
       LEFT JOIN ${S}.packet_errors e ON e.source = $1 AND e.packet_rec_id = pending.packet_rec_id
       LEFT JOIN LATERAL (SELECT x.packet_type, x.outcome, x.reason, x.at FROM ${S}.audit x
                           WHERE x.source = $1 AND x.packet_rec_id = pending.packet_rec_id
                           ORDER BY x.audit_id DESC LIMIT 1) a ON true
      WHERE ${LEFT_PENDING_BY_A_PASS}
      ORDER BY pending.age DESC, pending.packet_rec_id
      LIMIT $2`,
    [source, limit],
  );
  return rows.map((r) => ({
    packetRecId: toNumber(r.packet_rec_id, 'packet_rec_id'),
    type: r.packet_type,
    ageSeconds: Math.max(0, Math.floor(Number(r.age ?? 0))),
    errors: Number(r.errors),
    lastOutcome: r.outcome,
    lastReason: r.reason,
    lastAt: r.at === null || r.at === undefined ? null : toDate(r.at, 'audit.at'),
    subject: '',
  }));
}

/** Packets answered with a failure in the window, newest first. */
async function gatherFailures(
  q: Queryable,
  source: PacketSourceKind,
  since: Date,
  limit: number,
): Promise<{ failures: FailedPacket[]; failureCount: number }> {
  const { rows } = await q.query<{
    at: unknown;
    packet_rec_id: unknown;
    packet_type: string;
    outcome: string;
    reason: string | null;
    total: unknown;
  }>(
    `SELECT a.at, a.packet_rec_id::float8 AS packet_rec_id, a.packet_type, a.outcome, a.reason, count(*) OVER ()::int AS total
       FROM ${S}.audit a
      WHERE a.source = $1 AND a.outcome IN ('fail', 'invalid') AND a.at >= $2
      ORDER BY a.audit_id DESC
      LIMIT $3`,
    [source, since.toISOString(), limit],
  );
  return {
    failureCount: rows.length ? Number(rows[0]!.total) : 0,
    failures: rows.map((r) => ({
      at: toDate(r.at, 'audit.at'),
      packetRecId: toNumber(r.packet_rec_id, 'packet_rec_id'),
      type: r.packet_type,
      outcome: r.outcome,
      reason: r.reason,
      subject: '',
    })),
  };
}

/** Tags that say whom or what a packet is about, in the order shown. */
const SUBJECT_TAGS = [
  'UserFirstName',
  'UserLastName',
  'PiFirstName',
  'PiLastName',
  'PersonID',
  'UserPersonID',
  'PiPersonID',
  'ProjectID',
  'GrantNumber',
] as const;

/**
 * A short "who/what" per packet (e.g. `Ann O'Neil, p-abc123, TG-ABC123`), read from the
 * packets' bodies: data_tbl for the AMIE tables, the stored JSON for the REST source.
 */
async function packetSubjects(q: Queryable, source: PacketSourceKind, ids: number[]): Promise<Map<number, string>> {
  const unique = [...new Set(ids)];
  const bodies = new Map<number, PacketBody>();
  if (unique.length === 0) return new Map();
  if (source === 'tables') {
    const { rows } = await q.query<{
      packet_rec_id: unknown;
      tag: string;
      subtag: string | null;
      seq: unknown;
      value: string | null;
    }>(
      `SELECT packet_rec_id::float8 AS packet_rec_id, tag, subtag, seq, value FROM data_tbl
        WHERE packet_rec_id = ANY($1::int[]) AND tag = ANY($2::text[])`,
      [unique, [...SUBJECT_TAGS]],
    );
    const byPacket = new Map<
      number,
      Array<{ tag: string; subtag: string | null; seq: number; value: string | null }>
    >();
    for (const r of rows) {
      const id = Number(r.packet_rec_id);
      const list = byPacket.get(id) ?? [];
      list.push({ tag: r.tag, subtag: r.subtag, seq: Number(r.seq), value: r.value });
      byPacket.set(id, list);
    }
    for (const [id, list] of byPacket) bodies.set(id, PacketBody.fromRows(list));
  } else {
    const { rows } = await q.query<{ packet_rec_id: unknown; body: unknown }>(
      `SELECT packet_rec_id::float8 AS packet_rec_id, packet->'body' AS body FROM ${S}.rest_packets
        WHERE packet_rec_id = ANY($1::bigint[])`,
      [unique],
    );
    for (const r of rows)
      bodies.set(
        Number(r.packet_rec_id),
        PacketBody.fromJSON(typeof r.body === 'string' ? JSON.parse(r.body) : r.body),
      );
  }
  const out = new Map<number, string>();
  for (const [id, body] of bodies) out.set(id, subjectOf(body));
  return out;
}

export function subjectOf(body: PacketBody): string {
  const get = (tag: string) => body.get(tag) ?? '';
  const parts = [
    [get('UserFirstName'), get('UserLastName')].filter(Boolean).join(' '),
    [get('PiFirstName'), get('PiLastName')].filter(Boolean).join(' '),
    get('PersonID') || get('UserPersonID') || get('PiPersonID'),
    get('ProjectID'),
    get('GrantNumber'),
  ];
  return [...new Set(parts.filter(Boolean))].join(', ');
}

/**
 * Per-project usage over time against the allocation: `amie usage summary`'s figures (the
 * registry's current allocations, the usage charged in each period, in the configured charge
 * unit) and its usage by day, summed day by day within each project's current period.
 * null when the registry holds no project (a site with another handler).
 */
export async function gatherUsage(
  q: Queryable,
  config: Pick<ReportConfig, 'usage'>,
  now: Date,
): Promise<UsageSection | null> {
  const unit = chargeRuleOf(config.usage ?? defaultUsageConfig()).unit;
  const summary = await usageSummary(q, { unit, now });
  if (summary.length === 0) return null;
  const byProject = new Map<string, Array<{ day: string; charged: number }>>();
  // Only days some project's current period can show: older usage is not read at all.
  const starts = summary.map((p) => p.startDate);
  const since = starts.includes(null) ? undefined : new Date(`${[...starts].sort()[0]}T00:00:00Z`);
  for (const d of await usageByDay(q, { unit, until: now, ...(since ? { since } : {}) })) {
    const list = byProject.get(d.project) ?? [];
    list.push(d);
    byProject.set(d.project, list);
  }
  return {
    unit,
    projects: summary.map((p) => {
      let used = 0;
      const series = (byProject.get(p.projectId) ?? [])
        // The period runs from StartDate to the end of EndDate, as the summary counts it.
        .filter((d) => (!p.startDate || d.day >= p.startDate) && (!p.endDate || d.day <= p.endDate))
        .map((d) => ({ day: d.day, used: (used += d.charged) }));
      return {
        projectId: p.projectId,
        grantNumber: p.grantNumber,
        allocation: p.allocated,
        startDate: p.startDate,
        endDate: p.endDate,
        active: p.active,
        used: p.charged,
        runsOut: describeProjection(p),
        series,
      };
    }),
    unreported: { pending: 0, failed: 0 },
  };
}

/** The drift section: `amie slurm check`'s differences counted by kind, as of `checkedAt`. */
export function driftSection(drift: SlurmDrift, checkedAt: Date): DriftSection {
  const counts = new Map<string, number>();
  for (const d of drift.differences) counts.set(d.kind, (counts.get(d.kind) ?? 0) + 1);
  return {
    checkedAt,
    counts: [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([kind, count]) => ({ kind, count })),
  };
}
