import type { Logger } from 'pino';
import type { SiteConfig } from '../config/index.js';
import type { Database, Queryable } from '../db/index.js';
import type { PacketBody, PacketTypeName, ReplyTagsOf, TagsOf, TagValue } from '../protocol/index.js';
import type { TransactionRecord } from '../store/index.js';
import { unhandled, type Outcome } from './outcome.js';

/** The reply the site sends to each packet type it receives (§3 of the AMIE reply chains). */
export interface SiteReplies {
  request_project_create: 'notify_project_create';
  data_project_create: 'inform_transaction_complete';
  request_account_create: 'notify_account_create';
  data_account_create: 'inform_transaction_complete';
  request_project_inactivate: 'notify_project_inactivate';
  request_project_reactivate: 'notify_project_reactivate';
  request_account_inactivate: 'notify_account_inactivate';
  request_account_reactivate: 'notify_account_reactivate';
  request_user_modify: 'inform_transaction_complete';
  request_person_merge: 'inform_transaction_complete';
  notify_person_ids: 'inform_transaction_complete';
  notify_person_duplicate: 'inform_transaction_complete';
}
export type RequestType = keyof SiteReplies;
/** Every packet type a handler may be called for; an incoming ITC closes a transaction and gets no reply. */
export type HandledType = RequestType | 'inform_transaction_complete';
export const HANDLED_TYPES: readonly HandledType[] = [
  'request_project_create',
  'data_project_create',
  'request_account_create',
  'data_account_create',
  'request_project_inactivate',
  'request_project_reactivate',
  'request_account_inactivate',
  'request_account_reactivate',
  'request_user_modify',
  'request_person_merge',
  'notify_person_ids',
  'notify_person_duplicate',
  'inform_transaction_complete',
];

/** A received packet as a handler sees it: typed tags plus where it sits in the conversation. */
export interface IncomingPacket<N extends PacketTypeName = PacketTypeName> {
  type: N;
  packetRecId: number;
  packetId: number;
  transaction: TransactionRecord;
  /** Every tag of the packet, typed for its packet type (unexpected tags are there too, untyped). */
  tags: TagsOf<N> & Record<string, TagValue>;
  /** The raw tag/subtag/seq body, for tags the typed view does not know. */
  body: PacketBody;
  /**
   * The request that opened this transaction (RPC or RAC). DPC and DAC carry no ResourceList:
   * the resource and the people involved are the ones of this request.
   */
  request?: IncomingPacket<'request_project_create' | 'request_account_create'>;
  /** The resource the packet is about: its ResourceList entry, or that of the opening request. */
  resource?: string;
}

export interface PacketContext {
  /** The database transaction the reply will be written in: handler bookkeeping goes through it. */
  tx: Queryable;
  /** Logger bound to this packet's ids. */
  log: Logger;
  /** True under `amie process --dry-run`: change nothing outside, everything in `tx` is rolled back. */
  dryRun: boolean;
  /** How many times this packet was already deferred because the handler threw. */
  errorCount: number;
  /** The resource the packet is about (as IncomingPacket.resource), for work done in hooks that get no packet. */
  resource?: string;
}

/** What `beginBatch` and `endBatch` get: the batch's transaction, not a packet's. */
export interface BatchContext {
  /** The batch's database transaction; no packet savepoint is active. */
  tx: Queryable;
  log: Logger;
  dryRun: boolean;
}

/** What a handler method may return: the reply's tags, or an explicit outcome. */
export type HandlerResult<R extends PacketTypeName> =
  ReplyTagsOf<R> | Outcome | (R extends 'inform_transaction_complete' ? void | Partial<ReplyTagsOf<R>> : never);

export interface HandlerContext<O = unknown> {
  db: Database;
  log: Logger;
  site: SiteConfig;
  /** The handler's own options from `handler.options` in the config, validated by its `optionsSchema`. */
  options: O;
  dryRun: boolean;
  /**
   * The configuration file's directory: a relative path among the options (a program, a file)
   * is taken from there, like every path in the configuration. Absent: the current directory.
   */
  configDir?: string;
}

/**
 * The class a site subclasses: one method per packet type the site receives, named as the
 * AMIE type. A method not overridden reports the packet as unhandled, and the packet stays
 * in progress for a handler that knows what to do with it. Methods run inside the database
 * transaction that writes the reply: everything they record through `ctx.tx` commits or
 * rolls back with it. Work outside the database (accounts, Slurm) must be idempotent, since
 * a crash after it and before the commit offers the packet again.
 */
export class AmieHandler<O = unknown> {
  /** Name shown in logs and the audit. */
  static handlerName = 'custom';
  /**
   * Optional zod-like schema for `handler.options`; `parse` must throw with a readable message,
   * or return the validated options.
   */
  static optionsSchema?: { safeParse(input: unknown): { success: boolean; data?: unknown; error?: unknown } };

  constructor(protected readonly context: HandlerContext<O>) {}

  get log(): Logger {
    return this.context.log;
  }
  get site(): SiteConfig {
    return this.context.site;
  }
  get options(): O {
    return this.context.options;
  }

  /** Called once before a run's first packet: check outside systems, open connections. */
  async start(): Promise<void> {}
  /** Called once after a run. */
  async stop(): Promise<void> {}

  /**
   * Called in a batch's transaction before its packets are claimed. A handler whose answers depend
   * on what earlier packets changed (a RAC on the project an RPC creates, a reactivation after an
   * inactivation) takes its lock here: a run then claims only once the run before it committed,
   * so packets are answered in the order they came, whatever runs overlap. Return false when
   * another run holds the lock and will do this run's work: this run then leaves it to that run
   * and ends (exit 0). (`amie process` already lets only one run per configuration's scope get
   * this far; the registry handler waits here for the batches of other scopes' runs.)
   */
  async lockBatch(_ctx: BatchContext): Promise<boolean | void> {}
  /**
   * Called with a batch's packets (those that will reach a handler method) before the first
   * of them is handled, in the batch's transaction: a handler that keeps books takes its locks
   * and reads what the whole batch needs here, in one round trip instead of one per packet.
   */
  async beginBatch(_packets: readonly IncomingPacket[], _ctx: BatchContext): Promise<void> {}
  /**
   * Called after the batch's packets were handled, with those whose result stands (a packet
   * whose method threw, or whose reply was refused, is not among them): write what was staged.
   * A throw here rolls the batch back, and the dispatcher redoes it one packet at a time.
   */
  async endBatch(_accepted: readonly IncomingPacket[], _ctx: BatchContext): Promise<void> {}
  /**
   * Called when a packet's result does not stand (its method threw, or its reply was refused),
   * right after its database changes were rolled back: drop whatever was staged in memory for
   * it, so endBatch writes only what packets with accepted replies did.
   */
  async discardPacket(_packet: IncomingPacket, _ctx: PacketContext): Promise<void> {}

  async request_project_create(
    _packet: IncomingPacket<'request_project_create'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_project_create'>> {
    return unhandled();
  }
  async data_project_create(
    _packet: IncomingPacket<'data_project_create'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return unhandled();
  }
  async request_account_create(
    _packet: IncomingPacket<'request_account_create'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_create'>> {
    return unhandled();
  }
  async data_account_create(
    _packet: IncomingPacket<'data_account_create'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return unhandled();
  }
  async request_project_inactivate(
    _packet: IncomingPacket<'request_project_inactivate'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_project_inactivate'>> {
    return unhandled();
  }
  async request_project_reactivate(
    _packet: IncomingPacket<'request_project_reactivate'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_project_reactivate'>> {
    return unhandled();
  }
  async request_account_inactivate(
    _packet: IncomingPacket<'request_account_inactivate'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_inactivate'>> {
    return unhandled();
  }
  async request_account_reactivate(
    _packet: IncomingPacket<'request_account_reactivate'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_reactivate'>> {
    return unhandled();
  }
  async request_user_modify(
    _packet: IncomingPacket<'request_user_modify'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return unhandled();
  }
  async request_person_merge(
    _packet: IncomingPacket<'request_person_merge'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return unhandled();
  }
  async notify_person_ids(
    _packet: IncomingPacket<'notify_person_ids'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return unhandled();
  }
  async notify_person_duplicate(
    _packet: IncomingPacket<'notify_person_duplicate'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return unhandled();
  }
  /**
   * An incoming ITC closes a transaction: the dispatcher marks it completed and sends nothing.
   * Override to note the outcome (for example, that central recorded a failure).
   */
  async inform_transaction_complete(
    _packet: IncomingPacket<'inform_transaction_complete'>,
    _ctx: PacketContext,
  ): Promise<void | Outcome> {}
}

/** A handler class as the config names it: constructed once per run with its context. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any handler, whatever its options type: a constructor type admits no narrower common one
export type HandlerClass = (new (context: HandlerContext<any>) => AmieHandler<any>) & {
  handlerName?: string;
  optionsSchema?: (typeof AmieHandler)['optionsSchema'];
};
