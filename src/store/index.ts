export { TOOLKIT_SCHEMA, MIGRATIONS, applyMigrations, type Migration } from './migrations.js';
export {
  AMIE_TABLES,
  initDatabase,
  prepareDatabase,
  missingAmieTables,
  type AmieTableName,
  type InitResult,
} from './init.js';
export type { TransactionRecord, PacketRecord, PacketWithTransaction } from './records.js';
export {
  findIncomingInProgress,
  writePacket,
  setPacketState,
  getPacket,
  listTransactionPackets,
  packetTypeId,
  type FindIncomingOptions,
  type NewPacket,
} from './packets.js';
export {
  openTransaction,
  getTransaction,
  setTransactionState,
  addTransactionDependency,
  stateId,
  type NewTransaction,
} from './transactions.js';
export {
  claimBatch,
  completePacket,
  recordDeferral,
  recordDecisions,
  errorCountCtes,
  type PacketSourceKind,
  reofferPacket,
  rowsFromJson,
  type ClaimedRow,
  type AuditEntry,
  type ReplyToWrite,
  type DecisionToWrite,
  countForeignWaiting,
  foreignPendingSql,
  thisScopeSql,
  scopeResources,
  resourceKey,
  FOREIGN_WARNING_AGE_MS,
  LEFT_PENDING_BY_A_PASS,
  type SiteScope,
} from './work.js';
export * from './usage.js';
export { readStatusFigures, recordProcessPass, pendingIncomingSql, type StatusFigures } from './status.js';
export { runLockKey, tryRunLock } from './run-lock.js';
