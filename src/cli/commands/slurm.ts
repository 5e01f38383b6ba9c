/**
 * `amie slurm check [--fix] [--dry-run] [--json] [--include-foreign]`: compares the registry
 * with Slurm's associations, coordinators and the Unix users, prints one line per difference
 * grouped by project, and with --fix repairs them with the Slurm handler's own commands, then
 * checks again. Exit 0: Slurm matches (after --fix: the second check is clean); 1: differences
 * remain; 2: configuration, database or Slurm could not be used.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import type { SlurmDifference, SlurmDrift } from '../../slurm/check.js';
import { EXIT, type CliContext } from '../context.js';

interface CheckOptions {
  fix?: boolean;
  dryRun?: boolean;
  json?: boolean;
  includeForeign?: boolean;
}

export function register(program: Command, context: CliContext): void {
  const slurm = program.command('slurm').description('the Slurm handler: compare Slurm with the registry');
  slurm
    .command('check')
    .description(
      'list where Slurm differs from the registry (accounts, users, coordinators, limits, Unix users); exit 0 clean, 1 differences, 2 error',
    )
    .option('--fix', "repair each difference with the handler's own commands, then check again")
    .option('--dry-run', 'with --fix: print the commands, run none')
    .option('--include-foreign', 'also list the associations the registry did not make (never changed)')
    .option('--json', 'print JSON')
    .action((opts: CheckOptions) =>
      context.withDatabase(async (db, config, log) => {
        const { prepareDatabase } = await import('../../store/index.js');
        await prepareDatabase(db);
        const { slurmCheckSettingsFor } = await import('../slurm-drift.js');
        const settings = await slurmCheckSettingsFor(config, db, log);
        if (!settings)
          throw new ConfigError([
            `${config.configFile}: handler: amie slurm check needs the Slurm handler (handler: slurm, or a module extending it)`,
          ]);
        const { checkSlurmDrift, repairSlurmDrift } = await import('../../slurm/check.js');
        const { formatArgv } = await import('../../slurm/run.js');
        const check = async () => {
          try {
            return await checkSlurmDrift(db, settings, log);
          } catch (err) {
            // sacctmgr or getent failed: nothing compared (the message carries their stderr: escaped).
            context.say(`slurm check: ${(err as Error).message.split('\n').join(' ')}`);
            context.exitCode = EXIT.notStarted;
            return null;
          }
        };

        const first = await check();
        if (!first) return;
        const dryRun = (opts.dryRun ?? false) || settings.logOnly;
        const fixing = (opts.fix ?? false) || (opts.dryRun ?? false);
        const fixable = first.differences.filter((d) => d.fix.length > 0);

        if (!fixing || first.differences.length === 0) {
          if (opts.json) context.out(JSON.stringify(jsonOf(first, opts), null, 2));
          else printDrift(context, first, opts, null);
          context.exitCode = first.differences.length === 0 ? EXIT.ok : EXIT.workFailed;
          return;
        }
        if (dryRun) {
          if (opts.json) context.out(JSON.stringify({ ...jsonOf(first, opts), dryRun: true }, null, 2));
          else {
            printDrift(context, first, opts, (d) => d.fix.map((argv) => `would run: ${formatArgv(argv)}`));
            if (settings.logOnly && !opts.dryRun)
              context.out('handler.options.commands is log-only: nothing was run (the commands above are logged only)');
            else context.out('dry run: nothing was run');
          }
          context.exitCode = EXIT.workFailed;
          return;
        }

        const results = await repairSlurmDrift(fixable, { log, ...settings.commandOptions });
        const after = await check();
        if (!after) {
          // The repairs ran but the second check could not: say what was done before stopping.
          for (const r of results)
            context.out(
              `${r.error ? 'repair FAILED' : 'repaired'}: ${r.difference.project} ${r.difference.kind}: ${r.difference.detail}${r.error ? ` (${r.error})` : ''}`,
            );
          return;
        }
        if (opts.json) {
          context.out(
            JSON.stringify(
              {
                ...jsonOf(first, opts),
                repairs: results.map((r) => ({ ...shown(r.difference), ran: r.difference.fix, error: r.error })),
                after: jsonOf(after, opts),
              },
              null,
              2,
            ),
          );
        } else {
          const outcome = new Map(results.map((r) => [r.difference, r.error]));
          printDrift(context, first, opts, (d) => {
            if (!outcome.has(d)) return ['not repaired: a person must decide'];
            const error = outcome.get(d);
            return error ? [`repair FAILED: ${error}`] : d.fix.map((argv) => `ran: ${formatArgv(argv)}`);
          });
          context.out('');
          context.out('after the repairs:');
          printDrift(context, after, { ...opts, includeForeign: false }, null);
        }
        context.exitCode = after.differences.length === 0 ? EXIT.ok : EXIT.workFailed;
      }),
    );
}

/** A difference without its planned commands (those are shown apart). */
function shown(d: SlurmDifference) {
  return {
    project: d.project,
    slurmAccount: d.slurmAccount,
    cluster: d.cluster,
    kind: d.kind,
    user: d.user,
    detail: d.detail,
  };
}

function jsonOf(drift: SlurmDrift, opts: CheckOptions) {
  return {
    clean: drift.differences.length === 0,
    differences: drift.differences.map((d) => ({ ...shown(d), fix: d.fix })),
    foreignCount: drift.foreign.length,
    ...(opts.includeForeign ? { foreign: drift.foreign } : {}),
    checked: drift.checked,
  };
}

/** One line per difference under its project, then a summary; `under` adds indented lines below a difference. */
function printDrift(
  context: CliContext,
  drift: SlurmDrift,
  opts: CheckOptions,
  under: ((d: SlurmDifference) => string[]) | null,
): void {
  const { checked } = drift;
  const where = `${checked.projects} project(s), ${checked.accounts} account(s), ${checked.logins} login(s) on ${checked.clusters.join(', ') || 'no cluster'}`;
  let project: string | null = null;
  for (const d of drift.differences) {
    if (d.project !== project) {
      project = d.project;
      context.out(`${d.project} (Slurm account ${d.slurmAccount || '?'}):`);
    }
    context.out(`  ${d.kind}: ${d.detail}`);
    for (const line of under?.(d) ?? []) context.out(`      ${line}`);
  }
  const projects = new Set(drift.differences.map((d) => d.project)).size;
  context.out(
    drift.differences.length === 0
      ? `Slurm matches the registry: ${where}`
      : `${drift.differences.length} difference(s) in ${projects} project(s); checked ${where}`,
  );
  if (drift.foreign.length > 0 && !opts.includeForeign)
    context.out(
      `${drift.foreign.length} association(s) the registry did not make, left alone (--include-foreign lists them)`,
    );
  if (opts.includeForeign && drift.foreign.length > 0) {
    context.out('not made by the registry (left alone):');
    for (const f of drift.foreign)
      context.out(`  ${f.cluster} ${f.account}${f.user === null ? '' : ` user ${f.user}`}: ${f.detail}`);
  }
}
