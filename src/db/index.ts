import type { Database } from './types.js';
import { openPg } from './pg.js';
import { openPglite } from './pglite.js';

export type { Database, Queryable, QueryResult } from './types.js';
export { DatabaseError, isConnectionLost } from './errors.js';
export { redactUrl } from './pg.js';
export { openPg, openPglite };

/**
 * Where the default embedded database lives when the config has no `database` section: beside
 * the configuration file (see resolveDatabaseConfig), or in the current directory without one.
 */
export const DEFAULT_PGLITE_PATH = './.amie/db';

export interface DatabaseConfig {
  url?: string;
  path?: string;
}

/**
 * Opens the database the config names: `url` → a PostgreSQL server through pg,
 * `path` (or nothing) → the embedded PGlite database. `AMIE_DATABASE_URL` in the
 * environment overrides both, so cron and CI can point a config elsewhere. With
 * `create: false` a missing embedded database is an error instead of being created.
 */
export async function openDatabase(
  config: DatabaseConfig | undefined,
  env: NodeJS.ProcessEnv = process.env,
  options: { create?: boolean } = {},
): Promise<Database> {
  const url = env.AMIE_DATABASE_URL || config?.url;
  if (url) return openPg({ url });
  return openPglite({ path: config?.path ?? DEFAULT_PGLITE_PATH, ...options });
}
