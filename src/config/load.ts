import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from './errors.js';
import { formatIssues } from './format.js';
import { configSchema, databaseUrl, type AmieConfig } from './schema.js';
import { DEFAULT_DATABASE_PATH, configProgram, configRelative } from './paths.js';

/** Where the configuration is looked for when neither `-c FILE` nor AMIE_CONFIG names one. */
export const DEFAULT_CONFIG_FILE = 'config/amie.yaml';

type Env = NodeJS.ProcessEnv;

/**
 * Finds, reads and validates the configuration: `file` (from `-c`), else AMIE_CONFIG, else
 * config/amie.yaml in `cwd`. Every problem in the file is reported at once in one ConfigError.
 */
export async function loadConfig(
  file?: string,
  env: Env = process.env,
  cwd: string = process.cwd(),
): Promise<AmieConfig> {
  const given = file || env.AMIE_CONFIG || undefined;
  const shown = given ?? DEFAULT_CONFIG_FILE;
  const fullPath = isAbsolute(shown) ? shown : resolve(cwd, shown);
  let text: string;
  try {
    text = await readFile(fullPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && given === undefined) {
      throw new ConfigError(
        `no configuration file: give -c FILE or set AMIE_CONFIG (looked for ${DEFAULT_CONFIG_FILE} in ${cwd})`,
      );
    }
    const how = file ? 'given with -c' : given ? 'named by AMIE_CONFIG' : 'default';
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError(`cannot read configuration file ${shown} (${how}): ${why}`, { cause: err });
  }
  const cfg = parseConfig(text, shown, env);
  // Paths in the file are the file's: resolved here once, whatever the current directory.
  const usage = cfg.usage?.sacctPath
    ? { ...cfg.usage, sacctPath: configProgram(dirname(fullPath), cfg.usage.sacctPath) }
    : cfg.usage;
  return { ...cfg, ...(usage ? { usage } : {}), configFile: fullPath };
}

/** Validates configuration text; `sourceName` starts every error line. */
export function parseConfig(text: string, sourceName: string, env: Env = process.env): AmieConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const at = pos ? `:${pos.line}:${pos.col}` : '';
        const reason = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
        return `${sourceName}${at}: YAML syntax error: ${reason}`;
      }),
    );
  }
  const raw: unknown = doc.toJS();
  if (raw === null || raw === undefined) {
    throw new ConfigError(`${sourceName}: the file is empty: expected at least a site section (name, resource)`);
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${sourceName}: expected a mapping of sections (site, database, ...) at the top level`);
  }
  // Parsed once per command: zod's compiled fast path costs more to build than it saves here.
  const parsed = configSchema.safeParse(raw, { jitless: true });
  const problems = parsed.success ? [] : formatIssues(parsed.error.issues, sourceName, configSchema, raw);
  problems.push(...missingSecrets(raw, env).map((l) => `${sourceName}: ${l}`));
  problems.push(...envDatabaseUrlProblems(env));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return { ...parsed.data, configFile: sourceName };
}

/**
 * Secrets never sit in the file: a key ending in `Env` names the environment variable that
 * holds one. Every command opens the database, so its password must be there at load time
 * (unless AMIE_DATABASE_URL overrides the section); other sections' secrets (the Usage API
 * key, a Slack token) are read by the command that uses them, so that `amie process` in cron
 * does not need the usage reporter's key. `handler.options` belongs to the handler.
 */
function missingSecrets(raw: object, env: Env): string[] {
  const out: string[] = [];
  const walk = (node: unknown, path: string[]) => {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return;
    for (const [key, value] of Object.entries(node)) {
      const here = [...path, key];
      if (here[0] !== 'database') continue;
      if (here.join('.') === 'database' && env.AMIE_DATABASE_URL) continue;
      if (key.endsWith('Env') && typeof value === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
        if (!Object.hasOwn(env, value) || !env[value])
          out.push(`${here.join('.')}: environment variable ${value} is not set`);
      } else {
        walk(value, here);
      }
    }
  };
  walk(raw, []);
  return out;
}

/** AMIE_DATABASE_URL stands in for database.url, so it is held to the same rules (its value is never echoed: it may hold a password). */
function envDatabaseUrlProblems(env: Env): string[] {
  const url = env.AMIE_DATABASE_URL;
  if (!url) return [];
  const parsed = databaseUrl.safeParse(url);
  return parsed.success ? [] : parsed.error.issues.map((i) => `AMIE_DATABASE_URL (environment): ${i.message}`);
}

/** The value of the environment variable a `...Env` key names; a ConfigError naming both when unset. */
export function readSecretEnv(keyPath: string, variable: string, env: Env = process.env): string {
  const value = Object.hasOwn(env, variable) ? env[variable] : undefined;
  if (!value) throw new ConfigError(`${keyPath}: environment variable ${variable} is not set`);
  return value;
}

/**
 * What `openDatabase` needs: the server URL with its password filled in from the environment,
 * or the embedded database's directory resolved against the config file's directory; without
 * a database section, the embedded default `.amie/db` beside the config file, so cron started
 * from any directory finds the same database. AMIE_DATABASE_URL, when set, replaces the
 * database section.
 */
export function resolveDatabaseConfig(
  cfg: Pick<AmieConfig, 'database' | 'configFile'>,
  env: Env = process.env,
): { url?: string; path?: string } {
  if (env.AMIE_DATABASE_URL) return { url: env.AMIE_DATABASE_URL };
  const db = cfg.database;
  if (db?.url) {
    if (!db.passwordEnv) return { url: db.url };
    const password = readSecretEnv('database.passwordEnv', db.passwordEnv, env);
    const u = new URL(db.url);
    u.password = encodeURIComponent(password);
    return { url: u.toString() };
  }
  return { path: configRelative(cfg, db?.path ?? DEFAULT_DATABASE_PATH) };
}
