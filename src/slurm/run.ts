/**
 * Running the site's external programs (sacctmgr, scancel, useradd, getent, site scripts).
 *
 * Packet text is hostile input: every program runs through execa with an argument array, never
 * a shell, so a name like `$(rm -rf /)` reaches the program as that literal text in one argument.
 * Programs get a small environment (COMMAND_ENV and the names a site lists), never the toolkit's
 * own: its API key, Slack token and database password go only where they are addressed.
 * Every run has a timeout and no stdin; its output is logged at debug level; a failure becomes
 * a CommandError whose message names the command and its stderr, which the dispatcher records
 * in the audit when it defers the packet.
 */
import { execa } from 'execa';
import type { Logger } from 'pino';
import { PacketFailure } from '../dispatch/outcome.js';

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** The environment variables every program gets from ours (when set); a site adds more by name. */
export const COMMAND_ENV = ['PATH', 'HOME', 'LANG', 'TZ', 'SLURM_CONF'] as const;
/** How much of a failed command's stderr goes into its error message. */
const STDERR_IN_MESSAGE = 1000;

export interface CommandOptions {
  /** A logger bound to the packet being handled. */
  log: Logger;
  /** Log the argument list instead of running it. */
  dryRun?: boolean;
  /** Default 30 s. */
  timeoutMs?: number;
  /** Exit codes that are answers rather than failures (getent exits 2 for "no such entry"). */
  okExitCodes?: readonly number[];
  /** Environment variables passed on besides COMMAND_ENV (by name; their values come from ours). */
  env?: readonly string[];
}

/** The environment a program gets: COMMAND_ENV and `names`, those that are set, nothing else. */
export function commandEnv(
  names: readonly string[] = [],
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...COMMAND_ENV, ...names]) {
    const value = Object.hasOwn(from, name) ? from[name] : undefined;
    if (value !== undefined) env[name] = value;
  }
  return env;
}

export interface CommandResult {
  argv: string[];
  /** 0 under dry run. */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** True when the command was only logged. */
  dryRun: boolean;
}

/** A command that could not run, timed out, or exited with a code not in okExitCodes. */
export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * An argument list as a person reads it: arguments with spaces, quotes or control characters
 * are JSON-quoted, so a newline in packet text shows as `\n` and cannot forge a log line.
 */
export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function bounded(text: string): string {
  const t = text.trim();
  return t.length > STDERR_IN_MESSAGE ? `…${t.slice(-STDERR_IN_MESSAGE)}` : t;
}

/** Runs `argv[0]` with the rest as its arguments. Throws CommandError on any failure. */
export async function runCommand(argv: readonly string[], opts: CommandOptions): Promise<CommandResult> {
  if (argv.length === 0 || !argv[0]) throw new CommandError('empty command', argv, undefined, '');
  const command = formatArgv(argv);
  if (opts.dryRun) {
    opts.log.info({ argv }, `dry run: would run ${command}`);
    return { argv: [...argv], exitCode: 0, stdout: '', stderr: '', dryRun: true };
  }
  const timeout = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const started = Date.now();
  const r = await execa(argv[0], argv.slice(1), {
    timeout,
    stdin: 'ignore',
    env: commandEnv(opts.env),
    extendEnv: false,
    reject: false,
    stripFinalNewline: true,
    maxBuffer: 10_000_000,
  });
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  const stderr = typeof r.stderr === 'string' ? r.stderr : '';
  opts.log.debug({ argv, exitCode: r.exitCode, stdout, stderr, ms: Date.now() - started }, `ran ${command}`);
  if (r.timedOut) {
    throw new CommandError(`command timed out after ${timeout} ms: ${command}`, argv, undefined, stderr, { cause: r });
  }
  if (r.exitCode === undefined) {
    // Never started (not found, not executable) or killed by a signal.
    const why = r.signal
      ? `was killed by ${r.signal}`
      : `could not run (${r.cause instanceof Error ? r.cause.message : (r.originalMessage ?? 'unknown reason')})`;
    throw new CommandError(`command ${why}: ${command}`, argv, undefined, stderr, { cause: r.cause ?? r });
  }
  if (r.exitCode !== 0 && !(opts.okExitCodes ?? []).includes(r.exitCode)) {
    const err = bounded(stderr) || bounded(stdout) || '(no output)';
    throw new CommandError(`command failed (exit ${r.exitCode}): ${command}: ${err}`, argv, r.exitCode, stderr);
  }
  return { argv: [...argv], exitCode: r.exitCode, stdout, stderr, dryRun: false };
}

// ------------------------------------------------------------------ argument templates

/**
 * Characters never passed on from packet text: control characters (newline, tab, NUL …) become
 * a space. A program gets each value as one argument, but a newline would still break the
 * line-oriented files many site scripts write (passwd, grid-mapfile, logs).
 */
export function singleLine(value: string): string {
  return value
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
}

/** `{name}` placeholders in an argument template. */
const PLACEHOLDER = /\{([A-Za-z]+)\}/g;

/** The placeholders a template uses that are not in `known`. */
export function unknownPlaceholders(template: readonly string[], known: readonly string[]): string[] {
  const bad = new Set<string>();
  for (const arg of template)
    for (const m of arg.matchAll(PLACEHOLDER)) if (!known.includes(m[1]!)) bad.add(`{${m[1]}}`);
  return [...bad];
}

/**
 * Substitutes `{name}` placeholders inside each argument of a template; one template argument
 * stays one argument whatever the value holds (spaces, quotes, `;`, `$( )`). Values are made
 * single-line first; null (an email nobody gave) becomes an empty string, and a placeholder that is
 * not in `values` at all is an error.
 *
 * A value must not turn an argument into an option: a name like `--shell=/tmp/evil` would be
 * read by the program as one. An argument that starts with `-` only because of its values is
 * refused with a PacketFailure (the packet is answered with a failure naming it), unless the
 * template glues the value to an option (`--name={lastName}`, which starts with `-` itself) or
 * puts it after a `--` argument (where programs stop reading options).
 */
export function expandArgv(
  template: readonly string[],
  values: Readonly<Record<string, string | number | null | undefined>>,
): string[] {
  let operands = false;
  return template.map((arg) => {
    const out = arg.replace(PLACEHOLDER, (whole, name: string) => {
      const v = Object.hasOwn(values, name) ? values[name] : undefined;
      if (v === undefined) throw new Error(`argument template ${JSON.stringify(arg)}: no value for ${whole}`);
      return v === null ? '' : singleLine(String(v));
    });
    if (!operands && out.startsWith('-') && !arg.startsWith('-')) {
      throw new PacketFailure(
        `site command argument ${JSON.stringify(arg)} would be ${JSON.stringify(out)}, which the program would take for an option: ` +
          'packet text starting with "-" is refused there (a template may glue it to an option, --name={value}, or put it after "--")',
      );
    }
    if (arg === '--') operands = true;
    return out;
  });
}
