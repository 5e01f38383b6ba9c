export {
  CommandError,
  COMMAND_ENV,
  DEFAULT_COMMAND_TIMEOUT_MS,
  commandEnv,
  expandArgv,
  formatArgv,
  runCommand,
  singleLine,
  unknownPlaceholders,
  type CommandOptions,
  type CommandResult,
} from './run.js';
export {
  Sacctmgr,
  cancelJobs,
  parseAssociations,
  parseCoordinators,
  sacctmgrChange,
  slurmText,
  SLURM_ACCOUNT_PATTERN,
  SLURM_CLUSTER_PATTERN,
  SLURM_TRES_PATTERN,
  SLURM_USER_PATTERN,
  type SacctmgrOptions,
  type SlurmAssociation,
} from './sacctmgr.js';
export { applyGridMapChange, checkDn, updateGridMapfile, type GridMapChange, type GridMapOptions } from './gridmap.js';
