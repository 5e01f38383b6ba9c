/**
 * The database behind every command: a PostgreSQL server through pg, or the embedded PGlite.
 * Each driver is loaded only when a database of its kind is opened, so a run against a server
 * never loads PGlite and a run on the embedded database never loads pg (start-up time).
 */
import type { Database } from './types.js';
import type { PgOptions } from './pg.js';
import type { PgliteOptions } from './pglite.js';

export type { Database, Queryable, QueryResult } from './types.js';
export type { PgOptions, PgliteOptions };
export { DatabaseError, DatabaseInUse, isConnectionLost, redactUrl } from './errors.js';

/** Opens a PostgreSQL server through a pg pool. */
export async function openPg(options: PgOptions): Promise<Database> {
  return (await import('./pg.js')).openPg(options);
}

/** Opens (or with `create`, creates) the embedded database; without a path, one in memory. */
export async function openPglite(options: PgliteOptions = {}): Promise<Database> {
  return (await import('./pglite.js')).openPglite(options);
}

/**
 * Where the default embedded database lives when the config has no `database` section: beside
 * the configuration file (see resolveDatabaseConfig), or in the current directory without one.
 */
export const DEFAULT_PGLITE_PATH = './.amie/db';

export interface DatabaseConfig {
  url?: string;
  path?: string;
}

/** What a command does with an embedded database when it opens one (see PgliteOptions); a server ignores them. */
export type EmbeddedOpenOptions = Pick<PgliteOptions, 'create' | 'role' | 'leaveIfHeldInRole' | 'onWait'>;

/**
 * Opens the database the config names: `url` → a PostgreSQL server through pg,
 * `path` (or nothing) → the embedded PGlite database. `AMIE_DATABASE_URL` in the
 * environment overrides both, so cron and CI can point a config elsewhere. With
 * `create: false` a missing embedded database is an error instead of being created. `role`
 * and `leaveIfHeldInRole` say what this process does with an embedded database, `onWait` where
 * a wait for another process holding it is told (see PgliteOptions).
 */
export async function openDatabase(
  config: DatabaseConfig | undefined,
  env: NodeJS.ProcessEnv = process.env,
  options: EmbeddedOpenOptions = {},
): Promise<Database> {
  const url = env.AMIE_DATABASE_URL || config?.url;
  if (url) return openPg({ url });
  return openPglite({ path: config?.path ?? DEFAULT_PGLITE_PATH, ...options });
}
