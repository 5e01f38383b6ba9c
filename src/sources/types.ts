/**
 * Where packets come from and where replies go. The dispatcher only ever sees this interface,
 * so a handler never knows whether its packets came from the AMIE tables or the ACCESS REST API.
 *
 * Handler state and the audit always live in the toolkit's database: a source runs each batch
 * inside one transaction of it, and records every decision there before it commits.
 */
import type { Queryable } from '../db/index.js';
import type { PacketBody, PacketTypeName } from '../protocol/index.js';
import type { AuditEntry, ReplyToWrite, SiteScope, TransactionRecord } from '../store/index.js';

/** A pending incoming packet, claimed for this batch. */
export interface ClaimedPacket {
  packetRecId: number;
  packetId: number;
  /** AMIE type id as the source gave it; it may name no known type (the dispatcher says so). */
  typeId: number;
  transaction: TransactionRecord;
  body: PacketBody;
  /** The RPC or RAC that opened the transaction, for DPC/DAC (which carry no ResourceList). */
  request: { packetRecId: number; packetId: number; typeId: number; body: PacketBody } | null;
  /** How many times a handler exception already deferred this packet. */
  errorCount: number;
}

/** What became of one claimed packet, for the source to record. */
export interface PacketDecision {
  packet: ClaimedPacket;
  /**
   * completed: the packet is done, with `reply` sent (or none: ignored, incoming ITC);
   * pending: it stays to be offered again (deferred, unhandled, handler error).
   */
  state: 'completed' | 'pending';
  reply: ReplyToWrite | null;
  /** A handler exception: the packet's error count goes up. */
  countError: boolean;
  audit: AuditEntry;
}

/** A decision after the source recorded it. */
export interface RecordedDecision extends PacketDecision {
  /** The reply's packet_rec_id when the source knows it now (tables: always; REST: after sending). */
  replyPacketRecId: number | null;
}

export interface ClaimOptions {
  /** At most this many packets. */
  limit: number;
  /** packet_rec_ids not to offer (already seen in this run). */
  exclude: readonly number[];
  /** Only these packet_rec_ids (used to redo a failed batch one packet at a time). */
  only?: readonly number[];
  /** Only these packet types. */
  types?: readonly PacketTypeName[];
  /**
   * The site and resources this configuration answers for. Packets outside it (another site's
   * transaction, another resource's) are never claimed: they wait, untouched, for their own.
   */
  site: SiteScope;
  /** Record nothing and send nothing: the transaction is rolled back after `handle`. */
  dryRun: boolean;
  /**
   * Run in the batch's transaction before anything is claimed (the handler's lock): claiming
   * under it means a batch sees every batch that held it before as committed. When it returns
   * false (another run holds the lock), nothing is claimed and runBatch returns [].
   */
  lock?: (tx: Queryable) => Promise<boolean | void>;
}

export interface PacketSource {
  /** For logs and messages: "AMIE tables in postgres://…", "AMIE REST API at https://…". */
  readonly description: string;
  /**
   * One unit of work: claims up to `limit` pending packets that no concurrent run holds, calls
   * `handle` with them inside one transaction of the toolkit's database, records the decisions
   * it returns (replies, packet states, audit) in that same transaction, commits, and returns
   * them. An exception from `handle` or from recording rolls everything back and is rethrown.
   * Returns [] when nothing is pending.
   */
  runBatch(
    options: ClaimOptions,
    handle: (packets: ClaimedPacket[], tx: Queryable) => Promise<PacketDecision[]>,
  ): Promise<RecordedDecision[]>;
  /**
   * Before a run's first batch (the REST source sends replies a crashed run left unsent; both
   * warn about packets outside `site` that have waited long).
   */
  start?(options: { site: SiteScope }): Promise<void>;
  /** After the run. */
  close?(): Promise<void>;
}
