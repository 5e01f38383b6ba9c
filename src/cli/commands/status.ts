import { resolve } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomically } from '../../atomic-file.js';
import { formatAge } from '../../text.js';
import { ConfigError } from '../../config/errors.js';
import type { Database } from '../../db/index.js';
import type { AmieConfig } from '../../config/index.js';
import type { StatusFigures } from '../../store/index.js';
import type { CliContext } from '../context.js';

/**
 * `amie status`: a check in the monitoring-plugin convention (Nagios, Icinga, Sensu). The first
 * line is `AMIE <STATE> - reason | perfdata`, the exit status 0 OK, 1 WARNING, 2 CRITICAL,
 * 3 UNKNOWN (the configuration or the database cannot be used, or the check itself failed).
 */

export const STATUS_CODES = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
export type StatusName = keyof typeof STATUS_CODES;

interface StatusOptions {
  warn: string;
  crit: string;
  prometheus?: string;
  json?: boolean;
}

export interface Problem {
  severity: 'WARNING' | 'CRITICAL';
  message: string;
}

/** Figures other checks add; each is judged below when present. */
export interface ExtraFigures {
  /**
   * Incoming packets for another site (or resource) waiting in the tables longer than the
   * warning age (AMIE tables source only; see `extraFigures`).
   */
  foreignWaiting?: number;
  /** Differences between the registry and Slurm (`amie slurm check`), when the handler is the Slurm handler. */
  slurmDrift?: number;
  /** Why Slurm could not be compared with the registry (sacctmgr or getent failed). */
  slurmCheckError?: string;
}

/**
 * Packets of another site or resource waiting in the AMIE tables longer than the warning age:
 * this configuration never answers them, so one waiting long means a configuration is missing.
 * (Over REST they stay on the server and `amie process` warns of them from its listing.)
 */
async function extraFigures(
  context: CliContext,
  db: Database,
  config: AmieConfig,
  warnSeconds: number,
): Promise<ExtraFigures> {
  const out: ExtraFigures = {};
  if (config.source.kind === 'tables') {
    const { countForeignWaiting } = await import('../../store/work.js');
    out.foreignWaiting = await countForeignWaiting(db, config.site, warnSeconds * 1000);
  }
  return { ...out, ...(await slurmFigures(context, db, config)) };
}

/**
 * With the Slurm handler, how far Slurm has drifted from the registry (as `amie slurm check`
 * finds it). A Slurm that cannot be asked is a problem of the check's result, not a failed check.
 */
async function slurmFigures(context: CliContext, db: Database, config: AmieConfig): Promise<ExtraFigures> {
  const { maybeSlurmHandler, checkSlurmDriftFor } = await import('../slurm-drift.js');
  if (!maybeSlurmHandler(config)) return {};
  try {
    // A handler that cannot be built is reported like a Slurm that cannot be asked: the packet
    // figures already read still make the check's answer.
    const drift = await checkSlurmDriftFor(config, db, await context.logger(config));
    return drift ? { slurmDrift: drift.differences.length } : {};
  } catch (err) {
    return { slurmCheckError: oneLine(err) };
  }
}

export function register(program: Command, context: CliContext): void {
  program
    .command('status')
    .description('monitoring check (Nagios/Icinga/Sensu): AMIE OK|WARNING|CRITICAL|UNKNOWN - reason, exit 0/1/2/3')
    .option(
      '--warn <duration>',
      'WARNING when the oldest pending packet, an unsent reply or the last pass is this old (e.g. 90m, 2h, 1d)',
      '2h',
    )
    .option('--crit <duration>', 'CRITICAL from this age on', '24h')
    .option(
      '--prometheus <file>',
      "also write the figures for node_exporter's textfile collector (replaced atomically)",
    )
    .option('--json', 'print the verdict and the figures as JSON instead')
    .action(async (opts: StatusOptions) => {
      const result = await check(context, opts);
      let written: string | undefined;
      if (opts.prometheus) {
        try {
          await writeFileAtomically(resolve(context.cwd, opts.prometheus), prometheusText(result));
        } catch (err) {
          written = `cannot write ${opts.prometheus}: ${(err as Error).message}`;
        }
      }
      const final: CheckResult = written ? { ...result, status: 'UNKNOWN', reason: written, problems: [] } : result;
      if (opts.json) context.out(JSON.stringify(toJson(final), null, 2));
      else for (const line of pluginText(final)) context.out(line);
      context.exitCode = STATUS_CODES[final.status];
    });
}

export interface CheckResult {
  status: StatusName;
  reason: string;
  problems: Problem[];
  warnSeconds: number;
  critSeconds: number;
  figures?: StatusFigures & ExtraFigures;
}

async function check(context: CliContext, opts: StatusOptions): Promise<CheckResult> {
  let warnSeconds = 0;
  let critSeconds = 0;
  const unknown = (reason: string): CheckResult => ({
    status: 'UNKNOWN',
    reason,
    problems: [],
    warnSeconds,
    critSeconds,
  });
  try {
    warnSeconds = parseDuration('--warn', opts.warn);
    critSeconds = parseDuration('--crit', opts.crit);
    if (critSeconds < warnSeconds) throw new ConfigError(`--crit (${opts.crit}) is shorter than --warn (${opts.warn})`);
  } catch (err) {
    return unknown(oneLine(err));
  }
  let db: Database;
  let config;
  try {
    config = await context.loadConfig();
    db = await context.openDatabase(config);
  } catch (err) {
    return unknown(oneLine(err));
  }
  try {
    // The two store modules it reads, not the whole store: `status` is run often, it should start fast.
    const [{ readStatusFigures }, { runLockKey }] = await Promise.all([
      import('../../store/status.js'),
      import('../../store/run-lock.js'),
    ]);
    const figures = {
      ...(await readStatusFigures(db, {
        source: config.source.kind,
        usagePendingSeconds: warnSeconds,
        runLockKey: runLockKey(config.site),
      })),
      ...(await extraFigures(context, db, config, warnSeconds)),
    };
    const problems = judge(figures, warnSeconds, critSeconds);
    const status: StatusName = problems.some((p) => p.severity === 'CRITICAL')
      ? 'CRITICAL'
      : problems.length
        ? 'WARNING'
        : 'OK';
    return {
      status,
      reason: problems.length ? problems.map((p) => p.message).join('; ') : okReason(figures),
      problems,
      warnSeconds,
      critSeconds,
      figures,
    };
  } catch (err) {
    const code = (err as { code?: string }).code;
    // 42P01 undefined table, 3F000 undefined schema: the database was never set up (or not upgraded).
    if (code === '42P01' || code === '3F000')
      return unknown(
        `${db.description}: the AMIE or toolkit tables are missing (${oneLine(err)}): run \`amie db init\``,
      );
    return unknown(`${db.description}: ${oneLine(err)}`);
  } finally {
    await db.close().catch(() => undefined);
  }
}

/** Each figure against the thresholds; the most urgent first. */
export function judge(f: StatusFigures & ExtraFigures, warn: number, crit: number): Problem[] {
  const out: Problem[] = [];
  const byAge = (age: number | null, what: (a: string) => string) => {
    if (age === null || age < warn) return;
    out.push({ severity: age >= crit ? 'CRITICAL' : 'WARNING', message: what(formatAge(age)) });
  };
  byAge(f.oldestPendingAgeSeconds, (a) => `oldest pending incoming packet waits for ${a} (${f.pending} pending)`);
  if (f.lastPassAgeSeconds === null)
    out.push({ severity: 'WARNING', message: `no \`amie process\` pass recorded for source ${f.source}` });
  else byAge(f.lastPassAgeSeconds, (a) => `last \`amie process\` pass ended ${a} ago${runAtWork(f)}`);
  byAge(
    f.oldestUnsentAgeSeconds,
    (a) => `${f.outboxUnsent} repl${f.outboxUnsent === 1 ? 'y' : 'ies'} stuck in the REST outbox, oldest for ${a}`,
  );
  if (f.errorDeferred > 0)
    out.push({ severity: 'WARNING', message: `${f.errorDeferred} packet(s) deferred by handler errors` });
  if (f.failedLastDay > 0)
    out.push({ severity: 'WARNING', message: `${f.failedLastDay} packet(s) answered with a failure in the last 24 h` });
  if (f.foreignWaiting)
    out.push({
      severity: 'WARNING',
      message: `${f.foreignWaiting} foreign packet(s) waiting (for another site or resource)`,
    });
  if (f.usageFailed > 0)
    out.push({ severity: 'WARNING', message: `${f.usageFailed} usage record(s) refused by the Usage API` });
  if (f.slurmDrift)
    out.push({
      severity: 'WARNING',
      message: `Slurm differs from the registry in ${f.slurmDrift} place(s) (amie slurm check lists them)`,
    });
  if (f.slurmCheckError)
    out.push({ severity: 'WARNING', message: `Slurm could not be compared with the registry: ${f.slurmCheckError}` });
  if (f.usagePendingTooLong > 0)
    out.push({
      severity: 'WARNING',
      message: `${f.usagePendingTooLong} usage record(s) pending for over ${formatAge(warn)}`,
    });
  return out.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'CRITICAL' ? -1 : 1));
}

function okReason(f: StatusFigures & ExtraFigures): string {
  const pending =
    f.pending === 0 ? 'no packet pending' : `${f.pending} pending, oldest ${formatAge(f.oldestPendingAgeSeconds ?? 0)}`;
  return `${pending}; last pass ${formatAge(f.lastPassAgeSeconds ?? 0)} ago${runAtWork(f)}`;
}

/** Said after the last pass's age: a run that has not finished its pass yet (a backlog, or a hung site command). */
function runAtWork(f: StatusFigures): string {
  if (!f.runInProgress) return '';
  return `; a run is at work${f.runAgeSeconds === null ? '' : `, connected ${formatAge(f.runAgeSeconds)} ago`}`;
}

/** `90m`, `2h`, `1d`, `45s` → seconds. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d{1,7})([smhd])$/.exec(value.trim());
  if (!m) throw new ConfigError(`${flag}: expected a duration like 90m, 2h or 1d, got "${value}"`);
  const seconds = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  if (seconds <= 0) throw new ConfigError(`${flag}: must be longer than 0, got "${value}"`);
  return seconds;
}

function oneLine(err: unknown): string {
  if (err instanceof ConfigError) return err.problems.join('; ');
  return (err instanceof Error ? err.message : String(err)).split('\n').join(' ');
}

/** The plugin output: one status line with perf data, then one line per problem. */
export function pluginText(r: CheckResult): string[] {
  const first = `AMIE ${r.status} - ${r.reason}`;
  if (!r.figures) return [first];
  const f = r.figures;
  const age = (v: number | null, thresholds: boolean) =>
    `${v === null ? 'U' : `${v}s`}${thresholds ? `;${r.warnSeconds};${r.critSeconds};0` : ''}`;
  const perf = [
    `pending=${f.pending};;;0`,
    `oldest_pending_age=${age(f.oldestPendingAgeSeconds, true)}`,
    `error_deferred=${f.errorDeferred};;;0`,
    `failed_24h=${f.failedLastDay};;;0`,
    `outbox_unsent=${f.outboxUnsent};;;0`,
    `usage_failed=${f.usageFailed};;;0`,
    `usage_pending=${f.usagePending};;;0`,
    `last_pass_age=${age(f.lastPassAgeSeconds, true)}`,
    `run_in_progress=${f.runInProgress ? 1 : 0};;;0;1`,
    ...(f.foreignWaiting === undefined ? [] : [`foreign_waiting=${f.foreignWaiting};;;0`]),
    ...(f.slurmDrift === undefined ? [] : [`slurm_drift=${f.slurmDrift};;;0`]),
  ];
  return [
    `${first} | ${perf.join(' ')}`,
    ...(r.problems.length > 1 ? r.problems.map((p) => `${p.severity}: ${p.message}`) : []),
  ];
}

function toJson(r: CheckResult) {
  return {
    status: r.status,
    exitCode: STATUS_CODES[r.status],
    reason: r.reason,
    problems: r.problems,
    thresholds: { warnSeconds: r.warnSeconds, critSeconds: r.critSeconds },
    figures: r.figures ?? null,
  };
}

/** node_exporter textfile-collector format. Label values come from the database: escaped as the format asks. */
export function prometheusText(r: CheckResult): string {
  const label = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  const lines: string[] = [];
  const metric = (name: string, help: string, samples: Array<[Record<string, string>, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`);
      lines.push(`${name}${l.length ? `{${l.join(',')}}` : ''} ${value}`);
    }
  };
  metric('amie_up', 'Whether amie status could read its configuration and database (1) or not (0).', [
    [{}, r.figures ? 1 : 0],
  ]);
  metric('amie_status', 'The check result: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.', [[{}, STATUS_CODES[r.status]]]);
  const f = r.figures;
  if (f) {
    metric(
      'amie_packets',
      'AMIE packets by direction and state.',
      f.packets.map((p) => [{ direction: p.direction, state: p.state }, p.count]),
    );
    metric('amie_pending_packets', 'Incoming packets waiting for the handler.', [[{}, f.pending]]);
    metric('amie_oldest_pending_packet_age_seconds', 'Age of the oldest pending incoming packet (0 when none).', [
      [{}, f.oldestPendingAgeSeconds ?? 0],
    ]);
    metric('amie_error_deferred_packets', 'Pending packets deferred by handler errors.', [[{}, f.errorDeferred]]);
    metric('amie_failed_packets_last_day', 'Packets answered with a failure in the last 24 hours.', [
      [{}, f.failedLastDay],
    ]);
    metric('amie_outbox_replies', 'REST replies by outbox status (unsent: waiting to be sent).', [
      [{ status: 'unsent' }, f.outboxUnsent],
      [{ status: 'refused' }, f.outboxRefused],
    ]);
    metric('amie_oldest_unsent_reply_age_seconds', 'Age of the oldest unsent REST reply (0 when none).', [
      [{}, f.oldestUnsentAgeSeconds ?? 0],
    ]);
    metric('amie_usage_records', 'Usage records not (yet) accepted, by state.', [
      [{ state: 'failed' }, f.usageFailed],
      [{ state: 'pending' }, f.usagePending],
    ]);
    metric(
      'amie_process_run_in_progress',
      'Whether an amie process run of this configuration is at work (1) or not (0).',
      [[{}, f.runInProgress ? 1 : 0]],
    );
    if (f.lastPassAt)
      metric('amie_last_pass_timestamp_seconds', 'When the last amie process pass ended (Unix time).', [
        [{}, Math.floor(f.lastPassAt.getTime() / 1000)],
      ]);
    if (f.foreignWaiting !== undefined)
      metric('amie_foreign_packets_waiting', 'Foreign packets waiting.', [[{}, f.foreignWaiting]]);
    if (f.slurmDrift !== undefined)
      metric('amie_slurm_drift', 'Differences between the registry and Slurm (amie slurm check).', [
        [{}, f.slurmDrift],
      ]);
  }
  return `${lines.join('\n')}\n`;
}
