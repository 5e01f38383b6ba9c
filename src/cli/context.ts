/**
 * What every command gets from the CLI: configuration, logging, the database and output.
 * Nothing heavy is imported here: the configuration schema, the logger and the database
 * driver are loaded when a command first asks for them, so `amie --help` and commands that
 * need none of them start quickly.
 */
import type { Command } from 'commander';
import type { AmieConfig } from '../config/index.js';
import type { Database, EmbeddedOpenOptions } from '../db/index.js';
import type { Logger } from '../log.js';
import type { LogLevel } from '../config/schema.js';
import { escapeControls } from '../text.js';

/** Exit statuses of `amie`, relied on by cron scripts. */
export const EXIT = {
  ok: 0,
  /** The command ran but some of its work failed (details in the log). */
  workFailed: 1,
  /** Nothing was done: bad command line, configuration, or database unusable. */
  notStarted: 2,
} as const;

export interface GlobalOptions {
  config?: string;
  debug?: boolean;
}

/**
 * What a run of `amie` reads and writes: the process's own environment, directory, stdout and
 * stderr unless given. A script (or a test) that runs `amie` inside its own process gives them.
 */
export interface CliIo {
  /** Text for stdout (command output). */
  stdout?: (text: string) => void;
  /** Text for stderr (messages and the log). */
  stderr?: (text: string) => void;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** What every command module gets: configuration, logging, the database and output, all decided once here. */
export interface CliContext {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Command output for the operator; stdout, one line per call. Control characters in it are shown escaped. */
  out(line: string): void;
  /** A message for the operator on stderr: one line, `amie: ` first, control characters shown escaped. */
  say(message: string): void;
  /** Text for stderr as it is (a --debug stack trace, a terminal's progress line). */
  writeErr(text: string): void;
  /** Whether stderr is a terminal (progress lines are drawn only there). */
  readonly stderrIsTTY: boolean;
  /** The global options (-c, --debug) as given on the command line. */
  options(): GlobalOptions;
  /** -c FILE, else AMIE_CONFIG, else config/amie.yaml; throws ConfigError. */
  loadConfig(): Promise<AmieConfig>;
  /**
   * A logger at the level --debug/AMIE_LOG_LEVEL/log.level decide, writing to stderr; `level`
   * stands in for log.level where a command sets its own (the demo).
   */
  logger(config?: AmieConfig, level?: LogLevel): Promise<Logger>;
  /**
   * Opens the configured database (AMIE_DATABASE_URL overrides); throws DatabaseError. A missing
   * embedded database is an error unless `create` (only `amie db init` creates one).
   */
  openDatabase(config: AmieConfig, options?: EmbeddedOpenOptions): Promise<Database>;
  /**
   * Loads the config, opens the database, runs `fn`, and always closes the database.
   * `whileConnecting` is called once the connection is under way, with the configuration: a
   * command starts loading its own modules there, so that they load while the server answers.
   */
  withDatabase<T>(
    fn: (db: Database, config: AmieConfig, log: Logger) => Promise<T>,
    options?: EmbeddedOpenOptions & { whileConnecting?: (config: AmieConfig) => void },
  ): Promise<T>;
  /** Set by a command whose work partly failed; main exits with it. */
  exitCode: number;
}

/** A command module: one file in commands/, adding its subcommands to the program. */
export type RegisterCommand = (program: Command, context: CliContext) => void;

export function createContext(program: Command, io: CliIo = {}): CliContext {
  const env = io.env ?? process.env;
  const cwd = io.cwd ?? process.cwd();
  const options = () => program.opts<GlobalOptions>();
  const stdout = io.stdout ?? ((text: string) => process.stdout.write(text));
  const stderr = io.stderr ?? ((text: string) => process.stderr.write(text));
  const context: CliContext = {
    env,
    cwd,
    // Every command's output and message passes here, so packet text in it can never drive the terminal.
    out: (line) => stdout(`${escapeControls(line, { keepLayout: true })}\n`),
    say: (message) => stderr(`amie: ${escapeControls(message)}\n`),
    writeErr: stderr,
    stderrIsTTY: io.stderr ? false : !!process.stderr.isTTY,
    options,
    async loadConfig() {
      const { loadConfig } = await import('../config/load.js');
      return loadConfig(options().config, env, cwd);
    },
    async logger(config, level = config?.log.level) {
      const { createLogger } = await import('../log.js');
      // Given a stderr of its own, the log goes there too; otherwise to fd 2, synchronously.
      const destination = io.stderr ? { write: io.stderr } : undefined;
      return createLogger({ level, debug: options().debug, env, destination });
    },
    async openDatabase(config, options) {
      const { resolveDatabaseConfig } = await import('../config/load.js');
      const { openDatabase } = await import('../db/index.js');
      return openDatabase(resolveDatabaseConfig(config, env), env, {
        create: options?.create ?? false,
        role: options?.role,
        leaveIfHeldInRole: options?.leaveIfHeldInRole,
        onWait: options?.onWait ?? ((message) => context.say(message)),
      });
    },
    async withDatabase(fn, options) {
      // Cron pays every start-up. The driver loads with the configuration, so that connecting starts
      // as soon as the configuration is read; the logger and the command's modules load meanwhile.
      const driver = import('../db/index.js');
      driver.catch(() => {}); // reported by openDatabase
      const config = await context.loadConfig();
      await driver.catch(() => {});
      const opening = context.openDatabase(config, options);
      opening.catch(() => {}); // a refused connection is reported where it is awaited, below
      let log: Logger;
      try {
        options?.whileConnecting?.(config);
        log = await context.logger(config);
      } catch (err) {
        await opening.then((db) => db.close()).catch(() => {});
        throw err;
      }
      const db = await opening;
      try {
        return await fn(db, config, log);
      } finally {
        await db.close();
      }
    },
    exitCode: EXIT.ok,
  };
  return context;
}
