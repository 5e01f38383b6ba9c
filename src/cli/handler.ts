import { dirname } from 'node:path';
import type { AmieConfig } from '../config/index.js';
import { ConfigError } from '../config/errors.js';
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import type { AmieHandler, LoadedHandler } from '../dispatch/index.js';
// Registers the built-in handlers (registry, slurm) by name.
import '../../handlers/index.js';

/** Builds the handler the config names, with its validated options, for one run. */
export async function createHandler(
  config: AmieConfig,
  db: Database,
  log: Logger,
  dryRun: boolean,
): Promise<{ handler: AmieHandler; name: string }> {
  return buildHandler(await loadConfiguredHandler(config), config, db, log, dryRun);
}

/**
 * Loads the class the config's `handler:` names and validates its options, without a database:
 * `amie process` does it while it connects. A missing `handler:` is a ConfigError.
 */
export async function loadConfiguredHandler(config: AmieConfig): Promise<LoadedHandler> {
  const { loadHandlerClass } = await import('../dispatch/index.js');
  if (config.handler === undefined) {
    throw new ConfigError([
      `${config.configFile}: handler: required to answer packets (a built-in name such as "registry", or a path to a module)`,
    ]);
  }
  return loadHandlerClass(config.handler, dirname(config.configFile));
}

/** An instance of a loaded handler class for one run. */
export async function buildHandler(
  loaded: LoadedHandler,
  config: AmieConfig,
  db: Database,
  log: Logger,
  dryRun: boolean,
): Promise<{ handler: AmieHandler; name: string }> {
  const { constructHandler } = await import('../dispatch/index.js');
  const handler = constructHandler(loaded, {
    db,
    log: log.child({ handler: loaded.name }),
    site: config.site,
    options: loaded.options,
    dryRun,
    configDir: dirname(config.configFile),
  });
  return { handler, name: loaded.name };
}
