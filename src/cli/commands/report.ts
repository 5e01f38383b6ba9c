import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import { EXIT, type CliContext } from '../context.js';
import { wholeNumberOption } from '../conventions.js';

/**
 * `amie report --html FILE`: the status page a site publishes on an internal web server and
 * regenerates from cron. Rendering (Vega) is loaded only when the command runs.
 */

interface ReportOptions {
  html: string;
  days: string;
  limit: string;
}

export function register(program: Command, context: CliContext): void {
  program
    .command('report')
    .description(
      'write the status page: one self-contained HTML file of packets, failures, usage and drift, for a web server',
    )
    .requiredOption(
      '--html <file>',
      'write the page to FILE (replaced atomically: a web server never serves half a page)',
    )
    .option('--days <n>', 'days of history shown (1 to 366)', '30')
    .option('--limit <n>', 'at most N rows in each list of packets', '200')
    .action(async (opts: ReportOptions) => {
      const days = wholeNumberOption('--days', opts.days, 366);
      const limit = wholeNumberOption('--limit', opts.limit, 10_000);
      const file = resolve(context.cwd, opts.html);
      // Checked before the database is opened: a mistyped directory is a command-line mistake (exit 2).
      const dir = dirname(file);
      let isDir = false;
      try {
        isDir = statSync(dir).isDirectory();
      } catch {
        /* missing: said below */
      }
      if (!isDir) throw new ConfigError([`--html: directory ${dir} does not exist`]);
      await context.withDatabase(async (db, config, log) => {
        const { prepareDatabase } = await import('../../store/index.js');
        await prepareDatabase(db);
        const { generateReport } = await import('../../report/index.js');
        const { checkSlurmDriftFor } = await import('../slurm-drift.js');
        const drift = () => checkSlurmDriftFor(config, db, log);
        const { model, html } = await generateReport(db, config, { days, limit, drift });
        const { writeFileAtomically } = await import('../../atomic-file.js');
        try {
          await writeFileAtomically(file, html);
        } catch (err) {
          context.say(`cannot write ${file}: ${(err as Error).message}`);
          context.exitCode = EXIT.workFailed;
          return;
        }
        const decisions = model.packetsPerDay.reduce((n, p) => n + p.packets, 0);
        context.out(
          `wrote ${file}: ${decisions} packet decision(s) in ${days} days, ${model.status.pending} pending, ` +
            `${model.stuck.length} stuck, ${model.failureCount} failure(s), ` +
            `${model.usage ? `${model.usage.projects.length} project(s)` : 'no usage'}`,
        );
      });
    });
}
