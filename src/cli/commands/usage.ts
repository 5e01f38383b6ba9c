import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import type { AmieConfig } from '../../config/index.js';
import type { Database } from '../../db/index.js';
import type { Logger } from '../../log.js';
import type { UsageAlertsOutcome } from '../../usage/alerts.js';
import type { UsageConfig } from '../../usage/config.js';
import { USAGE_SINKS, type UsageSinkName } from '../../usage/sinks/types.js';
import { EXIT, type CliContext } from '../context.js';
import { toJsonText } from '../json.js';
import { formatTable } from '../table.js';
import { wholeNumberOption } from '../conventions.js';

// Loaded when a command runs, so `amie --help` works where sacct or the store cannot load.
const reporter = () => import('../../usage/report.js');
const store = () => import('../../store/index.js');
const summaries = () => import('../../usage/summary.js');
const alerts = () => import('../../usage/alerts.js');

interface ReportOptions {
  since?: string;
  until?: string;
  dryRun?: boolean;
  sink?: string;
  json?: boolean;
}

interface FailedOptions {
  pending?: boolean;
  limit?: string;
  json?: boolean;
  server?: boolean;
  clear?: string[];
  clearAll?: boolean;
}

export function register(program: Command, context: CliContext): void {
  program
    .command('report-usage')
    .description(
      'report finished Slurm jobs to the allocations service, each job exactly once (safe to rerun and to overlap)',
    )
    .option(
      '--since <time>',
      'jobs that ended from this time on (ISO 8601, UTC unless it has a zone); default: where the last run stopped, minus usage.overlapHours',
    )
    .option('--until <time>', 'jobs that ended before this time (ISO 8601); default: now')
    .option('--dry-run', 'read, map and charge; show what would be reported; write nothing')
    .option('--sink <sink>', `override usage.sink: ${USAGE_SINKS.join(' or ')}`)
    .option('--json', 'print the summary as JSON')
    .action((opts: ReportOptions) =>
      context.withDatabase(async (db, config, log) => {
        context.exitCode = await runReport(context, db, config, log, opts);
      }),
    );

  const usage = program
    .command('usage')
    .description('usage against allocations; inspect and retry usage records the Usage API refused');

  usage
    .command('summary')
    .description(
      'per project: the allocation, usage charged in its period, remaining, percent used and when it runs out; posts due usage alerts',
    )
    .option('--project <id>', 'only this project (ProjectID or GrantNumber)')
    .option('--no-alerts', 'show only: post no usage alerts (usage.alerts)')
    .option('--json', 'print JSON')
    .action((opts: { project?: string; alerts: boolean; json?: boolean }) =>
      context.withDatabase(async (db, config, log) => {
        const { prepareDatabase } = await store();
        const { usageSummary, summaryRows } = await summaries();
        await prepareDatabase(db);
        const u = await usageConfigOf(config);
        const { chargeRuleOf } = await import('../../usage/config.js');
        const projects = await usageSummary(db, {
          unit: chargeRuleOf(u).unit,
          ...(opts.project !== undefined ? { project: opts.project } : {}),
        });
        if (opts.project !== undefined && projects.length === 0)
          throw new ConfigError(
            `--project: no project "${opts.project}" in the registry (tried ProjectID and GrantNumber)`,
          );
        const { sendUsageAlerts, formatAlertsOutcome } = await alerts();
        const sendAlerts = () =>
          opts.alerts ? sendUsageAlerts(db, projects, { config, thresholds: u.alerts, log, env: context.env }) : null;
        if (opts.json) {
          context.out(toJsonText({ unit: chargeRuleOf(u).unit, projects, alerts: await sendAlerts() }));
          return;
        }
        // The table first: an alert that cannot be sent (no bot token) must not hide the figures.
        if (projects.length === 0) context.out('(no projects in the registry)');
        else {
          context.out(`usage against allocations, in ${chargeRuleOf(u).unit} ("per day": the last 30 days' average)`);
          for (const l of formatTable(summaryRows(projects))) context.out(l);
        }
        const outcome = await sendAlerts();
        for (const l of outcome ? formatAlertsOutcome(outcome) : []) context.out(l);
      }),
    );

  usage
    .command('failed')
    .description(
      "list usage records the Usage API refused, with the server's reason (and, with --pending, unanswered ones)",
    )
    .option('--pending', 'list records sent but never answered (left by an interrupted run) instead')
    .option('--limit <n>', 'at most N records', '200')
    .option(
      '--server',
      'ask the Usage API for its own list of records it failed to load (GET usage/failed), with their FailedRecordIDs',
    )
    .option(
      '--clear <id...>',
      'tell the Usage API to forget these failed records, by FailedRecordID (DELETE usage/failed/{ids})',
    )
    .option('--clear-all', 'tell the Usage API to forget every record it lists as failed')
    .option('--json', 'print JSON')
    .action(async (opts: FailedOptions) => {
      // The server's own list needs no database.
      if (opts.server || opts.clear || opts.clearAll) {
        const config = await context.loadConfig();
        const { usageApiClient } = await reporter();
        const u = await usageConfigOf(config);
        const client = usageApiClient(
          config.site,
          requireApi(u),
          await apiKeyOf(context, u),
          await context.logger(config),
        );
        try {
          await serverFailed(context, client, opts);
        } catch (err) {
          if ((err as Error).name !== 'UsageApiError') throw err;
          context.say((err as Error).message);
          context.exitCode = EXIT.workFailed;
        }
        return;
      }
      await context.withDatabase(async (db) => {
        const { prepareDatabase, listUnreportedJobs } = await store();
        await prepareDatabase(db);
        const records = await listUnreportedJobs(db, {
          status: opts.pending ? 'pending' : 'failed',
          limit: wholeNumberOption('--limit', opts.limit ?? '200'),
        });
        if (opts.json) {
          context.out(JSON.stringify(records, null, 2));
          return;
        }
        const lines = formatTable(
          records.map((r) => ({
            cluster: r.cluster,
            job: r.jobId,
            project: r.projectId,
            user: r.userLogin,
            charge: r.charge,
            ended: r.endTime,
            http: r.apiStatus,
            attempts: r.attempts,
            reason: r.reason ?? (r.status === 'pending' ? 'no answer recorded' : ''),
          })),
          ['cluster', 'job', 'project', 'user', 'charge', 'ended', 'http', 'attempts', 'reason'],
        );
        for (const l of lines) context.out(l);
      });
    });

  usage
    .command('resend')
    .description('send refused and unanswered usage records to the Usage API again (after fixing the cause)')
    .option('--job <id...>', 'only these job ids (as sacct shows them, e.g. 123 or 123_4)')
    .option('--limit <n>', 'at most N records', '10000')
    .action((opts: { job?: string[]; limit?: string }) =>
      context.withDatabase(async (db, config, log) => {
        const { prepareDatabase } = await store();
        const { usageApiClient, resendUsage } = await reporter();
        await prepareDatabase(db);
        const u = await usageConfigOf(config);
        const client = usageApiClient(config.site, requireApi(u), await apiKeyOf(context, u), log);
        const limit = wholeNumberOption('--limit', opts.limit ?? '10000');
        try {
          const r = await resendUsage(db, {
            site: config.site,
            client,
            limit,
            ...(opts.job?.length ? { jobIds: opts.job } : {}),
            log,
          });
          if (r.resent === 0) {
            context.out('nothing to resend');
            return;
          }
          context.out(`resent ${r.resent}: accepted ${r.reported}, refused ${r.failed.length}`);
          for (const f of r.failed.slice(0, 20)) context.out(`  job ${f.key.jobId} (${f.key.cluster}): ${f.reason}`);
          if (r.failed.length > 0) context.exitCode = EXIT.workFailed;
        } catch (err) {
          const name = (err as Error).name;
          if (name !== 'UsageApiError' && name !== 'UsageRunBusyError') throw err;
          context.say((err as Error).message);
          context.exitCode = EXIT.workFailed;
        }
      }),
    );
}

type UsageClient = ReturnType<Awaited<ReturnType<typeof reporter>>['usageApiClient']>;

/** The Usage API's own list of failed records: shown, or cleared by FailedRecordID. */
async function serverFailed(context: CliContext, client: UsageClient, opts: FailedOptions): Promise<void> {
  if (opts.clear && opts.clearAll) throw new ConfigError('--clear and --clear-all: give one or the other');
  if (opts.clear || opts.clearAll) {
    let ids = opts.clear ?? [];
    for (const id of ids) {
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(id))
        throw new ConfigError(`--clear: "${id}" is not a FailedRecordID (as amie usage failed --server shows them)`);
    }
    if (opts.clearAll) {
      const listed = await client.failedRecords();
      ids = listed.flatMap((r) => (r.failedRecordId === null ? [] : [r.failedRecordId]));
      const without = listed.length - ids.length;
      if (without > 0) context.out(`${without} failed record(s) came without a FailedRecordID and cannot be cleared`);
    }
    if (ids.length === 0) {
      context.out('nothing to clear');
      return;
    }
    await client.clearFailed(ids);
    context.out(`cleared ${ids.length} failed record(s) on the Usage API: ${ids.join(', ')}`);
    return;
  }
  const records = await client.failedRecords();
  if (opts.json) {
    context.out(JSON.stringify(records, null, 2));
    return;
  }
  // Server text, shown on a terminal: no control characters.
  const plain = (v: string | null) => (v ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  const lines = formatTable(
    records.map((r) => ({
      id: plain(r.failedRecordId),
      resource: plain(r.resource),
      record: plain(r.localRecordId),
      project: plain(r.localProjectId),
      user: plain(r.username),
      error: plain(r.error),
    })),
    ['id', 'resource', 'record', 'project', 'user', 'error'],
  );
  for (const l of lines) context.out(l);
}

async function usageConfigOf(config: AmieConfig): Promise<UsageConfig> {
  const { defaultUsageConfig } = await import('../../usage/config.js');
  return config.usage ?? defaultUsageConfig();
}

function requireApi(u: UsageConfig): NonNullable<UsageConfig['usageApi']> {
  if (!u.usageApi)
    throw new ConfigError('usage.usageApi: missing: expected { url: https://..., apiKeyEnv: NAME } for the Usage API');
  return u.usageApi;
}

async function apiKeyOf(context: CliContext, u: UsageConfig): Promise<string> {
  const { readSecretEnv } = await import('../../config/load.js');
  return readSecretEnv('usage.usageApi.apiKeyEnv', requireApi(u).apiKeyEnv, context.env);
}

/** ISO 8601 date or date-time; without a zone it is UTC, like sacct's times here. */
export function parseTimeOption(flag: string, value: string): Date {
  const m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?)?$/.exec(value.trim());
  const d = m ? new Date(`${m[1]}T${m[2] ?? '00:00:00'}${m[3] ?? 'Z'}`) : new Date(NaN);
  if (Number.isNaN(d.getTime())) {
    throw new ConfigError(`${flag}: expected an ISO 8601 time like 2024-03-01 or 2024-03-01T12:00:00Z, got "${value}"`);
  }
  return d;
}

async function runReport(
  context: CliContext,
  db: Database,
  config: AmieConfig,
  log: Logger,
  opts: ReportOptions,
): Promise<number> {
  const { prepareDatabase } = await store();
  const { reportUsage, formatUsageSummary, UsageConfigMissing } = await reporter();
  const u = await usageConfigOf(config);
  if (opts.sink !== undefined && !(USAGE_SINKS as readonly string[]).includes(opts.sink)) {
    throw new ConfigError(`--sink: expected one of ${USAGE_SINKS.join(', ')}, got "${opts.sink}"`);
  }
  const sink = (opts.sink as UsageSinkName | undefined) ?? u.sink;
  const since = opts.since === undefined ? undefined : parseTimeOption('--since', opts.since);
  const until = opts.until === undefined ? undefined : parseTimeOption('--until', opts.until);
  if (since && until && since.getTime() >= until.getTime())
    throw new ConfigError(`--since (${opts.since}) must be before --until (${opts.until})`);
  const apiKey = sink === 'usage-api' && !opts.dryRun ? await apiKeyOf(context, u) : undefined;
  await prepareDatabase(db);

  const progress = progressLine(context);
  let summary;
  try {
    summary = await reportUsage(db, {
      site: config.site,
      usage: u,
      since,
      until,
      dryRun: !!opts.dryRun,
      sink,
      apiKey,
      log,
      onProgress: progress.update,
    });
  } catch (err) {
    progress.done();
    const e = err as Error;
    if (e instanceof UsageConfigMissing) throw new ConfigError(e.message);
    if (e.name === 'UsageRunBusyError') {
      // Not 0: a run that never ends (a hung sacct before its timeout existed) must not go unnoticed.
      context.say(e.message);
      return EXIT.workFailed;
    }
    if (e.name === 'SacctError' || e.name === 'UsageApiError') {
      context.say(e.message);
      context.say('jobs reported before this stay reported; run again to continue');
      return EXIT.workFailed;
    }
    if (e instanceof RangeError) throw new ConfigError(e.message);
    throw err;
  }
  progress.done();
  // A cron'd report-usage is what keeps usage current, so it is also what posts the alerts.
  const alerted = opts.dryRun || u.alerts.length === 0 ? undefined : await usageAlerts(context, db, config, u, log);
  if (opts.json) context.out(JSON.stringify(alerted ? { ...summary, alerts: alerted } : summary, null, 2));
  else {
    for (const line of formatUsageSummary(summary)) context.out(line);
    if (alerted) for (const line of (await alerts()).formatAlertsOutcome(alerted)) context.out(line);
  }
  return summary.failed > 0 ? EXIT.workFailed : EXIT.ok;
}

/**
 * The usage alerts due after a report. What goes wrong here is one line on stderr: the usage
 * is reported, and an alert not posted is posted by the next run.
 */
async function usageAlerts(
  context: CliContext,
  db: Database,
  config: AmieConfig,
  u: UsageConfig,
  log: Logger,
): Promise<UsageAlertsOutcome | undefined> {
  try {
    const { usageSummary } = await summaries();
    const { sendUsageAlerts } = await alerts();
    const { chargeRuleOf } = await import('../../usage/config.js');
    const projects = await usageSummary(db, { unit: chargeRuleOf(u).unit });
    return await sendUsageAlerts(db, projects, { config, thresholds: u.alerts, log, env: context.env });
  } catch (err) {
    context.say(`usage alerts: ${(err as Error).message}; the next run tries again`);
    return undefined;
  }
}

/** One self-overwriting line on a terminal, at most once a second; nothing when stderr is not one. */
function progressLine(context: CliContext): {
  update: (p: { jobsSeen: number; reported: number; skipped: number }) => void;
  done: () => void;
} {
  if (!context.stderrIsTTY) return { update: () => undefined, done: () => undefined };
  let last = 0;
  let shown = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 1000) return;
      last = now;
      shown = true;
      context.writeErr(`\r\x1b[Kjobs seen ${p.jobsSeen}, reported ${p.reported}, skipped ${p.skipped}`);
    },
    done() {
      if (shown) context.writeErr('\r\x1b[K');
    },
  };
}
