export {
  SACCT_FIELDS,
  SACCT_STATES,
  SLURM_TIME_FORMAT,
  SacctError,
  formatSacctTime,
  isSacctSkip,
  parseElapsed,
  parseSacctLine,
  parseSacctStream,
  parseTres,
  readSacct,
  sacctArgs,
  sacctEnv,
} from './sacct.js';
export type { SacctField, SacctJob, SacctQuery, SacctRecord, SacctSkip, SacctSkippedLine } from './sacct.js';
export {
  CHARGE_UNITS,
  ChargeRuleError,
  DEFAULT_CHARGE_DECIMALS,
  chargeJob,
  checkChargeRule,
  roundCharge,
} from './charge.js';
export type { ChargeResult, ChargeRule, ChargeUnit } from './charge.js';
export * from './config.js';
import { usageApiConfigSchema, usageConfigSchema } from './config.js';
/** The `usage:` section's schema. (The configuration builds it only when a file has the section.) */
export const UsageConfigSchema = usageConfigSchema();
export const UsageApiConfigSchema = usageApiConfigSchema();
export * from './mapping.js';
export * from './report.js';
export * from './api-client.js';
export * from './api-answers.js';
export * from './sinks/types.js';
export { AmieDbSink } from './sinks/amie-db.js';
export { UsageApiSink } from './sinks/usage-api.js';
export * from './summary.js';
export * from './alerts.js';
