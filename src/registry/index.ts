export { REGISTRY_MIGRATION } from '../store/registry-schema.js';
export * from './records.js';
export * from './logins.js';
export {
  REGISTRY_LOCK_KEY,
  lockRegistry,
  tryLockRegistry,
  lookup,
  slurmAccountOwner,
  applyChanges,
  setProjectState,
  setAccountState,
  modifyPerson,
  findMergePair,
  mergePeople,
  listPeople,
  listProjects,
  listAccounts,
  allocationHistory,
  findRegistryKey,
  type LookupQuery,
  type Lookup,
  type ChangeSet,
  type Applied,
  type PersonWrite,
  type ProjectWrite,
  type PersonChanges,
  type PersonListing,
} from './sql.js';
export { RegistryBooks, type BatchQuestions } from './batch.js';
export { nextAllocation, ALLOCATION_TYPES, type AllocationType } from './allocation.js';
