import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import { DatabaseError, DatabaseInUse, isConnectionLost } from '../../db/errors.js';
import type { Database } from '../../db/index.js';
import { isPacketTypeName, type PacketTypeName } from '../../protocol/ids.js';
import type { AmieConfig } from '../../config/index.js';
import type { Logger } from '../../log.js';
import { EXIT, type CliContext } from '../context.js';
import { wholeNumberOption } from '../conventions.js';
import type { PacketSource } from '../../sources/types.js';

interface ProcessOptions {
  dryRun?: boolean;
  limit?: string;
  type?: string[];
  watch?: string;
}

export function register(program: Command, context: CliContext): void {
  program
    .command('process')
    .description(
      'answer every pending incoming AMIE packet once with the configured handler, then exit (safe under cron overlap)',
    )
    .option('--dry-run', 'run the handler without changing anything: show the replies, write nothing')
    .option('--limit <n>', 'take at most N packets')
    .option('--type <type...>', 'only packets of these types (e.g. request_account_create)')
    .option('--watch <seconds>', 'keep running: a pass every N seconds until SIGTERM/SIGINT')
    .action(async (opts: ProcessOptions) => {
      let modules: ProcessModules | undefined;
      const opening = context.withDatabase(
        async (db, config, log) => {
          const limit = opts.limit === undefined ? undefined : wholeNumberOption('--limit', opts.limit);
          const watch = opts.watch === undefined ? undefined : wholeNumberOption('--watch', opts.watch);
          const types = (opts.type ?? []).map((t) => {
            if (!isPacketTypeName(t)) throw new ConfigError([`--type: unknown packet type "${t}"`]);
            return t;
          });
          const run = { dryRun: !!opts.dryRun, limit, types, watch };
          await whileSignalled(async (stopped) => {
            // A dry run changes nothing: it neither needs the run lock nor may it make a real run leave.
            if (!run.dryRun && !(await takeRunLock(context, db, config, log, watch, stopped))) return;
            context.exitCode = await runProcess(context, modules!, db, config, log, run, stopped);
          });
        },
        {
          // An embedded database serves one process at a time: a cron run finding it held by
          // another run leaves at once, as it would on finding the run lock taken; --watch waits.
          // (A dry run is not a run: it holds no role and waits, like any other command.)
          role: opts.dryRun ? undefined : 'process',
          leaveIfHeldInRole: opts.watch === undefined,
          // Cron pays every start-up: what the run needs loads while the server sets up the connection.
          whileConnecting: (config) => (modules = loadProcessModules(config)),
        },
      );
      try {
        await opening;
      } catch (err) {
        if (!(err instanceof DatabaseInUse)) throw err;
        leftToAnotherRun(context, `is running (${err.message})`);
      }
    });
}

/**
 * Takes the configuration's run lock (see store/run-lock.ts). A run finding it held leaves, saying
 * so (false); --watch is a daemon and waits its turn instead, a pass interval at a time.
 */
async function takeRunLock(
  context: CliContext,
  db: Database,
  config: AmieConfig,
  log: Logger,
  watch: number | undefined,
  stopped: () => boolean,
): Promise<boolean> {
  // Loaded here, not with the command: `amie --help` loads no database code.
  const { runLockScope, tryRunLock } = await import('../../store/run-lock.js');
  const scope = runLockScope(config.site);
  while (!(await tryRunLock(db, config.site))) {
    log.debug({ scope }, 'another run of this scope holds its run lock; leaving the pending packets to it');
    if (watch === undefined) {
      leftToAnotherRun(context, `for ${scope} is running`);
      return false;
    }
    await sleepUnless(watch * 1000, stopped);
    if (stopped()) return false;
  }
  return true;
}

/** The one line of a run that leaves the pending packets to another run (cron's summary log keeps it). */
function leftToAnotherRun(context: CliContext, which: string): void {
  context.out(`another \`amie process\` ${which}: it answers the pending packets, nothing done here`);
}

/** Runs `fn` with SIGTERM and SIGINT turned into a flag it polls: the batch in progress finishes first. */
async function whileSignalled<T>(fn: (stopped: () => boolean) => Promise<T>): Promise<T> {
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    return await fn(() => stopping);
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}

type ProcessModules = ReturnType<typeof loadProcessModules>;

/**
 * What a run needs beyond the CLI: the store, the dispatcher, the packet source and the handler
 * class the configuration names; the REST source and Slack only where the configuration asks
 * for them. A failure to load is reported where the run awaits it.
 */
function loadProcessModules(config: AmieConfig) {
  const settled = <T>(loading: Promise<T>) => {
    loading.catch(() => {});
    return loading;
  };
  const handlers = import('../handler.js');
  return {
    run: settled(Promise.all([import('../../store/index.js'), import('../../dispatch/index.js'), handlers])),
    handler: settled(handlers.then((h) => h.loadConfiguredHandler(config))),
    tables: settled(import('../../sources/tables.js')),
    rest: config.source.kind === 'rest' ? settled(import('../../sources/index.js')) : undefined,
    notify: config.notify?.slack ? settled(import('../../notify/index.js')) : undefined,
  };
}

async function runProcess(
  context: CliContext,
  modules: ProcessModules,
  db: Database,
  config: AmieConfig,
  log: Logger,
  opts: { dryRun: boolean; limit?: number; types: PacketTypeName[]; watch?: number },
  stopped: () => boolean,
): Promise<number> {
  const [store, dispatch, { buildHandler }] = await modules.run;
  const { prepareDatabase, recordProcessPass } = store;
  const { Dispatcher, exitCodeFor, formatSummary } = dispatch;
  // The AMIE tables or the REST API, as `source:` says; a missing API key stops here, before any work.
  const rest = await modules.rest;
  const source: PacketSource = rest
    ? rest.createSource(config, db, log, { dryRun: opts.dryRun, env: context.env })
    : new (await modules.tables).TablesSource(db, log);
  // Slack, when configured: a missing bot token stops here too; afterwards Slack can only cost a pass notify.slack.timeoutMs.
  const notifier = (await modules.notify)?.createNotifier(config, log, { dryRun: opts.dryRun, env: context.env });
  await prepareDatabase(db);
  const { handler, name } = await buildHandler(await modules.handler, config, db, log, opts.dryRun);
  const dispatcher = new Dispatcher(source, handler, log, {
    dryRun: opts.dryRun,
    limit: opts.limit,
    types: opts.types.length ? opts.types : undefined,
    batchSize: config.process.batchSize,
    maxErrorDeferrals: config.process.maxErrorDeferrals,
    handlerName: name,
    // A service manager's stop ends the run after the batch in progress, not after the backlog.
    stopRequested: stopped,
  });

  let worst = 0;
  await handler.start();
  try {
    // A signal during set-up means no pass at all; one during a pass ends it after its batch.
    while (!stopped()) {
      let summary;
      const tripsBefore = db.roundTrips;
      try {
        summary = await dispatcher.runOnce();
      } catch (err) {
        if (isConnectionLost(err)) {
          throw new DatabaseError(
            `lost the connection to ${db.description} during the run (${(err as Error).message}); the batch in progress was rolled back, run again`,
            { cause: err },
          );
        }
        if (rest && (err instanceof rest.AmieRestError || err instanceof rest.RestDeliveryError)) {
          // The REST API stopped the run, not the toolkit: one line saying what it answered. An
          // AmieRestError comes before any packet was taken (nothing done); after a
          // RestDeliveryError the unsent replies wait in the outbox for the next run or pass.
          context.say(err.message);
          log.error({ err: err.message }, 'run stopped by the AMIE REST API');
          worst = Math.max(worst, err instanceof rest.AmieRestError ? EXIT.notStarted : EXIT.workFailed);
          if (opts.watch === undefined || stopped()) break;
          await sleepUnless(opts.watch * 1000, stopped);
          continue;
        }
        throw err;
      }
      if (opts.dryRun) {
        for (const r of summary.results) {
          context.out(
            `packet ${r.packetRecId} ${r.type} (transaction ${r.transactionId}): ${r.outcome}` +
              (r.replyType ? ` -> ${r.replyType} ${JSON.stringify(r.reply)}` : '') +
              (r.reason ? ` (${r.reason})` : ''),
          );
        }
      }
      // Round trips are the cost of a run: logged so that operators (and the benchmark) can see it.
      log.info(
        {
          run_id: summary.runId,
          ...countsOf(summary),
          round_trips: db.roundTrips - tripsBefore,
          ms: summary.durationMs,
        },
        'run finished',
      );
      // A single run always says what it did; --watch prints only the passes that took packets.
      if (opts.watch === undefined || summary.taken > 0) context.out(formatSummary(summary));
      // For `amie status`: an idle pass leaves no audit row, yet proves that cron still runs.
      if (!opts.dryRun) {
        const problems = summary.errors + summary.failed + summary.invalid + Object.keys(summary.unhandled).length;
        await recordProcessPass(db, {
          source: config.source.kind,
          runId: summary.runId,
          taken: summary.taken,
          problems,
        });
      }
      await notifier?.notifyRun(summary);
      worst = Math.max(worst, exitCodeFor(summary));
      if (opts.watch === undefined || stopped()) break;
      await sleepUnless(opts.watch * 1000, stopped);
    }
  } finally {
    await handler.stop();
    await source.close?.();
  }
  return worst === 0 ? EXIT.ok : worst === EXIT.notStarted ? EXIT.notStarted : EXIT.workFailed;
}

function countsOf(s: {
  taken: number;
  answered: number;
  failed: number;
  invalid: number;
  deferred: number;
  errors: number;
  ignored: number;
  unhandled: Record<string, number>;
}) {
  return {
    taken: s.taken,
    answered: s.answered,
    failed: s.failed,
    invalid: s.invalid,
    deferred: s.deferred,
    errors: s.errors,
    ignored: s.ignored,
    unhandled: s.unhandled,
  };
}

async function sleepUnless(ms: number, stopped: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stopped() && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(250, until - Date.now())));
}
