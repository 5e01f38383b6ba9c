import pino, { type DestinationStream, type Logger } from 'pino';
import { ConfigError } from './config/errors.js';
import { LOG_LEVELS, type LogLevel } from './config/schema.js';
import { redactUrl } from './db/errors.js';

export type { Logger } from 'pino';

/**
 * Where secrets may appear in a log object. Listed once here so that no call site has to
 * remember them: a DSN keeps its host and database but loses its password, anything else
 * is replaced outright.
 */
export const REDACT_PATHS: readonly string[] = [
  'password',
  '*.password',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'authorization',
  '*.authorization',
  'headers["xa-api-key"]',
  '*.headers["xa-api-key"]',
  'headers["XA-API-KEY"]',
  '*.headers["XA-API-KEY"]',
  'url',
  '*.url',
  'databaseUrl',
  '*.databaseUrl',
  'connectionString',
  '*.connectionString',
];

const URL_KEYS = new Set(['url', 'databaseUrl', 'connectionString']);

function censor(value: unknown, path: string[]): unknown {
  const key = path[path.length - 1] ?? '';
  if (URL_KEYS.has(key)) return typeof value === 'string' ? redactUrl(value) : value;
  return '[redacted]';
}

export interface LoggerOptions {
  /** `log.level` from the configuration. */
  level?: LogLevel;
  /** `--debug`: overrides every other level setting. */
  debug?: boolean;
  /** AMIE_LOG_LEVEL in here overrides the configured level. */
  env?: NodeJS.ProcessEnv;
  /** Defaults to stderr, written synchronously so nothing is lost when the command exits. */
  destination?: DestinationStream;
  /** Fields every line carries (the dispatcher binds packet and transaction ids on child loggers). */
  bindings?: Record<string, unknown>;
}

/** --debug, then AMIE_LOG_LEVEL, then the configuration, then info. */
export function resolveLogLevel(opts: Pick<LoggerOptions, 'level' | 'debug' | 'env'> = {}): LogLevel {
  if (opts.debug) return 'debug';
  const fromEnv = (opts.env ?? process.env).AMIE_LOG_LEVEL;
  if (fromEnv) {
    if (!(LOG_LEVELS as readonly string[]).includes(fromEnv)) {
      throw new ConfigError(`AMIE_LOG_LEVEL: expected one of ${LOG_LEVELS.join(', ')}, got "${fromEnv}"`);
    }
    return fromEnv as LogLevel;
  }
  return opts.level ?? 'info';
}

/**
 * JSON lines on stderr, so stdout stays for a command's own output. Secrets are redacted
 * by the paths above whatever the caller logs.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const logger = pino(
    {
      name: 'amie',
      level: resolveLogLevel(opts),
      base: { pid: process.pid, ...opts.bindings },
      redact: { paths: [...REDACT_PATHS], censor },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    // A destination, never a transport: transports run in worker threads loaded from pino's own
    // files, which the bundle `amie` runs from does not have.
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
  return logger;
}
