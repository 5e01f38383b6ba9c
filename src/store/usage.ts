/**
 * The usage reporter's books: which job allocations were reported (so each is reported
 * once), and each run's window (so the next run knows where to continue).
 */
import type { Queryable } from '../db/index.js';
import { DEFAULT_REPLY_TIMEOUT_MINUTES, PACKET_TYPE_IDS, STATE_IDS, type DataRow } from '../protocol/ids.js';
import { TOOLKIT_SCHEMA, type Migration } from './migration.js';
import { toDate, toNumber } from './records.js';

const S = TOOLKIT_SCHEMA;

/**
 * A job is identified by (cluster, job id as sacct displays it, submit time). A requeued job
 * keeps its id but each run of it is a separate accounting record with its own submit time:
 * slurmdbd itself keys job records by (id, submit time), which is why Slurm gives the requeued
 * run a new one. So same id + same submit is the same record, seen again by an overlapping
 * window; same id + new submit is a new run to report. Start time is kept beside it so an
 * operator can tell the runs apart.
 *
 * status: `reported` (in the AMIE tables, or accepted by the Usage API), `pending` (claimed for
 * the Usage API but no answer recorded yet: a crash left it, the next run sends it again), or
 * `failed` (the Usage API refused it; `reason` has the server's words).
 */
export const USAGE_MIGRATION: Migration = {
  id: '0004_usage',
  sql: `
CREATE TABLE IF NOT EXISTS ${S}.usage_runs (
  run_id           bigserial PRIMARY KEY,
  started_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  status           text NOT NULL DEFAULT 'running',
  sink             text NOT NULL,
  since            timestamptz NOT NULL,
  until            timestamptz NOT NULL,
  jobs_seen        int NOT NULL DEFAULT 0,
  reported         int NOT NULL DEFAULT 0,
  already_reported int NOT NULL DEFAULT 0,
  failed           int NOT NULL DEFAULT 0,
  skipped          jsonb NOT NULL DEFAULT '{}'::jsonb,
  error            text
);
CREATE INDEX IF NOT EXISTS usage_runs_finished ON ${S}.usage_runs (sink, until) WHERE status = 'finished';
CREATE TABLE IF NOT EXISTS ${S}.reported_jobs (
  cluster       text NOT NULL,
  job_id        text NOT NULL,
  submit_time   timestamptz NOT NULL,
  start_time    timestamptz,
  end_time      timestamptz NOT NULL,
  account       text NOT NULL,
  project_id    text NOT NULL,
  user_login    text NOT NULL,
  charge        numeric NOT NULL,
  charge_unit   text NOT NULL,
  sink          text NOT NULL,
  status        text NOT NULL CHECK (status IN ('reported', 'pending', 'failed')),
  reason        text,
  packet_rec_id int,
  api_status    int,
  record        jsonb,
  attempts      int NOT NULL DEFAULT 0,
  run_id        bigint,
  reported_at   timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (cluster, job_id, submit_time)
);
CREATE INDEX IF NOT EXISTS reported_jobs_open ON ${S}.reported_jobs (status, updated_at) WHERE status <> 'reported';
CREATE INDEX IF NOT EXISTS reported_jobs_project ON ${S}.reported_jobs (project_id, end_time);
`,
};

export type ReportedJobStatus = 'reported' | 'pending' | 'failed';

export interface ReportedJobKey {
  cluster: string;
  jobId: string;
  submitTime: Date;
}

export interface ReportedJobRow extends ReportedJobKey {
  startTime: Date | null;
  endTime: Date;
  account: string;
  projectId: string;
  userLogin: string;
  charge: number;
  chargeUnit: string;
  sink: string;
  /** The Usage API record as sent, so a resend sends exactly it; null for the amie-db sink. */
  record?: unknown;
}

export function reportedJobKey(k: ReportedJobKey): string {
  return `${k.cluster}\u0000${k.jobId}\u0000${k.submitTime.getTime()}`;
}

interface KeyRow {
  cluster: string;
  job_id: string;
  submit_time: unknown;
}

const keyOfRow = (r: KeyRow) =>
  reportedJobKey({
    cluster: r.cluster,
    jobId: r.job_id,
    submitTime: toDate(r.submit_time, 'reported_jobs.submit_time'),
  });

/**
 * Records jobs as reported (or, with `status: 'pending'`, as claimed for sending) and returns
 * the positions in `rows` of those that were genuinely new: a job already in the table drops
 * out through ON CONFLICT, which also waits for a concurrent run's uncommitted claim instead of
 * racing it. With `reclaimPending`, a `pending` row a crashed run left behind is claimed again,
 * keeping the record it holds: that record may have reached the server, so it is what must be
 * sent again (the same LocalRecordID), even when this version would build it differently.
 * `record` of each claimed row is the one to send. `rows` must not hold the same key twice.
 */
export async function claimReportedJobs(
  q: Queryable,
  rows: readonly ReportedJobRow[],
  opts: { status: 'reported' | 'pending'; runId: number | null; reclaimPending?: boolean },
): Promise<Array<{ index: number; record: unknown }>> {
  if (rows.length === 0) return [];
  const conflict = opts.reclaimPending
    ? `ON CONFLICT (cluster, job_id, submit_time) DO UPDATE
         SET run_id = EXCLUDED.run_id, record = coalesce(${S}.reported_jobs.record, EXCLUDED.record), updated_at = now()
         WHERE ${S}.reported_jobs.status = 'pending'`
    : 'ON CONFLICT (cluster, job_id, submit_time) DO NOTHING';
  const { rows: claimed } = await q.query<KeyRow & { record: unknown }>(
    `INSERT INTO ${S}.reported_jobs
       (cluster, job_id, submit_time, start_time, end_time, account, project_id, user_login, charge, charge_unit,
        sink, status, record, run_id)
     SELECT r.cluster, r.job_id, r.submit_time, r.start_time, r.end_time, r.account, r.project_id, r.user_login,
            r.charge, r.charge_unit, r.sink, $13, r.record, $14
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::text[],
                   $7::text[], $8::text[], $9::numeric[], $10::text[], $11::text[], $12::jsonb[])
            AS r(cluster, job_id, submit_time, start_time, end_time, account, project_id, user_login, charge,
                 charge_unit, sink, record)
     ${conflict}
     RETURNING cluster, job_id, submit_time, record`,
    [
      rows.map((r) => r.cluster),
      rows.map((r) => r.jobId),
      rows.map((r) => r.submitTime.toISOString()),
      rows.map((r) => r.startTime?.toISOString() ?? null),
      rows.map((r) => r.endTime.toISOString()),
      rows.map((r) => r.account),
      rows.map((r) => r.projectId),
      rows.map((r) => r.userLogin),
      rows.map((r) => String(r.charge)),
      rows.map((r) => r.chargeUnit),
      rows.map((r) => r.sink),
      rows.map((r) => (r.record === undefined || r.record === null ? null : JSON.stringify(r.record))),
      opts.status,
      opts.runId,
    ],
  );
  const fresh = new Map(
    claimed.map((c) => [keyOfRow(c), typeof c.record === 'string' ? (JSON.parse(c.record) as unknown) : c.record]),
  );
  const out: Array<{ index: number; record: unknown }> = [];
  rows.forEach((r, i) => {
    const key = reportedJobKey(r);
    if (fresh.has(key)) out.push({ index: i, record: fresh.get(key) ?? null });
  });
  return out;
}

/** Which of `keys` the table already holds, in any status (for dry runs). */
export async function findReportedJobs(
  q: Queryable,
  keys: readonly ReportedJobKey[],
): Promise<Map<string, ReportedJobStatus>> {
  if (keys.length === 0) return new Map();
  const { rows } = await q.query<KeyRow & { status: ReportedJobStatus }>(
    `SELECT j.cluster, j.job_id, j.submit_time, j.status
       FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(cluster, job_id, submit_time)
       JOIN ${S}.reported_jobs j USING (cluster, job_id, submit_time)`,
    [keys.map((k) => k.cluster), keys.map((k) => k.jobId), keys.map((k) => k.submitTime.toISOString())],
  );
  return new Map(rows.map((r) => [keyOfRow(r), r.status]));
}

export interface UsagePacketToWrite {
  /** The reported_jobs row this packet reports; gets the packet_rec_id. */
  key: ReportedJobKey;
  rows: readonly DataRow[];
}

/**
 * Opens one site-originated transaction per packet and writes the notify_project_usage
 * packets (packet id 1, outgoing, in-progress), all their data rows and their expected
 * inform_transaction_complete, and links each reported_jobs row to its packet: one statement
 * for the whole batch, whatever its size. Returns the packet_rec_ids in input order.
 */
export async function writeUsagePackets(
  q: Queryable,
  site: { localSiteName: string; remoteSiteName: string },
  packets: readonly UsagePacketToWrite[],
): Promise<number[]> {
  if (packets.length === 0) return [];
  const n: number[] = [];
  const tag: string[] = [];
  const subtag: (string | null)[] = [];
  const seq: number[] = [];
  const value: (string | null)[] = [];
  packets.forEach((p, i) => {
    for (const r of p.rows) {
      n.push(i + 1);
      tag.push(r.tag);
      subtag.push(r.subtag);
      seq.push(r.seq);
      value.push(r.value);
    }
  });
  // Serial values within one INSERT are not promised to follow the SELECT's order, so each
  // transaction is numbered by its trans_rec_id and the packets are joined through that number.
  const { rows } = await q.query<{ n: unknown; packet_rec_id: unknown }>(
    `WITH t AS (
       INSERT INTO transaction_tbl (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id)
       SELECT $1, nextval('${S}.transaction_id_seq'), $1, $2, $4 FROM generate_series(1, $3::int)
       RETURNING trans_rec_id
     ), tn AS (
       SELECT trans_rec_id, row_number() OVER (ORDER BY trans_rec_id) AS n FROM t
     ), p AS (
       INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       SELECT trans_rec_id, 1, $5, '1.0', $4, 1 FROM tn
       RETURNING packet_rec_id, trans_rec_id
     ), pn AS (
       SELECT p.packet_rec_id, tn.n FROM p JOIN tn USING (trans_rec_id)
     ), d AS (
       INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
       SELECT pn.packet_rec_id, r.tag, r.subtag, r.seq, r.value
         FROM unnest($6::int[], $7::text[], $8::text[], $9::int[], $10::text[]) AS r(n, tag, subtag, seq, value)
         JOIN pn ON pn.n = r.n
     ), e AS (
       INSERT INTO expected_reply_tbl (packet_rec_id, type_id, timeout)
       SELECT packet_rec_id, $11, $12 FROM pn
     ), j AS (
       UPDATE ${S}.reported_jobs rj SET packet_rec_id = pn.packet_rec_id, updated_at = now()
         FROM unnest($13::text[], $14::text[], $15::timestamptz[]) WITH ORDINALITY AS k(cluster, job_id, submit_time, n)
         JOIN pn ON pn.n = k.n
        WHERE rj.cluster = k.cluster AND rj.job_id = k.job_id AND rj.submit_time = k.submit_time
     )
     SELECT n, packet_rec_id FROM pn ORDER BY n`,
    [
      site.localSiteName,
      site.remoteSiteName,
      packets.length,
      STATE_IDS['in-progress'],
      PACKET_TYPE_IDS.notify_project_usage,
      n,
      tag,
      subtag,
      seq,
      value,
      PACKET_TYPE_IDS.inform_transaction_complete,
      DEFAULT_REPLY_TIMEOUT_MINUTES,
      packets.map((p) => p.key.cluster),
      packets.map((p) => p.key.jobId),
      packets.map((p) => p.key.submitTime.toISOString()),
    ],
  );
  return rows.map((r) => toNumber(r.packet_rec_id, 'packet_tbl.packet_rec_id'));
}

export interface ApiOutcome {
  key: ReportedJobKey;
  status: 'reported' | 'failed';
  /** The server's reason for a failed record. */
  reason?: string | null;
  /** HTTP status of the answer that decided the record. */
  httpStatus?: number | null;
}

/** Records the Usage API's verdict on each claimed job, in one statement. */
export async function recordApiOutcomes(q: Queryable, outcomes: readonly ApiOutcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  await q.query(
    `UPDATE ${S}.reported_jobs rj
        SET status = o.status, reason = o.reason, api_status = o.http_status, attempts = rj.attempts + 1,
            reported_at = CASE WHEN o.status = 'reported' THEN now() ELSE rj.reported_at END, updated_at = now()
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::int[])
            AS o(cluster, job_id, submit_time, status, reason, http_status)
      WHERE rj.cluster = o.cluster AND rj.job_id = o.job_id AND rj.submit_time = o.submit_time`,
    [
      outcomes.map((o) => o.key.cluster),
      outcomes.map((o) => o.key.jobId),
      outcomes.map((o) => o.key.submitTime.toISOString()),
      outcomes.map((o) => o.status),
      outcomes.map((o) => o.reason ?? null),
      outcomes.map((o) => o.httpStatus ?? null),
    ],
  );
}

export interface StoredUsageRecord extends ReportedJobKey {
  status: ReportedJobStatus;
  reason: string | null;
  apiStatus: number | null;
  attempts: number;
  account: string;
  projectId: string;
  userLogin: string;
  charge: number;
  endTime: Date;
  updatedAt: Date;
  record: unknown;
}

/**
 * Usage API records not (yet) accepted: failed ones, and pending ones a crashed run left.
 * `status` narrows to one of them, `jobIds` to those jobs (before `limit` applies).
 */
export async function listUnreportedJobs(
  q: Queryable,
  opts: {
    status?: 'failed' | 'pending';
    limit?: number;
    keys?: readonly ReportedJobKey[];
    jobIds?: readonly string[];
  } = {},
): Promise<StoredUsageRecord[]> {
  const { rows } = await q.query<{
    cluster: string;
    job_id: string;
    submit_time: unknown;
    status: ReportedJobStatus;
    reason: string | null;
    api_status: number | null;
    attempts: number;
    account: string;
    project_id: string;
    user_login: string;
    charge: string;
    end_time: unknown;
    updated_at: unknown;
    record: unknown;
  }>(
    `SELECT cluster, job_id, submit_time, status, reason, api_status, attempts, account, project_id, user_login,
            charge::text AS charge, end_time, updated_at, record
       FROM ${S}.reported_jobs j
      WHERE status <> 'reported' AND ($1::text IS NULL OR status = $1)
        AND ($3::text[] IS NULL OR (cluster, job_id, submit_time) IN (
              SELECT * FROM unnest($3::text[], $4::text[], $5::timestamptz[])))
        AND ($6::text[] IS NULL OR job_id = ANY($6::text[]))
      ORDER BY end_time, cluster, job_id
      LIMIT $2`,
    [
      opts.status ?? null,
      opts.limit ?? null,
      opts.keys ? opts.keys.map((k) => k.cluster) : null,
      opts.keys ? opts.keys.map((k) => k.jobId) : null,
      opts.keys ? opts.keys.map((k) => k.submitTime.toISOString()) : null,
      opts.jobIds ? [...opts.jobIds] : null,
    ],
  );
  return rows.map((r) => ({
    cluster: r.cluster,
    jobId: r.job_id,
    submitTime: toDate(r.submit_time, 'reported_jobs.submit_time'),
    status: r.status,
    reason: r.reason,
    apiStatus: r.api_status === null ? null : Number(r.api_status),
    attempts: Number(r.attempts),
    account: r.account,
    projectId: r.project_id,
    userLogin: r.user_login,
    charge: Number(r.charge),
    endTime: toDate(r.end_time, 'reported_jobs.end_time'),
    updatedAt: toDate(r.updated_at, 'reported_jobs.updated_at'),
    record: (typeof r.record === 'string' ? JSON.parse(r.record) : r.record) as unknown,
  }));
}

export interface UsageRunCounts {
  jobsSeen: number;
  reported: number;
  alreadyReported: number;
  failed: number;
  skipped: Record<string, number>;
}

export async function startUsageRun(q: Queryable, run: { sink: string; since: Date; until: Date }): Promise<number> {
  const { rows } = await q.query<{ run_id: unknown }>(
    `INSERT INTO ${S}.usage_runs (sink, since, until) VALUES ($1, $2, $3) RETURNING run_id`,
    [run.sink, run.since.toISOString(), run.until.toISOString()],
  );
  return toNumber(rows[0]!.run_id, 'usage_runs.run_id');
}

export async function finishUsageRun(
  q: Queryable,
  runId: number,
  counts: UsageRunCounts,
  outcome: { status: 'finished' | 'failed'; error?: string },
): Promise<void> {
  await q.query(
    `UPDATE ${S}.usage_runs
        SET finished_at = now(), status = $2, jobs_seen = $3, reported = $4, already_reported = $5, failed = $6,
            skipped = $7::jsonb, error = $8
      WHERE run_id = $1`,
    [
      runId,
      outcome.status,
      counts.jobsSeen,
      counts.reported,
      counts.alreadyReported,
      counts.failed,
      JSON.stringify(counts.skipped),
      outcome.error ?? null,
    ],
  );
}

/**
 * Where the last run that read its whole window stopped. A run that crashed or failed does not
 * count: the next run starts from the last good one and the reported-jobs table drops what the
 * failed one did report.
 */
export async function lastUsageRunUntil(q: Queryable, sink: string): Promise<Date | undefined> {
  const { rows } = await q.query<{ until: unknown }>(
    `SELECT max(until) AS until FROM ${S}.usage_runs WHERE status = 'finished' AND sink = $1`,
    [sink],
  );
  const u = rows[0]?.until;
  return u === null || u === undefined ? undefined : toDate(u, 'usage_runs.until');
}

/**
 * Slurm account → ProjectID from the registry, when its projects table has a slurm_account
 * column (the Slurm handler fills it). Absent table or column: an empty map, not an error.
 */
export async function loadRegistrySlurmAccounts(q: Queryable): Promise<Map<string, string>> {
  const { rows: has } = await q.query<{ n: unknown }>(
    `SELECT count(*) AS n FROM information_schema.columns
      WHERE table_schema = $1 AND table_name = 'projects' AND column_name = 'slurm_account'`,
    [S],
  );
  if (Number(has[0]?.n ?? 0) === 0) return new Map();
  const { rows } = await q.query<{ slurm_account: string; project_id: string }>(
    `SELECT slurm_account, project_id FROM ${S}.projects WHERE slurm_account IS NOT NULL AND slurm_account <> ''`,
  );
  return new Map(rows.map((r) => [r.slurm_account, r.project_id]));
}

/**
 * Usage alerts already posted: one row per project, allocation period and threshold, written
 * in the same transaction that posts the message, so a rerun does not repeat it and a message
 * Slack did not take leaves no row (the next run posts it). `period` names the allocation
 * period: `h` and the allocation_history id of the `new` or `renewal` that opened it.
 */
export const USAGE_ALERTS_MIGRATION: Migration = {
  id: '0009-usage-alerts',
  sql: `
CREATE TABLE IF NOT EXISTS ${S}.usage_alerts (
  project_id   text    NOT NULL,
  period       text    NOT NULL,
  threshold    numeric NOT NULL,
  period_start date,
  period_end   date,
  percent_used numeric NOT NULL,
  charged      numeric NOT NULL,
  allocated    numeric NOT NULL,
  unit         text    NOT NULL,
  sent_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, period, threshold)
);
`,
};

export interface UsageAlertRow {
  projectId: string;
  period: string;
  threshold: number;
  periodStart: string | null;
  periodEnd: string | null;
  percentUsed: number;
  charged: number;
  allocated: number;
  unit: string;
}

/** The (period, threshold) pairs already alerted for these projects, as `project\0period\0threshold` keys. */
export async function sentUsageAlerts(q: Queryable, projectIds: readonly string[]): Promise<Set<string>> {
  if (projectIds.length === 0) return new Set();
  const { rows } = await q.query<{ project_id: string; period: string; threshold: string }>(
    `SELECT project_id, period, threshold::text AS threshold FROM ${S}.usage_alerts WHERE project_id = ANY($1::text[])`,
    [[...projectIds]],
  );
  return new Set(rows.map((r) => usageAlertKey(r.project_id, r.period, Number(r.threshold))));
}

export function usageAlertKey(projectId: string, period: string, threshold: number): string {
  return `${projectId}\u0000${period}\u0000${threshold}`;
}

/**
 * Records an alert as posted; false when it already was (another run got there first: on
 * PostgreSQL the insert waits for that run's transaction and then finds its row).
 */
export async function claimUsageAlert(q: Queryable, a: UsageAlertRow): Promise<boolean> {
  const { rows } = await q.query(
    `INSERT INTO ${S}.usage_alerts
       (project_id, period, threshold, period_start, period_end, percent_used, charged, allocated, unit)
     VALUES ($1, $2, $3, $4::date, $5::date, $6, $7, $8, $9)
     ON CONFLICT (project_id, period, threshold) DO NOTHING
     RETURNING 1`,
    [
      a.projectId,
      a.period,
      String(a.threshold),
      a.periodStart,
      a.periodEnd,
      String(a.percentUsed),
      String(a.charged),
      String(a.allocated),
      a.unit,
    ],
  );
  return rows.length === 1;
}
