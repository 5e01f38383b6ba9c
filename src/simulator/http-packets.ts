/**
 * Packets in the JSON of the ACCESS AMIE REST API, as the simulator serves and receives them.
 * The conversion is the REST source's own (src/sources/rest-json.ts), so the simulator and the
 * site's client agree by construction; this module only maps central's rows onto it. Headers are
 * written from the site's side: local_site_name is the site, outgoing_flag false a packet the
 * site receives.
 */
import { DEFAULT_REPLY_TIMEOUT_MINUTES, PacketBody, type PacketTypeName } from '../protocol/index.js';
import { RestPacketError, parseReplyPacket, toRestPacketJson, type RestPacketJson } from '../sources/rest-json.js';
import type { ServedPacket } from './http-store.js';

export function toRestPacket(p: ServedPacket): RestPacketJson {
  return toRestPacketJson({
    packetRecId: p.packetRecId,
    packetId: p.packetId,
    type: p.type ?? `type_id ${p.typeId}`,
    typeId: p.typeId,
    transRecId: p.transRecId,
    transactionId: p.transaction.transactionId,
    originatingSiteName: p.transaction.originatingSiteName,
    localSiteName: p.transaction.localSiteName,
    remoteSiteName: p.transaction.remoteSiteName,
    transactionState: p.transaction.state,
    packetState: p.state,
    outgoing: p.outgoing,
    // ISO 8601 with milliseconds and Z, as the real service writes it.
    timestamp: p.ts,
    expectedReplyList: expectedRepliesOverRest(p),
    inReplyTo: p.inReplyTo,
    clientState: p.clientState,
    clientJson: p.clientJson,
    body: PacketBody.fromRows(p.rows),
  });
}

/**
 * Central's ITC waits for the site's success ITC over the REST API (amieclient's
 * InformTransactionComplete expects one), though central's tables, shared with the table-based
 * simulation, record no expected reply for it.
 */
function expectedRepliesOverRest(p: ServedPacket): ServedPacket['expectedReplies'] {
  if (p.outgoing || p.type !== 'inform_transaction_complete' || p.expectedReplies.length > 0) return p.expectedReplies;
  return [{ type: 'inform_transaction_complete', timeout: DEFAULT_REPLY_TIMEOUT_MINUTES }];
}

/** A packet the site POSTed, read far enough to check it; `problem` says why it cannot be. */
export type PostedPacket =
  | { ok: true; type: PacketTypeName; inReplyTo: number; transRecId?: number; body: PacketBody }
  | { ok: false; problem: string };

export function readPostedPacket(json: unknown): PostedPacket {
  try {
    const reply = parseReplyPacket(json);
    const t = reply.header.trans_rec_id;
    const transRecId = typeof t === 'number' ? t : typeof t === 'string' && /^\d+$/.test(t) ? Number(t) : undefined;
    if (t !== undefined && t !== null && transRecId === undefined) {
      return { ok: false, problem: `${reply.type}: header.trans_rec_id ${JSON.stringify(t)} is not a trans_rec_id` };
    }
    return { ok: true, type: reply.type, inReplyTo: reply.inReplyTo, transRecId, body: reply.body };
  } catch (err) {
    if (err instanceof RestPacketError) return { ok: false, problem: err.message };
    throw err;
  }
}
