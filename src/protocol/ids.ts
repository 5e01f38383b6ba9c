/**
 * The fixed vocabularies of the AMIE tables: `state_des` and `type_des` rows, exactly as the
 * legacy schema numbers them. Everything else in the toolkit refers to states and types by name.
 */

export const STATE_IDS = {
  completed: 1,
  'in-progress': 2,
  failed: 3,
  rejected: 4,
  'on-hold': 5,
  'x-pending': 6,
  killed: 7,
} as const;
export type StateName = keyof typeof STATE_IDS;

export const PACKET_TYPE_IDS = {
  data_account_create: 1,
  data_project_create: 2,
  inform_transaction_complete: 3,
  notify_account_inactivate: 4,
  notify_account_reactivate: 5,
  notify_account_create: 6,
  notify_project_create: 7,
  notify_project_inactivate: 8,
  notify_project_modify: 9,
  notify_project_reactivate: 10,
  notify_project_resources: 11,
  notify_project_usage: 12,
  notify_user_modify: 13,
  notify_user_reactivate: 14,
  notify_user_suspend: 15,
  request_account_create: 16,
  request_account_inactivate: 17,
  request_account_reactivate: 18,
  request_project_create: 19,
  request_project_inactivate: 20,
  request_project_modify: 21,
  request_project_reactivate: 22,
  request_project_resources: 23,
  request_user_modify: 24,
  request_user_reactivate: 25,
  request_user_suspend: 26,
  request_user_create: 27,
  notify_user_create: 28,
  notify_person_ids: 29,
  notify_person_duplicate: 30,
  request_person_merge: 31,
} as const;
export type PacketTypeName = keyof typeof PACKET_TYPE_IDS;

const typeById = new Map<number, PacketTypeName>(
  Object.entries(PACKET_TYPE_IDS).map(([name, id]) => [id, name as PacketTypeName]),
);
const stateById = new Map<number, StateName>(Object.entries(STATE_IDS).map(([name, id]) => [id, name as StateName]));

export function packetTypeName(id: number): PacketTypeName | undefined {
  return typeById.get(Number(id));
}
export function stateName(id: number): StateName | undefined {
  return stateById.get(Number(id));
}
export function isPacketTypeName(name: string): name is PacketTypeName {
  return Object.prototype.hasOwnProperty.call(PACKET_TYPE_IDS, name);
}

/** Default expected-reply timeout, minutes (21 days), as the AMIE reference software uses. */
export const DEFAULT_REPLY_TIMEOUT_MINUTES = 30240;

/** One row of `data_tbl` for a packet: the unit both the tables and the body model speak. */
export interface DataRow {
  tag: string;
  subtag: string | null;
  seq: number;
  value: string | null;
}
