import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import { SCENARIO_DESCRIPTIONS, SCENARIO_NAMES } from '../../simulator/scenarios.js';
import { EXIT, type CliContext } from '../context.js';

interface SimulateOptions {
  scenario: string;
  json?: boolean;
  verbose?: boolean;
}

export function register(program: Command, context: CliContext): void {
  program
    .command('simulate')
    .description(
      'play the central AMIE site against the configured database and handler: run the official test scenarios ' +
        '(and extra checks), print each conversation and a verdict; exit 1 if any check fails. Use a test database: ' +
        'the dispatcher also answers any other pending packet it finds',
    )
    .requiredOption('--scenario <name>', 'all, or one or more (comma-separated) of the scenarios listed below')
    .option('--json', 'print the reports as JSON')
    .option('--verbose', 'list every check, not only the failed ones')
    .addHelpText('after', `\nScenarios:\n${SCENARIO_NAMES.map((n) => `  ${n.padEnd(28)}${SCENARIO_DESCRIPTIONS[n]}`).join('\n')}`)
    .action(async (opts: SimulateOptions) => {
      const { resolveScenarioNames, runScenarios, formatScenarioReport, formatVerdict } = await import('../../simulator/index.js');
      let names;
      try {
        names = resolveScenarioNames(opts.scenario);
      } catch (err) {
        throw new ConfigError([(err as Error).message]);
      }
      await context.withDatabase(async (db, config, log) => {
        const { prepareDatabase } = await import('../../store/index.js');
        const { Dispatcher } = await import('../../dispatch/index.js');
        const { createHandler } = await import('../handler.js');
        await prepareDatabase(db);
        const { handler, name } = await createHandler(config, db, log, false);
        const dispatcher = new Dispatcher(db, handler, log, {
          batchSize: config.process.batchSize,
          maxErrorDeferrals: config.process.maxErrorDeferrals,
          handlerName: name,
        });
        await handler.start();
        let reports;
        try {
          reports = await runScenarios(db, dispatcher, names, {
            site: config.site,
            // Enough passes for the dispatcher to give up on a handler that keeps throwing.
            maxRounds: config.process.maxErrorDeferrals + 4,
          });
        } finally {
          await handler.stop();
        }
        const passed = reports.every((r) => r.passed);
        if (opts.json) {
          context.out(JSON.stringify({ passed, handler: name, site: config.site.name, scenarios: reports }, null, 2));
        } else {
          context.out(`simulating central (${config.site.remoteSite}) for site ${config.site.name}, resource ${config.site.resource}, handler ${name}, on ${db.description}`);
          for (const r of reports) {
            context.out('');
            for (const line of formatScenarioReport(r, { verbose: opts.verbose })) context.out(line);
          }
          context.out('');
          context.out(formatVerdict(reports));
        }
        context.exitCode = passed ? EXIT.ok : EXIT.workFailed;
      });
    });
}
