/**
 * AMIE packets as the ACCESS REST API writes them, and the toolkit's model of them.
 *
 * A packet is `{DATA_TYPE: "Packet", type, type_id, header: {...}, body: {...}}`. The body goes
 * through PacketBody.fromJSON/toJSON, which never throws: a body that does not fit the model
 * keeps its problems, so the dispatcher answers it with a failure that names them. The header is
 * different: without its ids there is nothing to answer, so a header that does not fit is a
 * RestPacketError naming the field and, when readable, the packet.
 *
 * The HTTP simulator uses the same functions for the server side (toRestPacketJson to serve a
 * packet, parseReplyPacket to read a POSTed reply), so both ends agree by construction.
 */
import {
  PACKET_TYPE_IDS,
  PacketBody,
  STATE_IDS,
  isIsoDateTime,
  isPacketTypeName,
  packetTypeName,
  type JsonBody,
  type PacketTypeName,
  type StateName,
} from '../protocol/index.js';
import type { ReplyToWrite } from '../store/index.js';
import type { ClaimedPacket } from './types.js';

/** The header of a packet as JSON. Ids are numbers; the server may also send them as digit strings. */
export interface RestPacketHeaderJson {
  packet_rec_id?: number;
  packet_id?: number;
  transaction_id?: number;
  trans_rec_id?: number;
  expected_reply_list?: Array<{ type: string; timeout: number | null }>;
  local_site_name?: string;
  remote_site_name?: string;
  originating_site_name?: string;
  outgoing_flag?: boolean | number;
  transaction_state?: string | null;
  packet_state?: string | null;
  packet_timestamp?: string;
  in_reply_to?: number | null;
  client_state?: string | null;
  client_json?: unknown;
}

export interface RestPacketJson {
  DATA_TYPE: 'Packet';
  type: string;
  type_id: number;
  header: RestPacketHeaderJson;
  body: JsonBody;
}

/** A packet read from the REST API: every header field checked and typed. */
export interface RestPacket {
  packetRecId: number;
  packetId: number;
  /** The type as the server named it (it may be one this toolkit does not know). */
  type: string;
  typeId: number;
  transRecId: number;
  transactionId: number;
  originatingSiteName: string;
  localSiteName: string;
  remoteSiteName: string;
  /** Null when the server did not say. */
  transactionState: StateName | null;
  packetState: StateName | null;
  /** True for packets the site sent. */
  outgoing: boolean;
  timestamp: Date | null;
  expectedReplyList: Array<{ type: string; timeout: number | null }>;
  inReplyTo: number | null;
  clientState: string | null;
  clientJson: unknown;
  body: PacketBody;
  /** The JSON it was read from (kept as is: re-serializing the body would hide its problems). */
  raw?: unknown;
}

/** A packet whose header (or envelope) cannot be read. */
export class RestPacketError extends Error {
  override name = 'RestPacketError';
  constructor(
    message: string,
    /** The offending field, e.g. `header.trans_rec_id`. */
    readonly field: string,
    /** The packet's packet_rec_id when it could be read. */
    readonly packetRecId: number | null = null,
  ) {
    super(message);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads the fields of one packet, reporting the first bad one with the packet it belongs to. */
class FieldReader {
  packetRecId: number | null = null;
  type: string | null = null;
  constructor(private readonly where: string) {}

  private get who(): string {
    return this.packetRecId !== null
      ? `AMIE REST packet ${this.packetRecId}${this.type ? ` (${this.type})` : ''}`
      : `AMIE REST packet (${this.where})`;
  }

  fail(field: string, expected: string, got: unknown): never {
    throw new RestPacketError(
      `${this.who}: ${field}: expected ${expected}, got ${describe(got)}`,
      field,
      this.packetRecId,
    );
  }

  /** Whatever else goes wrong reading a packet is reported like a bad field, for this packet alone. */
  unreadable(err: unknown): never {
    throw new RestPacketError(
      `${this.who}: cannot be read: ${err instanceof Error ? err.message : String(err)}`,
      'packet',
      this.packetRecId,
    );
  }

  id(field: string, value: unknown): number {
    const n =
      typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < 0) this.fail(field, 'a whole number', value);
    return n;
  }

  optionalId(field: string, value: unknown): number | null {
    return value === undefined || value === null || value === '' ? null : this.id(field, value);
  }

  text(field: string, value: unknown): string {
    if (typeof value !== 'string' || value.trim() === '') this.fail(field, 'a non-empty string', value);
    return value;
  }

  state(field: string, value: unknown): StateName | null {
    if (value === undefined || value === null) return null;
    const name = typeof value === 'string' ? value.trim().toLowerCase() : value;
    if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(STATE_IDS, name)) {
      this.fail(field, `one of ${Object.keys(STATE_IDS).join(', ')}`, value);
    }
    return name as StateName;
  }

  flag(field: string, value: unknown): boolean {
    if (value === undefined || value === null) return false;
    if (value === true || value === 1 || value === '1' || value === 'true') return true;
    if (value === false || value === 0 || value === '0' || value === 'false') return false;
    return this.fail(field, 'true/false or 1/0', value);
  }

  timestamp(field: string, value: unknown): Date | null {
    if (value === undefined || value === null || value === '') return null;
    // ISO 8601; milliseconds and the zone (Z or ±hh:mm) are optional.
    const ok = typeof value === 'string' && isIsoDateTime(value.trim());
    const date = ok ? new Date(value.trim().replace(' ', 'T')) : null;
    if (!date || Number.isNaN(date.getTime()))
      return this.fail(field, 'an ISO 8601 time such as 2024-05-01T12:30:00.123Z', value);
    return date;
  }

  expectedReplies(field: string, value: unknown): RestPacket['expectedReplyList'] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) return this.fail(field, 'an array of {type, timeout}', value);
    return value.map((item, i) => {
      if (!isObject(item)) return this.fail(`${field}[${i}]`, 'an object {type, timeout}', item);
      const type = this.text(`${field}[${i}].type`, item.type);
      const timeout = this.optionalId(`${field}[${i}].timeout`, item.timeout);
      return { type, timeout };
    });
  }

  /** The type name and id; either may be missing, but when both are given they must agree. */
  typeOf(json: Record<string, unknown>): { type: string; typeId: number } {
    const hasName = json.type !== undefined && json.type !== null;
    const hasId = json.type_id !== undefined && json.type_id !== null;
    if (!hasName && !hasId)
      this.fail('type', 'a packet type name such as "request_account_create" (or a type_id)', undefined);
    const name = hasName ? this.text('type', json.type) : null;
    this.type = name;
    const id = hasId ? this.id('type_id', json.type_id) : null;
    if (name !== null && id !== null) {
      const known = isPacketTypeName(name) ? PACKET_TYPE_IDS[name] : undefined;
      if (known !== undefined && known !== id) this.fail('type_id', `${known} for type ${name}`, json.type_id);
      return { type: name, typeId: id };
    }
    if (name !== null) {
      if (!isPacketTypeName(name)) this.fail('type', 'an AMIE packet type name (no type_id was given)', name);
      return { type: name, typeId: PACKET_TYPE_IDS[name] };
    }
    return { type: packetTypeName(id!) ?? `type_id ${id}`, typeId: id! };
  }

  envelope(json: unknown): { json: Record<string, unknown>; header: Record<string, unknown> } {
    if (!isObject(json)) this.fail('packet', 'a JSON object {DATA_TYPE, type, type_id, header, body}', json);
    const dataType = json.DATA_TYPE;
    if (dataType !== undefined && (typeof dataType !== 'string' || dataType.toLowerCase() !== 'packet')) {
      this.fail('DATA_TYPE', '"Packet"', dataType);
    }
    const header = json.header;
    if (!isObject(header)) this.fail('header', 'an object', header);
    return { json, header };
  }

  body(json: Record<string, unknown>): PacketBody {
    // A missing body is an empty one: the dispatcher then names every required tag as missing.
    if (json.body === undefined || json.body === null) return PacketBody.fromJSON({});
    if (!isObject(json.body)) this.fail('body', 'an object of tags', json.body);
    return PacketBody.fromJSON(json.body);
  }
}

/**
 * Reads one packet the server sent (from `GET packets/{site}` or a transaction's packets).
 * `where` says where it came from, for the error when even its packet_rec_id is unreadable.
 */
export function parseRestPacket(input: unknown, where = 'in the server answer'): RestPacket {
  const r = new FieldReader(where);
  try {
    return readRestPacket(r, input);
  } catch (err) {
    // Only ever this packet's problem: the listing it came in goes on without it.
    if (err instanceof RestPacketError) throw err;
    return r.unreadable(err);
  }
}

function readRestPacket(r: FieldReader, input: unknown): RestPacket {
  const { json, header: h } = r.envelope(input);
  r.packetRecId = r.id('header.packet_rec_id', h.packet_rec_id);
  const { type, typeId } = r.typeOf(json);
  return {
    packetRecId: r.packetRecId,
    packetId: r.id('header.packet_id', h.packet_id),
    type,
    typeId,
    transRecId: r.id('header.trans_rec_id', h.trans_rec_id),
    transactionId: r.id('header.transaction_id', h.transaction_id),
    originatingSiteName: r.text('header.originating_site_name', h.originating_site_name),
    localSiteName: r.text('header.local_site_name', h.local_site_name),
    remoteSiteName: r.text('header.remote_site_name', h.remote_site_name),
    transactionState: r.state('header.transaction_state', h.transaction_state),
    packetState: r.state('header.packet_state', h.packet_state),
    outgoing: r.flag('header.outgoing_flag', h.outgoing_flag),
    timestamp: r.timestamp('header.packet_timestamp', h.packet_timestamp),
    expectedReplyList: r.expectedReplies('header.expected_reply_list', h.expected_reply_list),
    inReplyTo: r.optionalId('header.in_reply_to', h.in_reply_to),
    clientState: h.client_state === undefined || h.client_state === null ? null : String(h.client_state),
    clientJson: h.client_json ?? null,
    body: r.body(json),
    raw: input,
  };
}

/** The JSON of a packet, as the server serves it. Inverse of parseRestPacket. */
export function toRestPacketJson(p: RestPacket): RestPacketJson {
  const header: RestPacketHeaderJson = {
    packet_rec_id: p.packetRecId,
    packet_id: p.packetId,
    transaction_id: p.transactionId,
    trans_rec_id: p.transRecId,
    expected_reply_list: p.expectedReplyList.map((e) => ({ type: e.type, timeout: e.timeout })),
    local_site_name: p.localSiteName,
    remote_site_name: p.remoteSiteName,
    originating_site_name: p.originatingSiteName,
    outgoing_flag: p.outgoing,
    // Written even when null: amieclient's Packet.from_dict reads both keys without a default.
    transaction_state: p.transactionState,
    packet_state: p.packetState,
  };
  if (p.timestamp) header.packet_timestamp = p.timestamp.toISOString();
  if (p.inReplyTo !== null) header.in_reply_to = p.inReplyTo;
  if (p.clientState !== null) header.client_state = p.clientState;
  if (p.clientJson !== null && p.clientJson !== undefined) header.client_json = p.clientJson;
  return { DATA_TYPE: 'Packet', type: p.type, type_id: p.typeId, header, body: p.body.toJSON() };
}

/** The packet the dispatcher works on, with the transaction's opening RPC/RAC when there is one. */
export function claimedFromRest(p: RestPacket, request: RestPacket | null, errorCount: number): ClaimedPacket {
  return {
    packetRecId: p.packetRecId,
    packetId: p.packetId,
    typeId: p.typeId,
    transaction: {
      transRecId: p.transRecId,
      originatingSiteName: p.originatingSiteName,
      transactionId: p.transactionId,
      localSiteName: p.localSiteName,
      remoteSiteName: p.remoteSiteName,
      state: p.transactionState ?? 'in-progress',
      // The REST API gives no transaction time; the packet's is the closest there is.
      ts: p.timestamp ?? new Date(0),
    },
    body: p.body,
    request: request
      ? { packetRecId: request.packetRecId, packetId: request.packetId, typeId: request.typeId, body: request.body }
      : null,
    errorCount,
  };
}

/**
 * The reply to `to` as the site POSTs it: `header.in_reply_to` names the packet it answers and the
 * transaction's ids are repeated; packet_rec_id and packet_id are the server's to assign.
 */
export function replyPacketJson(
  reply: ReplyToWrite,
  to: Pick<
    RestPacket,
    'packetRecId' | 'transRecId' | 'transactionId' | 'originatingSiteName' | 'localSiteName' | 'remoteSiteName'
  >,
): RestPacketJson {
  return {
    DATA_TYPE: 'Packet',
    type: reply.type,
    type_id: PACKET_TYPE_IDS[reply.type],
    header: {
      in_reply_to: to.packetRecId,
      trans_rec_id: to.transRecId,
      transaction_id: to.transactionId,
      originating_site_name: to.originatingSiteName,
      local_site_name: to.localSiteName,
      remote_site_name: to.remoteSiteName,
      expected_reply_list: reply.expectedReply
        ? [{ type: reply.expectedReply.type, timeout: reply.expectedReply.timeoutMinutes }]
        : [],
    },
    body: PacketBody.fromRows(reply.rows).toJSON(),
  };
}

/** A reply as POSTed by a site (server side): what it answers, its type and body. */
export interface RestReply {
  type: PacketTypeName;
  typeId: number;
  inReplyTo: number;
  expectedReplyList: Array<{ type: string; timeout: number | null }>;
  body: PacketBody;
  /** The header as sent, for checks beyond these fields. */
  header: Record<string, unknown>;
}

/** Reads a POSTed reply; the type must be one the protocol knows and `header.in_reply_to` is required. */
export function parseReplyPacket(input: unknown): RestReply {
  const r = new FieldReader('POSTed reply');
  const { json, header } = r.envelope(input);
  const { type, typeId } = r.typeOf(json);
  if (!isPacketTypeName(type)) return r.fail('type', 'an AMIE packet type name', json.type ?? json.type_id);
  return {
    type,
    typeId,
    inReplyTo: r.id('header.in_reply_to', header.in_reply_to),
    expectedReplyList: r.expectedReplies('header.expected_reply_list', header.expected_reply_list),
    body: r.body(json),
    header,
  };
}

/**
 * The packets of a `GET packets/{site}` answer, `{"message": ..., "result": [packet, ...]}`, still
 * unparsed so that one bad packet does not hide the others. `what` names the request for errors.
 */
export function packetListOf(answer: unknown, what: string): unknown[] {
  if (isObject(answer)) {
    if (Array.isArray(answer.result)) return answer.result;
    // Transactions come back as {"result": {"DATA_TYPE": "transaction", ..., "DATA": [packets]}}.
    if (isObject(answer.result) && Array.isArray(answer.result.DATA)) return answer.result.DATA;
    if (Array.isArray(answer.DATA)) return answer.DATA;
  }
  throw new RestPacketError(
    `${what}: expected {"message": ..., "result": [packet, ...]}, got ${describe(answer)}${isObject(answer) ? ` with keys ${Object.keys(answer).join(', ') || 'none'}` : ''}`,
    'result',
  );
}

/** The packet_rec_id the server gave a POSTed packet, when its answer says (`result.header.packet_rec_id` or similar). */
export function postedPacketRecId(answer: unknown): number | null {
  const candidates: unknown[] = [];
  if (isObject(answer)) {
    const result = answer.result;
    for (const o of [result, answer]) {
      if (!isObject(o)) continue;
      if (isObject(o.header)) candidates.push(o.header.packet_rec_id);
      candidates.push(o.packet_rec_id);
    }
  }
  for (const c of candidates) {
    const n = typeof c === 'number' ? c : typeof c === 'string' && /^\d+$/.test(c) ? Number(c) : NaN;
    if (Number.isSafeInteger(n)) return n;
  }
  return null;
}
