/**
 * The Slurm drift of a configuration (`amie slurm check`, `amie status`, the HTML report): the
 * configured handler's settings, and the comparison of the registry with Slurm. Loaded only
 * when one of them runs (it loads the handler, the registry and the Slurm code).
 */
import type { AmieConfig } from '../config/index.js';
import { configuredHandler } from '../config/schema.js';
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import type { SlurmCheckSettings, SlurmDrift } from '../slurm/check.js';

/**
 * Whether the configured handler may be the Slurm handler: no handler, or the built-in registry
 * handler, is known not to be one, so `amie status` need not load (or log) anything to find out.
 */
export function maybeSlurmHandler(config: AmieConfig): boolean {
  const name = configuredHandler(config);
  return name !== null && name !== 'registry';
}

/** The handler's settings for the check; null when the configured handler is not the Slurm handler (or a subclass). */
export async function slurmCheckSettingsFor(
  config: AmieConfig,
  db: Database,
  log: Logger,
): Promise<SlurmCheckSettings | null> {
  if (!maybeSlurmHandler(config)) return null;
  const { createHandler } = await import('./handler.js');
  const { handler } = await createHandler(config, db, log, false);
  const h = handler as { slurmCheckSettings?: () => SlurmCheckSettings };
  return typeof h.slurmCheckSettings === 'function' ? h.slurmCheckSettings() : null;
}

/**
 * The differences between the registry and Slurm for this configuration, or null when its
 * handler is not the Slurm handler. Throws (a CommandError naming the command) when sacctmgr
 * or getent fails, and a ConfigError-like error when the handler cannot be built.
 */
export async function checkSlurmDriftFor(config: AmieConfig, db: Database, log: Logger): Promise<SlurmDrift | null> {
  const settings = await slurmCheckSettingsFor(config, db, log);
  if (!settings) return null;
  const { checkSlurmDrift } = await import('../slurm/check.js');
  return checkSlurmDrift(db, settings, log);
}
