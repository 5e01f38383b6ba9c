import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import type { AmieConfig } from '../../config/index.js';
import type { Logger } from '../../log.js';
import type { RestSimulator } from '../../simulator/http.js';
import {
  SCENARIO_DESCRIPTIONS,
  SCENARIO_NAMES,
  type ScenarioName,
  type ScenarioReport,
} from '../../simulator/scenarios.js';
import { EXIT, type CliContext } from '../context.js';

interface SimulateOptions {
  scenario?: string;
  json?: boolean;
  verbose?: boolean;
  /** As given on the command line; the action checks it. */
  source?: string;
  serveRest?: boolean;
  port: string;
  apiKey?: string;
  wait: string;
  queueOnly?: boolean;
}

/** Where `--serve-rest` listens unless told otherwise: a fixed port keeps the printed configuration valid across restarts. */
const DEFAULT_PORT = 8765;
/** How often central looks for the replies of a site that runs as another process. */
const POLL_MS = 500;

export function register(program: Command, context: CliContext): void {
  program
    .command('simulate')
    .summary('play the central AMIE site against your database and handler, and give a verdict')
    .description(
      'play the central AMIE site against the configured database and handler: run the official test scenarios ' +
        '(and extra checks), print each conversation and a verdict; exit 1 if any check fails. Use a test database: ' +
        'the dispatcher also answers any other pending packet it finds. With --source rest the site talks to a ' +
        'simulated AMIE REST API in the same process; --serve-rest serves that API (and the Usage API) on loopback ' +
        'for a site running elsewhere (amie process with source: rest), until SIGTERM or SIGINT',
    )
    .option(
      '--scenario <name>',
      'all, or one or more (comma-separated) of the scenarios listed below (default with --serve-rest: all)',
    )
    .option(
      '--source <kind>',
      'tables: central writes the AMIE tables of the site database; rest: central serves the AMIE REST API (default: the configured source.kind)',
    )
    .option(
      '--serve-rest',
      'serve the AMIE REST API and the Usage API on 127.0.0.1 and play the scenarios against the site that polls it',
    )
    .option('--port <n>', `with --serve-rest: the port (0 picks a free one)`, String(DEFAULT_PORT))
    .option(
      '--api-key <key>',
      'with --serve-rest: the XA-API-KEY requests must carry (default: $AMIE_REST_API_KEY, else a random one, printed)',
    )
    .option('--wait <seconds>', 'with --serve-rest: how long central waits for each reply of the site', '300')
    .option(
      '--queue-only',
      "central writes the first request of each --scenario into the site database and stops, for amie process to answer by hand; run again, central ships and answers the site's replies",
    )
    .option('--json', 'print the reports as JSON')
    .option('--verbose', 'list every check, not only the failed ones')
    .addHelpText(
      'after',
      `\nScenarios:\n${SCENARIO_NAMES.map((n) => `  ${n.padEnd(28)}${SCENARIO_DESCRIPTIONS[n]}`).join('\n')}`,
    )
    .action(async (opts: SimulateOptions) => {
      const { resolveScenarioNames } = await import('../../simulator/index.js');
      if (opts.source !== undefined && opts.source !== 'tables' && opts.source !== 'rest') {
        throw new ConfigError([`--source: expected tables or rest, got "${opts.source}"`]);
      }
      if (opts.queueOnly) {
        if (opts.serveRest || opts.source === 'rest')
          throw new ConfigError([
            '--queue-only: central writes the AMIE tables of the site database; it does not go with --serve-rest or --source rest',
          ]);
        let names: ScenarioName[] = [];
        try {
          if (opts.scenario !== undefined) names = resolveScenarioNames(opts.scenario);
        } catch (err) {
          throw new ConfigError([(err as Error).message]);
        }
        await queueOnly(context, names);
        return;
      }
      if (opts.scenario === undefined && !opts.serveRest)
        throw new ConfigError(['--scenario: give all or scenario names (see amie help simulate)']);
      let names: ScenarioName[];
      try {
        names = resolveScenarioNames(opts.scenario ?? 'all');
      } catch (err) {
        throw new ConfigError([(err as Error).message]);
      }
      if (opts.serveRest) {
        await serveRest(context, opts, names);
        return;
      }
      await context.withDatabase(async (db, config, log) => {
        const { prepareDatabase } = await import('../../store/index.js');
        const { Dispatcher } = await import('../../dispatch/index.js');
        const { createHandler } = await import('../handler.js');
        const { RestSimulator } = await import('../../simulator/http.js');
        const { restSourceFor } = await import('../../simulator/rest-site.js');
        const { runScenarios } = await import('../../simulator/index.js');
        await prepareDatabase(db);
        const { handler, name } = await createHandler(config, db, log, false);
        const overRest = (opts.source ?? config.source.kind) === 'rest';
        // Over REST, central keeps its tables in a database of its own behind the simulator; the
        // site keeps its books in the configured database, as with the real API.
        const apiKey = randomBytes(18).toString('base64url');
        const sim = overRest ? await RestSimulator.start({ site: config.site, apiKey, log }) : undefined;
        const dispatcher = new Dispatcher(sim ? restSourceFor(sim, apiKey, db, log) : db, handler, log, {
          batchSize: config.process.batchSize,
          maxErrorDeferrals: config.process.maxErrorDeferrals,
          handlerName: name,
        });
        await handler.start();
        let reports: ScenarioReport[];
        try {
          reports = await runScenarios(sim?.db ?? db, dispatcher, names, {
            site: config.site,
            // Enough passes for the dispatcher to give up on a handler that keeps throwing.
            maxRounds: config.process.maxErrorDeferrals + 4,
          });
        } finally {
          await handler.stop();
          await sim?.stop();
        }
        const where = sim
          ? `over the AMIE REST API simulated at ${sim.amieUrl} (the site's books in ${db.description})`
          : `on ${db.description}`;
        await printReports(context, opts, reports, config, name, where, sim ? 'rest' : 'tables');
        context.exitCode = reports.every((r) => r.passed) ? EXIT.ok : EXIT.workFailed;
      });
    });
}

/**
 * `--queue-only`: central first ships and answers what the site sent in the conversations it
 * left open here, then writes the first request of each named scenario, and stops. Nothing runs
 * the site: `amie process` does, by hand, between two calls.
 */
async function queueOnly(context: CliContext, names: ScenarioName[]): Promise<void> {
  await context.withDatabase(async (db, config) => {
    if (config.source.kind === 'rest') {
      throw new ConfigError([
        `${config.configFile}: source.kind is rest: --queue-only writes the AMIE tables of the site database, which this site does not read`,
      ]);
    }
    const { prepareDatabase, listTransactionPackets } = await import('../../store/index.js');
    const { CentralSite, queueScenarios } = await import('../../simulator/index.js');
    await prepareDatabase(db);
    const central = new CentralSite(db, {
      siteName: config.site.name,
      resource: config.site.resource,
      remoteSiteName: config.site.remoteSite,
    });
    const resumed = await central.resume();
    await central.transfer();
    let waiting = 0;
    for (const c of resumed) {
      const failed = c.failedChecks;
      if (c.state === 'completed') context.out(`${c.label}: completed`);
      else if (c.state === 'failed' && failed.length === 0)
        context.out(`${c.label}: refused by the site, as it should be`);
      else if (c.state === 'failed') context.out(`${c.label}: FAILED: ${failed.map((f) => f.message).join('; ')}`);
      else {
        const last = (await listTransactionPackets(db, c.transRecId)).at(-1);
        waiting++;
        context.out(
          `${c.label}: central's ${last?.type ?? 'packet'} (packet_rec_id ${last?.packetRecId}) waits for the site`,
        );
      }
    }
    const queued = await queueScenarios(db, names, { site: config.site });
    for (const { scenario, conversation: c } of queued) {
      const first = (await listTransactionPackets(db, c.transRecId))[0];
      waiting++;
      context.out(`queued ${c.label}, packet_rec_id ${first?.packetRecId}: the first request of ${scenario}`);
    }
    if (resumed.length === 0 && queued.length === 0) {
      context.out(
        `central has no open conversation in ${db.description}: give --scenario NAME (or all) to queue requests`,
      );
    } else if (waiting > 0) {
      context.out('Now: amie packets list, amie process --dry-run (shows the replies, changes nothing), amie process;');
      context.out('then amie simulate --queue-only again: central ships the replies and answers them.');
    }
    context.exitCode = resumed.some((c) => c.state === 'failed' && c.failedChecks.length > 0)
      ? EXIT.workFailed
      : EXIT.ok;
  });
}

async function printReports(
  context: CliContext,
  opts: SimulateOptions,
  reports: ScenarioReport[],
  config: AmieConfig,
  handler: string | null,
  where: string,
  source: 'tables' | 'rest',
): Promise<void> {
  const { formatScenarioReport, formatVerdict } = await import('../../simulator/index.js');
  const passed = reports.every((r) => r.passed);
  if (opts.json) {
    context.out(
      JSON.stringify(
        {
          passed,
          handler,
          site: { name: config.site.name, resource: config.site.resource, remoteSite: config.site.remoteSite },
          source,
          scenarios: reports,
        },
        null,
        2,
      ),
    );
    return;
  }
  context.out(
    `simulating central (${config.site.remoteSite}) for site ${config.site.name}, resource ${config.site.resource}${handler ? `, handler ${handler}` : ''}, ${where}`,
  );
  for (const r of reports) {
    context.out('');
    for (const line of formatScenarioReport(r, { verbose: opts.verbose })) context.out(line);
  }
  context.out('');
  context.out(formatVerdict(reports));
}

/**
 * `--serve-rest`: the simulator for a site that runs as another process. Central plays the
 * scenarios as soon as it listens, waiting for each reply; afterwards it keeps serving (the
 * Usage API, the packets for inspection) until SIGTERM or SIGINT.
 */
async function serveRest(context: CliContext, opts: SimulateOptions, names: ScenarioName[]): Promise<void> {
  const port = Number(opts.port);
  const wait = Number(opts.wait);
  const problems: string[] = [];
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    problems.push(`--port: expected a port number 0-65535, got "${opts.port}"`);
  if (!Number.isFinite(wait) || wait <= 0) problems.push(`--wait: expected a number of seconds, got "${opts.wait}"`);
  if (opts.apiKey !== undefined && opts.apiKey.trim() === '') problems.push('--api-key: the key is empty');
  if (problems.length > 0) throw new ConfigError(problems);
  const config = await context.loadConfig();
  const log: Logger = context.logger(config);
  const { RestSimulator: Simulator } = await import('../../simulator/http.js');
  const { SIMULATOR_KEY_ENV, remoteSite } = await import('../../simulator/rest-site.js');
  const { runScenarios } = await import('../../simulator/index.js');

  const given = opts.apiKey ?? context.env[SIMULATOR_KEY_ENV];
  const apiKey = given || randomBytes(18).toString('base64url');
  let sim: RestSimulator;
  try {
    sim = await Simulator.start({ site: config.site, apiKey, port, log });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
      throw new ConfigError([
        `--port: port ${port} on 127.0.0.1 is in use; give another with --port N (0 picks a free one)`,
      ]);
    throw err;
  }

  const signals = ['SIGINT', 'SIGTERM'] as const;
  let onSignal: (sig: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => (onSignal = resolve));
  for (const s of signals) process.on(s, onSignal);
  const abort = new AbortController();
  try {
    const usageKeyEnv = 'AMIE_USAGE_API_KEY';
    context.out(`REST simulator of central (${sim.remoteSiteName}) for site ${sim.siteName}, resource ${sim.resource}`);
    context.out(`  AMIE REST API  ${sim.amieUrl}`);
    context.out(`  Usage API      ${sim.usageUrl}`);
    context.out('A site uses it with these configuration lines:');
    context.out(`  source: { kind: rest, url: ${sim.amieUrl}, apiKeyEnv: ${SIMULATOR_KEY_ENV} }`);
    context.out(`  usage: { sink: usage-api, usageApi: { url: ${sim.usageUrl}, apiKeyEnv: ${usageKeyEnv} } }`);
    // A key the operator chose is theirs and is not echoed; a generated one must be shown to be used.
    context.out(
      given
        ? `with the key ${opts.apiKey !== undefined ? 'given with --api-key' : `in $${SIMULATOR_KEY_ENV}`} in the environment variables ${SIMULATOR_KEY_ENV} and ${usageKeyEnv}.`
        : `and this environment:\n  export ${SIMULATOR_KEY_ENV}=${apiKey} ${usageKeyEnv}=${apiKey}`,
    );
    context.out(
      `Playing ${names.length === SCENARIO_NAMES.length ? 'all scenarios' : names.join(', ')}: central waits up to ${wait} s for each reply. Stop with SIGINT (Ctrl-C) or SIGTERM.`,
    );

    const site = remoteSite(POLL_MS, abort.signal);
    const played = runScenarios(sim.db, site, names, {
      site: config.site,
      maxRounds: Math.max(1, Math.ceil((wait * 1000) / POLL_MS)),
    });
    const first = await Promise.race([
      played.then((reports) => ({ reports, signal: undefined })),
      stopped.then((signal) => ({ reports: undefined, signal })),
    ]);
    if (first.reports) {
      await printReports(context, opts, first.reports, config, null, `served at ${sim.amieUrl}`, 'rest');
      context.exitCode = first.reports.every((r) => r.passed) ? EXIT.ok : EXIT.workFailed;
      if (!opts.json) context.out('Still serving (the Usage API, the packets) until SIGTERM or SIGINT.');
      const signal = await stopped;
      log.info({ signal }, 'REST simulator stopping');
    } else {
      abort.abort();
      await played.catch(() => undefined);
      context.out(`${first.signal}: stopped before the scenarios finished`);
      context.exitCode = EXIT.workFailed;
    }
  } finally {
    for (const s of signals) process.off(s, onSignal);
    abort.abort();
    await sim.stop();
  }
}
