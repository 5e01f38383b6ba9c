#!/usr/bin/env node
import { readdirSync, realpathSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/errors.js';
import { DatabaseError, isConnectionLost } from '../db/errors.js';
import { toolkitPackage } from '../package-root.js';
import { createContext, EXIT, type CliContext, type CliIo, type RegisterCommand } from './context.js';
import { amieOutput, completeHelp, endQuietlyOnClosedPipe } from './conventions.js';

const self = fileURLToPath(import.meta.url);
const here = dirname(self);

/** The toolkit's version, from its package.json. */
function toolkitVersion(): string {
  try {
    return toolkitPackage().version;
  } catch {
    return 'unknown';
  }
}

/**
 * Every module in commands/ adds its own commands, so a new command is one new file.
 * Sorted by file name so the help lists commands in a stable order.
 *
 * Start-up time: when the command line names a command whose module is named after it
 * (`amie process`, `amie status`: what cron and monitoring run every few minutes), only
 * that module is loaded. Help, a mistyped command, or a command living in another command's
 * module (`report-usage` in usage) loads them all, so help and guesses see every command.
 */
async function registerCommands(program: Command, context: CliContext, argv: string[]): Promise<void> {
  const dir = join(here, 'commands');
  // .js when compiled; .ts when run from source by a TypeScript-aware loader.
  const ext = extname(self);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(ext) && !f.endsWith('.d.ts'))
    .sort();
  const named = commandName(argv);
  const own = named === undefined ? undefined : files.find((f) => f === `${named}${ext}`);
  for (const file of own ? [own] : files) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as { register?: RegisterCommand };
    if (typeof mod.register !== 'function')
      throw new Error(`command module ${file} does not export register(program, context)`);
    mod.register(program, context);
  }
}

/** The first operand after the global options (-c FILE, --config FILE, --debug), if any. */
function commandName(argv: string[]): string | undefined {
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '-c' || arg === '--config') i++;
    else if (arg === '--') return args[i + 1];
    else if (!arg.startsWith('-')) return arg;
  }
  return undefined;
}

/** The `amie` program without its commands; its help and usage errors go to `io`'s stdout and stderr when given. */
export function buildProgram(io: CliIo = {}): Command {
  // Given streams are not terminals: help is 80 columns wide and plain, as when piped.
  const output = {
    ...amieOutput,
    ...(io.stdout && { writeOut: io.stdout, getOutHelpWidth: () => 80, getOutHasColors: () => false }),
    ...(io.stderr && { writeErr: io.stderr, getErrHelpWidth: () => 80, getErrHasColors: () => false }),
  };
  return (
    new Command('amie')
      .description('answer AMIE account-management packets and report usage for an HPC site')
      .option('-c, --config <file>', 'configuration file (default: $AMIE_CONFIG, else config/amie.yaml)')
      .option('--debug', 'log at debug level and show stack traces')
      .version(toolkitVersion(), '--version', 'print the toolkit version')
      // Set before the commands are added, which inherit them: subcommand help lists -c and --debug too.
      .configureHelp({ showGlobalOptions: true })
      .configureOutput(output)
      .showHelpAfterError('(run amie --help for usage)')
      .exitOverride()
  );
}

/** Configuration and database problems: the operator must fix something; nothing was done. */
function isOperatorError(err: unknown): err is Error {
  return (
    err instanceof ConfigError ||
    err instanceof DatabaseError ||
    // Raised while loading the handler named in the config; matched by name to keep the CLI independent of the dispatcher.
    (err instanceof Error && err.name === 'HandlerLoadError')
  );
}

/**
 * Runs `amie` with `argv` (as process.argv) and returns the exit status. By default in this
 * process's environment, directory, stdout and stderr; `io` gives others (a script, or a test,
 * running `amie` in its own process).
 */
export async function main(argv: string[] = process.argv, io: CliIo = {}): Promise<number> {
  const program = buildProgram(io);
  const context = createContext(program, io);
  const debug = argv.includes('--debug');
  const say = (line: string) => context.say(line);
  try {
    await registerCommands(program, context, argv);
    completeHelp(program);
    await program.parseAsync(argv);
    return context.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version end here with 0; a usage mistake has already been printed by commander.
      return err.exitCode === 0 ? EXIT.ok : EXIT.notStarted;
    }
    if (isOperatorError(err)) {
      const lines = err instanceof ConfigError ? err.problems : [err.message.split('\n').join(' ')];
      for (const line of lines) say(line);
      if (debug) context.writeErr(`${describeForDebug(err)}\n`);
      return EXIT.notStarted;
    }
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    if (isConnectionLost(err)) {
      // Outside a run's batches (start-up, a listing): the open transaction rolled back, so exit 2 as for any database problem.
      say(`lost the connection to the database (${message}); what it was writing was rolled back, run again`);
      if (debug) context.writeErr(`${describeForDebug(err)}\n`);
      return EXIT.notStarted;
    }
    say(`unexpected error: ${message}`);
    if (debug) context.writeErr(`${describeForDebug(err)}\n`);
    else say('run with --debug for details');
    return EXIT.workFailed;
  }
}

function describeForDebug(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    parts.push(e instanceof Error ? (e.stack ?? e.message) : String(e));
    if (parts.length > 5) break;
  }
  return parts.join('\ncaused by: ');
}

// Run only as the program, not when imported by a test or another module.
if (process.argv[1] && realpathSync(process.argv[1]) === self) {
  endQuietlyOnClosedPipe();
  process.exitCode = await main();
}
