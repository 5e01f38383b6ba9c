export { ConfigError } from './errors.js';
export { DEFAULT_CONFIG_FILE, loadConfig, parseConfig, readSecretEnv, resolveDatabaseConfig } from './load.js';
export { DEFAULT_DATABASE_PATH, configProgram, configRelative } from './paths.js';
export { formatIssues, knownKeys, nearest } from './format.js';
export {
  configSchema,
  configSections,
  siteSchema,
  databaseSchema,
  handlerSchema,
  configuredHandler,
  logSchema,
  sourceSchema,
  envVarName,
  LOG_LEVELS,
  type AmieConfig,
  type ConfigData,
  type SiteConfig,
  type DatabaseSection,
  type HandlerConfig,
  type SourceConfig,
  type LogLevel,
} from './schema.js';
