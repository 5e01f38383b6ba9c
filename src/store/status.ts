import type { Queryable } from '../db/index.js';
import { STATE_IDS } from '../protocol/ids.js';
import { TOOLKIT_SCHEMA, type Migration } from './migration.js';
import type { PacketSourceKind } from './work.js';
import { runLockHeldSql } from './run-lock.js';

const S = TOOLKIT_SCHEMA;

/**
 * When `amie process` last finished a pass, per packet source: a pass that finds nothing to do
 * leaves no audit row, so without this a monitor could not tell an idle site from a dead cron.
 * One row per source, overwritten by each pass.
 */
export const PROCESS_PASSES_MIGRATION: Migration = {
  id: '0008-process-passes',
  sql: `
CREATE TABLE IF NOT EXISTS ${S}.process_passes (
  source      text PRIMARY KEY CHECK (source IN ('tables', 'rest')),
  run_id      text NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  taken       int NOT NULL,
  problems    int NOT NULL
);
`,
};

/** Records a finished pass of `amie process` (one statement per pass, not per packet). */
export async function recordProcessPass(
  q: Queryable,
  pass: { source: PacketSourceKind; runId: string; taken: number; problems: number },
): Promise<void> {
  await q.query(
    `INSERT INTO ${S}.process_passes (source, run_id, finished_at, taken, problems) VALUES ($1, $2, now(), $3, $4)
     ON CONFLICT (source) DO UPDATE SET run_id = EXCLUDED.run_id, finished_at = EXCLUDED.finished_at, taken = EXCLUDED.taken, problems = EXCLUDED.problems`,
    [pass.source, pass.runId, pass.taken, pass.problems],
  );
}

/**
 * The incoming packets waiting for the handler, as a query of (packet_rec_id, age in seconds):
 * what `amie status` counts and the status page lists, one definition for both.
 */
export function pendingIncomingSql(source: PacketSourceKind): string {
  return source === 'tables'
    ? `SELECT p.packet_rec_id, extract(epoch FROM localtimestamp - p.ts) AS age
         FROM packet_tbl p JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
        WHERE p.outgoing_flag = 0 AND p.state_id = ${STATE_IDS['in-progress']} AND t.state_id = ${STATE_IDS['in-progress']}`
    : `SELECT packet_rec_id, extract(epoch FROM now() - first_seen_at) AS age FROM ${S}.rest_packets WHERE state = 'pending'`;
}

/** What `amie status` judges, read in one statement. Ages are seconds; null when there is nothing to age. */
export interface StatusFigures {
  source: PacketSourceKind;
  /** Packets by direction and state name (AMIE tables) or by the REST source's own states. */
  packets: Array<{ direction: 'in' | 'out'; state: string; count: number }>;
  /** Incoming packets waiting for the handler. */
  pending: number;
  oldestPendingAgeSeconds: number | null;
  /** Pending packets a handler exception deferred (an error count above 0). */
  errorDeferred: number;
  /** Packets answered with a failure (fail, invalid) in the last 24 hours. */
  failedLastDay: number;
  /** REST replies written but not yet accepted by the server. */
  outboxUnsent: number;
  oldestUnsentAgeSeconds: number | null;
  /** REST replies the server refused (kept for the record). */
  outboxRefused: number;
  usageFailed: number;
  usagePending: number;
  /** Usage records pending longer than the threshold given to readStatusFigures. */
  usagePendingTooLong: number;
  /** End of the last finished `amie process` pass, or null when none is recorded. */
  lastPassAt: Date | null;
  lastPassAgeSeconds: number | null;
  /** Whether an `amie process` run of the configuration holds its run lock now (see run-lock.ts). */
  runInProgress: boolean;
  /** How long the connection holding it has been open (about the run's age), when the server shows it. */
  runAgeSeconds: number | null;
}

/**
 * Every figure of `amie status` in one statement: monitoring runs it every few minutes, so it
 * costs one round trip. `runLockKey` is the configuration's run lock, to tell whether a run is
 * at work now. The AMIE tables' packet_tbl.ts is a `timestamp` in the session's zone
 * (its default is CURRENT_TIMESTAMP), so its ages are taken against localtimestamp.
 */
export async function readStatusFigures(
  q: Queryable,
  opts: { source: PacketSourceKind; usagePendingSeconds: number; runLockKey?: number },
): Promise<StatusFigures> {
  const tables = opts.source === 'tables';
  const pending = pendingIncomingSql(opts.source);
  const packets = tables
    ? `SELECT CASE WHEN p.outgoing_flag = 1 THEN 'out' ELSE 'in' END AS direction, coalesce(s.state_name, p.state_id::text) AS state, count(*)::int AS count
         FROM packet_tbl p LEFT JOIN state_des s ON s.state_id = p.state_id GROUP BY 1, 2`
    : `SELECT 'in' AS direction, state, count(*)::int AS count FROM ${S}.rest_packets GROUP BY state
       UNION ALL SELECT 'out', status, count(*)::int FROM ${S}.rest_outbox GROUP BY status`;
  const { rows } = await q.query<Record<string, unknown>>(
    `WITH pending AS (${pending}),
          usage AS (SELECT status, updated_at FROM ${S}.reported_jobs WHERE status <> 'reported'),
          run AS (SELECT a.backend_start FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE ${runLockHeldSql('$3')})
     SELECT (SELECT count(*) FROM pending)::int AS pending,
            (SELECT max(age) FROM pending)::float8 AS oldest_pending_age,
            (SELECT count(*) FROM pending JOIN ${S}.packet_errors e ON e.source = $1 AND e.packet_rec_id = pending.packet_rec_id
              WHERE e.error_count > 0)::int AS error_deferred,
            (SELECT count(*) FROM ${S}.audit WHERE source = $1 AND outcome IN ('fail', 'invalid') AND at > now() - interval '24 hours')::int AS failed_last_day,
            (SELECT count(*) FROM ${S}.rest_outbox WHERE status = 'unsent')::int AS outbox_unsent,
            (SELECT extract(epoch FROM now() - min(created_at)) FROM ${S}.rest_outbox WHERE status = 'unsent')::float8 AS oldest_unsent_age,
            (SELECT count(*) FROM ${S}.rest_outbox WHERE status = 'refused')::int AS outbox_refused,
            (SELECT count(*) FROM usage WHERE status = 'failed')::int AS usage_failed,
            (SELECT count(*) FROM usage WHERE status = 'pending')::int AS usage_pending,
            (SELECT count(*) FROM usage WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $2))::int AS usage_pending_too_long,
            (SELECT finished_at FROM ${S}.process_passes WHERE source = $1) AS last_pass_at,
            (SELECT extract(epoch FROM now() - finished_at) FROM ${S}.process_passes WHERE source = $1)::float8 AS last_pass_age,
            (SELECT count(*) FROM run)::int AS runs_in_progress,
            (SELECT extract(epoch FROM now() - min(backend_start)) FROM run)::float8 AS run_age,
            (SELECT coalesce(json_agg(json_build_object('direction', direction, 'state', state, 'count', count) ORDER BY direction, state), '[]'::json)
               FROM (${packets}) c) AS packets`,
    [opts.source, opts.usagePendingSeconds, opts.runLockKey ?? null],
  );
  const r = rows[0]!;
  const num = (v: unknown) => Number(v ?? 0);
  const age = (v: unknown) => (v === null || v === undefined ? null : Math.max(0, Math.floor(Number(v))));
  const packetCounts = (typeof r.packets === 'string' ? JSON.parse(r.packets) : r.packets) as StatusFigures['packets'];
  return {
    source: opts.source,
    packets: packetCounts.map((p) => ({ direction: p.direction, state: String(p.state), count: Number(p.count) })),
    pending: num(r.pending),
    oldestPendingAgeSeconds: age(r.oldest_pending_age),
    errorDeferred: num(r.error_deferred),
    failedLastDay: num(r.failed_last_day),
    outboxUnsent: num(r.outbox_unsent),
    oldestUnsentAgeSeconds: age(r.oldest_unsent_age),
    outboxRefused: num(r.outbox_refused),
    usageFailed: num(r.usage_failed),
    usagePending: num(r.usage_pending),
    usagePendingTooLong: num(r.usage_pending_too_long),
    lastPassAt: r.last_pass_at ? new Date(r.last_pass_at as string | Date) : null,
    lastPassAgeSeconds: age(r.last_pass_age),
    runInProgress: num(r.runs_in_progress) > 0,
    runAgeSeconds: age(r.run_age),
  };
}
