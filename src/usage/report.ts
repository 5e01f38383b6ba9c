/**
 * The usage reporter: sacct → project mapping → charge → sink, each job once.
 *
 * Jobs stream through in batches; memory holds one batch and the per-project totals, never
 * the window. Exactly-once rests on the reported-jobs table (see src/store/usage.ts), so a
 * window may overlap the last one, and a run that crashed is simply run again.
 */
import { hostname } from 'node:os';
import type { Database, Queryable } from '../db/index.js';
import type { Logger } from '../log.js';
import {
  findReportedJobs,
  finishUsageRun,
  lastUsageRunUntil,
  listUnreportedJobs,
  reportedJobKey,
  type ReportedJobKey,
  startUsageRun,
  type UsageRunCounts,
} from '../store/usage.js';
import { UsageApiClient } from './api-client.js';
import { chargeJob, type ChargeUnit } from './charge.js';
import { chargeRuleOf, type UsageConfig, type UsageSinkName } from './config.js';
import { ProjectMapper } from './mapping.js';
import { isSacctSkip, readSacct, type SacctRecord } from './sacct.js';
import { AmieDbSink } from './sinks/amie-db.js';
import { jobKey, type ChargedJob, type UsageSink, type UsageSite } from './sinks/types.js';
import { UsageApiSink } from './sinks/usage-api.js';

const HOUR_MS = 3_600_000;

export interface UsageWindow {
  since: Date;
  until: Date;
  /** Why `since` is what it is, for the summary. */
  sinceFrom: 'option' | 'last-run' | 'first-run';
}

/**
 * The window of a run: `--since`/`--until` when given; otherwise from the end of the last
 * finished run minus `overlapHours` (late accounting records are still caught; jobs seen twice
 * are dropped by the reported-jobs table), and on the very first run `firstRunDays` back.
 */
export async function resolveUsageWindow(
  q: Queryable,
  opts: { since?: Date; until?: Date; sink: UsageSinkName; overlapHours: number; firstRunDays: number; now?: Date },
): Promise<UsageWindow> {
  const until = opts.until ?? opts.now ?? new Date();
  let since: Date;
  let sinceFrom: UsageWindow['sinceFrom'];
  if (opts.since) {
    since = opts.since;
    sinceFrom = 'option';
  } else {
    const last = await lastUsageRunUntil(q, opts.sink);
    if (last) {
      since = new Date(last.getTime() - opts.overlapHours * HOUR_MS);
      sinceFrom = 'last-run';
    } else {
      since = new Date(until.getTime() - opts.firstRunDays * 24 * HOUR_MS);
      sinceFrom = 'first-run';
    }
  }
  if (!(since.getTime() < until.getTime())) {
    throw new RangeError(`usage window: since ${since.toISOString()} must be before until ${until.toISOString()}`);
  }
  return { since, until, sinceFrom };
}

export interface UsageProgress {
  jobsSeen: number;
  reported: number;
  alreadyReported: number;
  failed: number;
  skipped: number;
}

export interface UsageReportSummary {
  runId: number | null;
  sink: UsageSinkName;
  dryRun: boolean;
  window: UsageWindow;
  chargeUnit: ChargeUnit;
  /** Finished job allocations read (sacct lines that are not jobs are counted under skipped). */
  jobsSeen: number;
  /** Reported by this run (dry run: would be reported). */
  reported: number;
  alreadyReported: number;
  /** Refused by the Usage API; `amie usage failed` lists them. */
  failed: number;
  /** Reason → count; unmapped accounts appear as `unmapped Slurm account NAME`. */
  skipped: Record<string, number>;
  /** Slurm account → jobs skipped because no project is mapped to it. */
  unmappedAccounts: Record<string, number>;
  /** ProjectID → charge of the jobs reported now, in `chargeUnit`. */
  chargePerProject: Record<string, number>;
  /** ProjectID → GPU-hours of the jobs reported now, whatever the charge unit. */
  gpuHoursPerProject: Record<string, number>;
  /** The first refusals, for the summary (all are in the reported-jobs table). */
  failures: Array<{ jobId: string; projectId: string; reason: string }>;
}

export interface ReportUsageOptions {
  site: UsageSite;
  usage: UsageConfig;
  since?: Date;
  until?: Date;
  /** Read, map and charge, say what would be reported, write nothing. */
  dryRun?: boolean;
  /** Overrides usage.sink. */
  sink?: UsageSinkName;
  /** XA-API-KEY for the usage-api sink (the caller reads it from usage.usageApi.apiKeyEnv). */
  apiKey?: string;
  /** Jobs from elsewhere instead of running sacct over the window (tests, benchmarks, site scripts). */
  records?: AsyncIterable<SacctRecord> | Iterable<SacctRecord>;
  /** A sink of the caller's own instead of the configured one. */
  sinkImpl?: UsageSink;
  log?: Logger;
  now?: () => Date;
  onProgress?: (p: UsageProgress) => void;
  /** Called after each batch is written (the CLI's progress line, crash tests). */
  onBatch?: (info: { batch: number; reported: number }) => void;
  signal?: AbortSignal;
}

/** Another run holds the usage lock of this database; the message names the holder and for how long. */
export class UsageRunBusyError extends Error {
  override name = 'UsageRunBusyError';
}

const USAGE_LOCK_KEY = 0x414d4955; // 'AMIU'

/** Holders within this process, for the embedded database (its directory lock keeps other processes out). */
const localHolders = new WeakMap<Database, { what: string; since: number }>();

/**
 * Runs `fn` while holding the database's usage lock, so two reporters (cron overlap), or a
 * reporter and `amie usage resend`, never send the same pending Usage API records at once.
 * On PostgreSQL an advisory lock held by an open transaction on a connection of its own, whose
 * application_name names the holder (`what`, pid, host) for as long as it holds it, so a run
 * that finds the lock taken can say who has it and since when. `what` is e.g. `amie report-usage`.
 */
export async function withUsageLock<T>(db: Database, what: string, fn: () => Promise<T>): Promise<T> {
  if (db.kind !== 'pg') {
    const held = localHolders.get(db);
    if (held) {
      throw new UsageRunBusyError(
        `the usage lock of ${db.description} is held by ${held.what} in this process ` +
          `(pid ${process.pid}) for ${formatHeld((Date.now() - held.since) / 1000)}; nothing was done`,
      );
    }
    localHolders.set(db, { what, since: Date.now() });
    try {
      return await fn();
    } finally {
      localHolders.delete(db);
    }
  }
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let gotLock!: (ok: boolean) => void;
  const locked = new Promise<boolean>((r) => (gotLock = r));
  const holder = db.transaction(async (tx) => {
    const { rows } = await tx.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS ok', [
      USAGE_LOCK_KEY,
    ]);
    const ok = rows[0]?.ok === true;
    // Local to this transaction: the pooled connection gets its own name back with the lock.
    if (ok)
      await tx.query(`SELECT set_config('application_name', $1, true)`, [
        `${what} pid ${process.pid} on ${hostname()}`,
      ]);
    gotLock(ok);
    if (ok) await released;
  });
  holder.catch(() => gotLock(false));
  const ok = await locked;
  if (!ok) {
    await holder.catch(() => undefined);
    throw new UsageRunBusyError(`${await describeUsageLockHolder(db)}; nothing was done`);
  }
  try {
    return await fn();
  } finally {
    release();
    await holder.catch(() => undefined);
  }
}

/** Who holds the usage lock and for how long, as far as pg_locks and pg_stat_activity tell this user. */
async function describeUsageLockHolder(db: Database): Promise<string> {
  const where = `the usage lock of ${db.description}`;
  const { rows } = await db
    .query<{ pid: number; application_name: string | null; client: string | null; held_seconds: number | null }>(
      // A bigint advisory key shows as classid = high half, objid = low half, objsubid = 1.
      `SELECT a.pid, a.application_name, coalesce(a.client_hostname, host(a.client_addr)) AS client,
              extract(epoch FROM now() - a.xact_start)::float8 AS held_seconds
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = $1 AND l.objid::bigint = $2
        LIMIT 1`,
      [Math.floor(USAGE_LOCK_KEY / 2 ** 32), USAGE_LOCK_KEY % 2 ** 32],
    )
    .catch(() => ({ rows: [] }));
  const h = rows[0];
  if (!h) return `${where} is held by another session (it may just have finished)`;
  // application_name is whatever the holding session set: quoted, so it stays one line.
  const name = h.application_name ? `${JSON.stringify(h.application_name)} ` : '';
  const client = h.client ? `, client ${h.client}` : '';
  const held =
    h.held_seconds === null
      ? 'for an unknown time (not visible to this database user)'
      : `for ${formatHeld(Number(h.held_seconds))}`;
  return `${where} is held by ${name}(PostgreSQL backend pid ${h.pid}${client}) ${held}`;
}

/** 42s, 5m 3s, 2h 5m, 3d 4h. */
function formatHeld(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Sorts sacct's reasons for a line that is not a reportable job into a few countable kinds. */
function skipKind(reason: string): string {
  if (/has not finished|has no End time/.test(reason)) return 'not finished yet';
  if (/job step/.test(reason)) return 'job step';
  if (/array range/.test(reason)) return 'array range never started';
  return 'unreadable sacct line';
}

function createSink(db: Database, opts: ReportUsageOptions, sinkName: UsageSinkName, log?: Logger): UsageSink {
  if (opts.sinkImpl) return opts.sinkImpl;
  if (sinkName === 'amie-db') return new AmieDbSink(db, opts.site, opts.now);
  const api = opts.usage.usageApi;
  if (!api) throw new UsageConfigMissing('usage.usageApi: the usage-api sink needs { url, apiKeyEnv }');
  if (!opts.apiKey)
    throw new UsageConfigMissing(`usage.usageApi.apiKeyEnv: environment variable ${api.apiKeyEnv} is not set`);
  return new UsageApiSink(db, usageApiClient(opts.site, api, opts.apiKey, log), opts.site, log);
}

/** The configuration lacks what the chosen sink needs. */
export class UsageConfigMissing extends Error {
  override name = 'UsageConfigMissing';
}

export function usageApiClient(
  site: UsageSite,
  api: NonNullable<UsageConfig['usageApi']>,
  apiKey: string,
  log?: Logger,
): UsageApiClient {
  return new UsageApiClient({
    url: api.url,
    site: site.name,
    apiKey,
    timeoutMs: api.timeoutSeconds * 1000,
    maxRetries: api.maxRetries,
    maxBatchBytes: api.maxBatchBytes,
    maxBatchRecords: api.maxBatchRecords,
    maxResponseBytes: api.maxResponseBytes,
    allowInsecureHttp: api.allowInsecureHttp,
    onRetry: (r) =>
      log?.warn({ attempt: r.attempt, wait_ms: r.waitMs, reason: r.reason }, 'Usage API request failed; retrying'),
  });
}

/** Counts under a key that may be outside text (a Slurm account, a project id): always an own property. */
function add(map: Record<string, number>, key: string, n: number): void {
  const value = (Object.hasOwn(map, key) ? map[key]! : 0) + n;
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * One reporting run over a window. Returns the summary; throws SacctError when sacct fails,
 * UsageApiError when the Usage API stays unreachable, UsageRunBusyError when another run is
 * going. Jobs reported before a throw stay reported; the run is recorded as failed, so the
 * next run starts from the last good one.
 */
export async function reportUsage(db: Database, opts: ReportUsageOptions): Promise<UsageReportSummary> {
  return withUsageLock(db, 'amie report-usage', () => runReport(db, opts));
}

export interface ResendUsageOptions {
  site: UsageSite;
  client: UsageApiClient;
  /** Only records of these job ids (as sacct shows them), chosen before the limit applies. */
  jobIds?: readonly string[];
  /** At most this many records, oldest end time first. */
  limit: number;
  log?: Logger;
}

/**
 * Sends refused and unanswered Usage API records again (`amie usage resend`), under the usage
 * lock so a report-usage run cannot be sending the same pending records at the same time.
 */
export async function resendUsage(
  db: Database,
  opts: ResendUsageOptions,
): Promise<{ resent: number; reported: number; failed: Array<{ key: ReportedJobKey; reason: string }> }> {
  return withUsageLock(db, 'amie usage resend', async () => {
    const records = await listUnreportedJobs(db, {
      limit: opts.limit,
      ...(opts.jobIds?.length ? { jobIds: opts.jobIds } : {}),
    });
    if (records.length === 0) return { resent: 0, reported: 0, failed: [] };
    const r = await new UsageApiSink(db, opts.client, opts.site, opts.log).resend(records);
    return { resent: records.length, ...r };
  });
}

async function runReport(db: Database, opts: ReportUsageOptions): Promise<UsageReportSummary> {
  const log = opts.log;
  const usage = opts.usage;
  const dryRun = !!opts.dryRun;
  const sinkName = opts.sinkImpl?.name ?? opts.sink ?? usage.sink;
  const rule = chargeRuleOf(usage);
  const window = await resolveUsageWindow(db, {
    since: opts.since,
    until: opts.until,
    sink: sinkName,
    overlapHours: usage.overlapHours,
    firstRunDays: usage.firstRunDays,
    now: opts.now?.(),
  });
  const mapper = await ProjectMapper.load(db, usage.projects);
  const sink = dryRun ? undefined : createSink(db, opts, sinkName, log);

  const summary: UsageReportSummary = {
    runId: null,
    sink: sinkName,
    dryRun,
    window,
    chargeUnit: rule.unit,
    jobsSeen: 0,
    reported: 0,
    alreadyReported: 0,
    failed: 0,
    skipped: {},
    unmappedAccounts: {},
    chargePerProject: {},
    gpuHoursPerProject: {},
    failures: [],
  };
  const counts = (): UsageRunCounts => ({
    jobsSeen: summary.jobsSeen,
    reported: summary.reported,
    alreadyReported: summary.alreadyReported,
    failed: summary.failed,
    skipped: summary.skipped,
  });
  const progress = () =>
    opts.onProgress?.({
      jobsSeen: summary.jobsSeen,
      reported: summary.reported,
      alreadyReported: summary.alreadyReported,
      failed: summary.failed,
      skipped: Object.values(summary.skipped).reduce((a, b) => a + b, 0),
    });

  if (!dryRun) summary.runId = await startUsageRun(db, { sink: sinkName, since: window.since, until: window.until });
  log?.info(
    {
      run_id: summary.runId,
      sink: sinkName,
      since: window.since,
      until: window.until,
      since_from: window.sinceFrom,
      dry_run: dryRun,
      mapped_accounts: mapper.size,
    },
    'usage run started',
  );

  let batch = new Map<string, ChargedJob>();
  let batchNo = 0;
  const account = (reported: readonly ChargedJob[]) => {
    for (const c of reported) {
      add(summary.chargePerProject, c.projectId, c.charge);
      add(summary.gpuHoursPerProject, c.projectId, (c.job.elapsedSeconds * c.job.gpus) / 3600);
    }
  };
  const flush = async () => {
    if (batch.size === 0) return;
    const jobs = [...batch.values()];
    batch = new Map();
    batchNo++;
    if (dryRun) {
      const known = await findReportedJobs(
        db,
        jobs.map((c) => jobKey(c.job)),
      );
      // A failed or pending record would be sent again by a real run, so only `reported` counts as done.
      const fresh = jobs.filter((c) => known.get(reportedJobKey(jobKey(c.job))) !== 'reported');
      summary.reported += fresh.length;
      summary.alreadyReported += jobs.length - fresh.length;
      account(fresh);
    } else {
      const r = await sink!.writeBatch(jobs, summary.runId);
      summary.reported += r.reported.length;
      summary.alreadyReported += r.alreadyReported;
      summary.failed += r.failed.length;
      account(r.reported);
      for (const f of r.failed) {
        if (summary.failures.length < 20)
          summary.failures.push({ jobId: f.job.job.jobId, projectId: f.job.projectId, reason: f.reason });
      }
      log?.info(
        {
          run_id: summary.runId,
          batch: batchNo,
          jobs: jobs.length,
          reported: r.reported.length,
          already_reported: r.alreadyReported,
          failed: r.failed.length,
        },
        'usage batch written',
      );
    }
    opts.onBatch?.({ batch: batchNo, reported: summary.reported });
    progress();
  };

  try {
    const source =
      opts.records ??
      readSacct(
        {
          since: window.since,
          until: window.until,
          ...(usage.clusters ? { clusters: usage.clusters } : {}),
          ...(usage.sacctPath ? { sacctPath: usage.sacctPath } : {}),
          timeoutMs: usage.sacctTimeoutSeconds * 1000,
        },
        opts.signal ? { signal: opts.signal } : {},
      );
    let lines = 0;
    for await (const r of source) {
      if (++lines % 10_000 === 0) progress();
      if (isSacctSkip(r)) {
        add(summary.skipped, skipKind(r.skip), 1);
        log?.debug({ reason: r.skip }, 'sacct line skipped');
        continue;
      }
      summary.jobsSeen++;
      const projectId = mapper.projectOf(r.account);
      if (projectId === undefined) {
        add(summary.unmappedAccounts, r.account || '(none)', 1);
        add(summary.skipped, `unmapped Slurm account ${r.account || '(none)'}`, 1);
        continue;
      }
      const charged = chargeJob(r, rule);
      if ('skip' in charged) {
        add(summary.skipped, charged.skip, 1);
        continue;
      }
      const c: ChargedJob = { job: r, projectId, charge: charged.charge, chargeUnit: rule.unit };
      const key = reportedJobKey(jobKey(r));
      if (batch.has(key)) {
        add(summary.skipped, 'listed twice by sacct', 1);
        continue;
      }
      batch.set(key, c);
      if (batch.size >= usage.batchSize) await flush();
    }
    await flush();
  } catch (err) {
    if (summary.runId !== null) {
      await finishUsageRun(db, summary.runId, counts(), {
        status: 'failed',
        error: (err as Error).message?.slice(0, 2000),
      }).catch(() => undefined);
    }
    log?.error({ run_id: summary.runId, err: (err as Error).message, ...counts() }, 'usage run failed');
    throw err;
  }
  if (summary.runId !== null) await finishUsageRun(db, summary.runId, counts(), { status: 'finished' });
  log?.info({ run_id: summary.runId, ...counts() }, 'usage run finished');
  return summary;
}

/** A few lines for the operator: counts, skips by reason, and per-project totals. */
export function formatUsageSummary(s: UsageReportSummary): string[] {
  const lines: string[] = [];
  const w = `${s.window.since.toISOString()} .. ${s.window.until.toISOString()}`;
  const from =
    s.window.sinceFrom === 'last-run'
      ? ' (continuing from the last run)'
      : s.window.sinceFrom === 'first-run'
        ? ' (first run)'
        : '';
  lines.push(
    `${s.dryRun ? 'dry run, nothing written: ' : ''}usage ${w}${from} -> ${s.sink}${s.runId !== null ? ` (run ${s.runId})` : ''}`,
  );
  lines.push(
    `jobs seen ${s.jobsSeen}, ${s.dryRun ? 'would report' : 'reported'} ${s.reported}, already reported ${s.alreadyReported}, failed ${s.failed}, skipped ${Object.values(s.skipped).reduce((a, b) => a + b, 0)}`,
  );
  for (const [reason, n] of Object.entries(s.skipped).sort((a, b) => b[1] - a[1]))
    lines.push(`  skipped ${n}: ${reason}`);
  const projects = Object.keys(s.chargePerProject).sort();
  if (projects.length > 0) {
    lines.push(`per project (${s.dryRun ? 'would report' : 'reported'} now):`);
    for (const p of projects) {
      const gpuH = s.gpuHoursPerProject[p] ?? 0;
      const charge = s.chargeUnit === 'gpu-hours' ? '' : `, charge ${round(s.chargePerProject[p]!)} ${s.chargeUnit}`;
      lines.push(`  ${p}: ${round(gpuH)} GPU-hours${charge}`);
    }
  }
  for (const f of s.failures) lines.push(`  failed: job ${f.jobId} (${f.projectId}): ${f.reason}`);
  if (s.failed > s.failures.length) lines.push(`  ... and ${s.failed - s.failures.length} more: amie usage failed`);
  return lines;
}

function round(n: number): string {
  return String(Math.round(n * 1e6) / 1e6);
}
