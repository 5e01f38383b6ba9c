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
export * from './mapping.js';
export * from './report.js';
export * from './api-client.js';
export * from './api-answers.js';
export * from './sinks/types.js';
export { AmieDbSink } from './sinks/amie-db.js';
export { UsageApiSink } from './sinks/usage-api.js';
export * from './summary.js';
export * from './alerts.js';
