import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import { DatabaseError, isConnectionLost, type Database } from '../../db/index.js';
import { isPacketTypeName, type PacketTypeName } from '../../protocol/ids.js';
import type { AmieConfig } from '../../config/index.js';
import type { Logger } from '../../log.js';
import { escapeControls } from '../../text.js';
import { EXIT, type CliContext } from '../context.js';
import { wholeNumberOption } from '../conventions.js';

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
    .action((opts: ProcessOptions) => {
      // Loaded while the configuration is read and the database connects: cron pays every start-up.
      const modules = loadProcessModules();
      modules.catch(() => {}); // a failure is reported where it is awaited, below
      return context.withDatabase(async (db, config, log) => {
        const limit = opts.limit === undefined ? undefined : wholeNumberOption('--limit', opts.limit);
        const watch = opts.watch === undefined ? undefined : wholeNumberOption('--watch', opts.watch);
        const types = (opts.type ?? []).map((t) => {
          if (!isPacketTypeName(t)) throw new ConfigError([`--type: unknown packet type "${t}"`]);
          return t;
        });
        context.exitCode = await runProcess(context, await modules, db, config, log, {
          dryRun: !!opts.dryRun,
          limit,
          types,
          watch,
        });
      });
    });
}

/** What a run needs beyond the CLI: the store, the dispatcher, the handler loader, the source and Slack. */
function loadProcessModules() {
  return Promise.all([
    import('../../store/index.js'),
    import('../../dispatch/index.js'),
    import('../handler.js'),
    import('../../sources/index.js'),
    import('../../notify/index.js'),
  ]);
}

async function runProcess(
  context: CliContext,
  modules: Awaited<ReturnType<typeof loadProcessModules>>,
  db: Database,
  config: AmieConfig,
  log: Logger,
  opts: { dryRun: boolean; limit?: number; types: PacketTypeName[]; watch?: number },
): Promise<number> {
  const [store, dispatch, { createHandler }, sources, { createNotifier }] = modules;
  const { prepareDatabase, recordProcessPass } = store;
  const { Dispatcher, exitCodeFor, formatSummary } = dispatch;
  const { createSource, AmieRestError, RestDeliveryError } = sources;
  // The AMIE tables or the REST API, as `source:` says; a missing API key stops here, before any work.
  const source = createSource(config, db, log, { dryRun: opts.dryRun, env: context.env });
  // Slack, when configured: a missing bot token stops here too; afterwards Slack can only cost a pass notify.slack.timeoutMs.
  const notifier = createNotifier(config, log, { dryRun: opts.dryRun, env: context.env });
  await prepareDatabase(db);
  const { handler, name } = await createHandler(config, db, log, opts.dryRun);
  const dispatcher = new Dispatcher(source, handler, log, {
    dryRun: opts.dryRun,
    limit: opts.limit,
    types: opts.types.length ? opts.types : undefined,
    batchSize: config.process.batchSize,
    maxErrorDeferrals: config.process.maxErrorDeferrals,
    handlerName: name,
  });

  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  let worst = 0;
  await handler.start();
  try {
    do {
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
        if (err instanceof AmieRestError || err instanceof RestDeliveryError) {
          // The REST API stopped the run, not the toolkit: one line saying what it answered. An
          // AmieRestError comes before any packet was taken (nothing done); after a
          // RestDeliveryError the unsent replies wait in the outbox for the next run or pass.
          process.stderr.write(`amie: ${escapeControls(err.message)}\n`);
          log.error({ err: err.message }, 'run stopped by the AMIE REST API');
          worst = Math.max(worst, err instanceof AmieRestError ? EXIT.notStarted : EXIT.workFailed);
          if (opts.watch === undefined || stopping) break;
          await sleepUnless(opts.watch * 1000, () => stopping);
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
      if (opts.watch === undefined || stopping) break;
      await sleepUnless(opts.watch * 1000, () => stopping);
    } while (!stopping);
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
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
