import { DatabaseError } from '../db/index.js';
import { packetTypeName, stateName, type DataRow, type PacketTypeName, type StateName } from '../protocol/ids.js';

/** One row of transaction_tbl, with ids as numbers and state_id as its name. */
export interface TransactionRecord {
  transRecId: number;
  originatingSiteName: string;
  transactionId: number;
  localSiteName: string;
  remoteSiteName: string;
  state: StateName;
  ts: Date;
}

/** One row of packet_tbl with its data_tbl rows. */
export interface PacketRecord {
  packetRecId: number;
  transRecId: number;
  packetId: number;
  /**
   * Undefined when type_des holds a type this toolkit does not know (a site may have added
   * one): reads never fail on it, and `typeId` lets the caller report "unknown type id 99".
   */
  type: PacketTypeName | undefined;
  typeId: number;
  version: string;
  state: StateName;
  outgoing: boolean;
  ts: Date;
  rows: DataRow[];
}

export type PacketWithTransaction = PacketRecord & { transaction: TransactionRecord };

/**
 * Both drivers return numeric and bigint as strings (and json numbers as numbers). Ids beyond
 * 2^53 would silently change value as JS numbers, so they are refused rather than rounded.
 */
export function toNumber(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (value === null || value === undefined || value === '' || !Number.isSafeInteger(n)) {
    throw new DatabaseError(`${what} is ${String(value)}, expected an integer the toolkit can hold exactly`);
  }
  return n;
}

/** Timestamps are selected as timestamptz (or its json text), so both drivers agree on the instant. */
export function toDate(value: unknown, what: string): Date {
  const d = value instanceof Date ? value : new Date(String(value));
  if (Number.isNaN(d.getTime())) throw new DatabaseError(`${what} is ${String(value)}, expected a timestamp`);
  return d;
}

function toState(value: unknown, what: string): StateName {
  const id = toNumber(value, what);
  const name = stateName(id);
  if (!name) throw new DatabaseError(`${what} is ${id}, which is not one of the AMIE states 1-7 of state_des`);
  return name;
}

/** Column list for a transaction_tbl row aliased `t`, in the shape rowToTransaction reads. */
export const TRANSACTION_COLUMNS = `t.trans_rec_id, t.originating_site_name, t.transaction_id, t.local_site_name,
  t.remote_site_name, t.state_id, t.ts::timestamptz AS ts`;

export interface TransactionRow {
  trans_rec_id: unknown;
  originating_site_name: string;
  transaction_id: unknown;
  local_site_name: string;
  remote_site_name: string;
  state_id: unknown;
  ts: unknown;
}

export function rowToTransaction(r: TransactionRow): TransactionRecord {
  const transRecId = toNumber(r.trans_rec_id, 'transaction_tbl.trans_rec_id');
  const where = `transaction_tbl row trans_rec_id ${transRecId}:`;
  return {
    transRecId,
    originatingSiteName: r.originating_site_name,
    transactionId: toNumber(r.transaction_id, `${where} transaction_id`),
    localSiteName: r.local_site_name,
    remoteSiteName: r.remote_site_name,
    state: toState(r.state_id, `${where} state_id`),
    ts: toDate(r.ts, `${where} ts`),
  };
}

/**
 * Select list for a packet_tbl row aliased `p`: its columns, its data rows as one json array
 * (so a batch of packets and their bodies is a single round trip), and, when `withTransaction`,
 * its transaction_tbl row aliased `t` as json.
 */
export function packetColumns(withTransaction: boolean): string {
  const cols = `p.packet_rec_id, p.trans_rec_id, p.packet_id, p.type_id, p.version, p.state_id, p.outgoing_flag,
  p.ts::timestamptz AS ts,
  COALESCE((SELECT json_agg(json_build_object('tag', d.tag, 'subtag', d.subtag, 'seq', d.seq, 'value', d.value)
                            ORDER BY d.tag, d.seq, d.subtag NULLS FIRST)
            FROM data_tbl d WHERE d.packet_rec_id = p.packet_rec_id), '[]'::json) AS data_rows`;
  if (!withTransaction) return cols;
  return `${cols},
  json_build_object('trans_rec_id', t.trans_rec_id, 'originating_site_name', t.originating_site_name,
    'transaction_id', t.transaction_id::text, 'local_site_name', t.local_site_name,
    'remote_site_name', t.remote_site_name, 'state_id', t.state_id, 'ts', t.ts::timestamptz) AS trans`;
}

export interface PacketRow {
  packet_rec_id: unknown;
  trans_rec_id: unknown;
  packet_id: unknown;
  type_id: unknown;
  version: string;
  state_id: unknown;
  outgoing_flag: unknown;
  ts: unknown;
  data_rows: unknown;
  trans?: unknown;
}

function parseJson(value: unknown): unknown {
  // pg and PGlite both parse json columns, but a site may run pg with custom type parsers.
  return typeof value === 'string' ? JSON.parse(value) : value;
}

function toDataRows(value: unknown, packetRecId: number): DataRow[] {
  const rows = parseJson(value) as Array<{ tag: string; subtag: string | null; seq: unknown; value: string | null }>;
  return rows.map((d) => ({
    tag: d.tag,
    subtag: d.subtag,
    seq: toNumber(d.seq, `data_tbl row of packet_rec_id ${packetRecId} tag ${d.tag}: seq`),
    value: d.value,
  }));
}

export function rowToPacket(r: PacketRow): PacketRecord {
  const packetRecId = toNumber(r.packet_rec_id, 'packet_tbl.packet_rec_id');
  const where = `packet_tbl row packet_rec_id ${packetRecId}:`;
  const typeId = toNumber(r.type_id, `${where} type_id`);
  return {
    packetRecId,
    transRecId: toNumber(r.trans_rec_id, `${where} trans_rec_id`),
    packetId: toNumber(r.packet_id, `${where} packet_id`),
    type: packetTypeName(typeId),
    typeId,
    version: r.version,
    state: toState(r.state_id, `${where} state_id`),
    outgoing: toNumber(r.outgoing_flag, `${where} outgoing_flag`) === 1,
    ts: toDate(r.ts, `${where} ts`),
    rows: toDataRows(r.data_rows, packetRecId),
  };
}

export function rowToPacketWithTransaction(r: PacketRow): PacketWithTransaction {
  return { ...rowToPacket(r), transaction: rowToTransaction(parseJson(r.trans) as TransactionRow) };
}
