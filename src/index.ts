/**
 * The toolkit's public API. A site's scripts and handlers import from here.
 */
export * from './db/index.js';
export * from './config/index.js';
export { createLogger, resolveLogLevel, REDACT_PATHS, type Logger, type LoggerOptions } from './log.js';
export * from './protocol/index.js';
export * from './store/index.js';
export * from './dispatch/index.js';
export * from './sources/index.js';
export * from './registry/index.js';
export {
  RegistryHandler,
  registryOptionsSchema,
  type RegistryOptions,
  type RegistryOptionsInput,
} from '../handlers/registry.js';
export * from './simulator/index.js';
export * from './usage/index.js';
export * from './slurm/index.js';
export {
  SlurmHandler,
  slurmOptionsSchema,
  USER_PLACEHOLDERS,
  DEFAULT_CREATE_USER,
  DEFAULT_UPDATE_USER,
  type SlurmOptions,
  type SlurmOptionsInput,
} from '../handlers/slurm.js';
export * from './notify/index.js';
