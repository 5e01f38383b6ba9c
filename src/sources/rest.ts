/**
 * The ACCESS AMIE REST API as a packet source. Handler state and the audit stay in the toolkit's
 * database; the API is where packets come from and replies go.
 *
 * A transactional outbox keeps every packet answered exactly once:
 *  1. the server's in-progress incoming packets are copied into amie_toolkit.rest_packets;
 *  2. a batch is claimed there with FOR UPDATE SKIP LOCKED (concurrent runs take disjoint
 *     packets), handled, and its decisions recorded in the same transaction: the packet's local
 *     state, the audit, error counts, and each reply as a row of amie_toolkit.rest_outbox, whose
 *     key (the packet it answers) allows one reply per packet, ever;
 *  3. after the commit the replies are POSTed and marked sent.
 * A run that dies between 2 and 3 leaves unsent replies; the next run sends them, but first asks
 * the server (the transaction's packets) whether a reply to that packet already arrived, and if
 * so only marks it sent. A locally completed packet is never handled again, whatever the server
 * still lists.
 */
import { randomUUID } from 'node:crypto';
import type { Database, Queryable } from '../db/index.js';
import type { Logger } from '../log.js';
import { PACKET_TYPE_IDS, PacketBody } from '../protocol/index.js';
import { FOREIGN_WARNING_AGE_MS, errorCountCtes, resourceKey, scopeResources, type SiteScope } from '../store/index.js';
import { AmieRestError, type AmieRestClient } from './rest-client.js';
import {
  claimedFromRest,
  parseRestPacket,
  replyPacketJson,
  type RestPacket,
  type RestPacketJson,
} from './rest-json.js';
import type { ClaimOptions, ClaimedPacket, PacketDecision, PacketSource, RecordedDecision } from './types.js';

export interface RestSourceOptions {
  /**
   * Record nothing and send nothing, not even replies an earlier run left unsent. The dispatcher
   * passes dryRun per batch, but start() gets no options, so the source is told here too.
   */
  dryRun?: boolean;
  /**
   * Leave a note on the server in each packet's client_state: `deferred` while a handler defers it
   * (or failed on it), `unhandled` for a type the handler does not implement, `completed` when it
   * was completed without a reply (ignored). Default true.
   */
  clientState?: boolean;
  /**
   * PostgreSQL server only: an unsent reply younger than this belongs to a run still sending it and
   * is left alone by others; older, it was left by a run that died. Default 60 s. (The embedded
   * database serves one process at a time, so there every unsent reply at start was left behind.)
   */
  outboxGraceMs?: number;
}

/** RPC and RAC: the packets that open the transactions DPC and DAC belong to. */
const OPENING_TYPE_IDS: readonly number[] = [
  PACKET_TYPE_IDS.request_project_create,
  PACKET_TYPE_IDS.request_account_create,
];
/** Packets that carry no ResourceList: their resource is that of their transaction's RPC/RAC. */
const NEEDS_OPENING_TYPE_IDS: readonly number[] = [
  PACKET_TYPE_IDS.data_project_create,
  PACKET_TYPE_IDS.data_account_create,
  PACKET_TYPE_IDS.inform_transaction_complete,
];

/** HTTP refusals that are about the run (credentials, configuration), not about one reply. */
const RUN_LEVEL_REFUSALS = new Set([401, 403, 405, 407]);

/**
 * Answers to the POST of a reply that mean the server will never take it: only these may fail a
 * transaction. Anything else (408, 429, 5xx, no answer, a redirect, a 404, a 4xx from some other
 * request) leaves the reply in the outbox for the next run.
 */
const DEFINITE_REFUSALS = new Set([400, 409, 422]);

function isDefiniteRefusal(err: unknown): err is AmieRestError {
  return (
    err instanceof AmieRestError &&
    err.request.startsWith('POST ') &&
    err.status !== undefined &&
    DEFINITE_REFUSALS.has(err.status)
  );
}

/** A reply could not be sent; it is kept in the outbox for the next run. */
export class RestDeliveryError extends Error {
  override name = 'RestDeliveryError';
}

/** Thrown inside the transaction to roll a dry run back; carries the decisions out. */
class DryRunRollback extends Error {
  constructor(readonly decisions: PacketDecision[]) {
    super('dry run: rolled back');
  }
}

interface Listing {
  /** Incoming, in-progress packets in in-progress transactions of this scope, by packet_rec_id. */
  pending: RestPacket[];
  /** Opening RPC/RAC of listed DPC/DAC that were not known locally. */
  context: RestPacket[];
}

interface OutboxEntry {
  in_reply_to: string | number;
  trans_rec_id: string | number;
  reply_type: string;
  packet: RestPacketJson;
  stale: boolean;
}

type Delivery = { kind: 'sent' | 'found'; replyPacketRecId: number | null } | { kind: 'refused'; reason: string };

export class RestSource implements PacketSource {
  private listing: Listing | null = null;
  /** A failure to send that ends the run after the batch that met it. */
  private deliveryError: RestDeliveryError | null = null;
  /** The long-waiting foreign packets last warned about: `--watch` says it again only when they change. */
  private foreignWarned = '';

  constructor(
    private readonly db: Database,
    readonly client: AmieRestClient,
    private readonly log: Logger,
    private readonly options: RestSourceOptions = {},
  ) {}

  get description(): string {
    return `AMIE REST API at ${this.client.url} (site ${this.client.site})`;
  }

  /** Sends what an earlier run left in the outbox, then reads the server's pending packets. */
  async start(options: { site: SiteScope }): Promise<void> {
    this.listing = null;
    this.deliveryError = null;
    if (!this.options.dryRun) await this.sendLeftovers();
    await this.refresh(!this.options.dryRun, options.site);
  }

  async runBatch(
    options: ClaimOptions,
    handle: (packets: ClaimedPacket[], tx: Queryable) => Promise<PacketDecision[]>,
  ): Promise<RecordedDecision[]> {
    if (this.deliveryError) throw this.deliveryError;
    const listing = this.listing ?? (await this.refresh(!options.dryRun && !this.options.dryRun, options.site));
    if (listing.pending.length === 0) return [];
    let decisions: PacketDecision[];
    try {
      decisions = await this.db.transaction(async (tx) => {
        if ((await options.lock?.(tx)) === false) return [];
        if (options.dryRun) {
          // Nothing may be recorded: the copy of the server's packets is made here, and rolled back with the rest.
          const skip = new Set(options.exclude);
          await storePackets(
            tx,
            listing.pending.filter((p) => !skip.has(p.packetRecId)),
            listing.context,
          );
        }
        const claimed = await claim(
          tx,
          listing.pending.map((p) => p.packetRecId),
          options,
        );
        if (claimed.length === 0) return [];
        const handled = answerCentralItcs(await handle(claimed, tx));
        if (options.dryRun) throw new DryRunRollback(handled);
        await recordDecisions(tx, handled);
        return handled;
      });
    } catch (err) {
      if (err instanceof DryRunRollback) return err.decisions.map((d) => ({ ...d, replyPacketRecId: null }));
      throw err;
    }
    if (decisions.length === 0) return [];
    const runId = decisions[0]!.audit.runId;
    const deliveries = await this.deliver(
      decisions.filter((d) => d.reply).map((d) => d.packet.packetRecId),
      { leftovers: false, runId },
    );
    await this.noteClientStates(decisions);
    return decisions.map((d) => {
      const delivery = deliveries.get(d.packet.packetRecId);
      if (delivery?.kind === 'refused') {
        // The reply cannot be delivered: for the run's summary (and exit code) this packet failed.
        return { ...d, audit: { ...d.audit, outcome: 'fail', reason: delivery.reason }, replyPacketRecId: null };
      }
      return { ...d, replyPacketRecId: delivery?.replyPacketRecId ?? null };
    });
  }

  async close(): Promise<void> {}

  /**
   * Reads the server's pending incoming packets and (unless in a dry run) copies this scope's
   * locally. A packet of another site's transaction or of another resource is not copied, so it
   * is never claimed: it stays on the server, untouched, for the configuration that serves it.
   */
  private async refresh(store: boolean, site: SiteScope): Promise<Listing> {
    const { packets, malformed } = await this.client.listPackets({
      incoming: true,
      states: ['in-progress'],
      transactionStates: ['in-progress'],
    });
    for (const m of malformed) {
      // Without readable ids there is nothing to answer; the operator has to look at it on the server.
      this.log.error(
        { packet_rec_id: m.packetRecId, field: m.field },
        `${m.message}: the packet is left on the server unanswered`,
      );
    }
    const byId = new Map<number, RestPacket>();
    for (const p of packets) {
      // The filters are the server's to apply; a packet that does not fit them is not ours to answer.
      if (
        p.outgoing ||
        (p.packetState ?? 'in-progress') !== 'in-progress' ||
        (p.transactionState ?? 'in-progress') !== 'in-progress'
      )
        continue;
      byId.set(p.packetRecId, p);
    }
    const listed = [...byId.values()].sort((a, b) => a.packetRecId - b.packetRecId);
    const { context, openings } = await this.openingRequests(listed);
    const resources = new Set(scopeResources(site));
    const pending: RestPacket[] = [];
    const foreign: RestPacket[] = [];
    for (const p of listed) (this.inScope(p, openings, resources) ? pending : foreign).push(p);
    this.noteForeign(foreign);
    if (store) await this.db.transaction((tx) => storePackets(tx, pending, context));
    this.listing = { pending, context };
    this.log.debug(
      { pending: pending.length, foreign: foreign.length, malformed: malformed.length, context: context.length },
      'read pending packets from the AMIE REST API',
    );
    return this.listing;
  }

  /**
   * The same rule as the tables' claim (thisScopeSql): this site's transaction (the site as the
   * server knows it, XA-SITE), and a resource (own ResourceList, else the transaction's RPC/RAC's)
   * of the scope, or none at all.
   */
  private inScope(p: RestPacket, openings: ReadonlyMap<number, RestPacket>, resources: ReadonlySet<string>): boolean {
    if (p.localSiteName !== this.client.site) return false;
    const opening = openings.get(p.transRecId);
    const resource =
      resourceKey(p.body.getList('ResourceList')) ??
      (opening ? resourceKey(opening.body.getList('ResourceList')) : null);
    return resource === null || resources.has(resource);
  }

  /** Packets left for another configuration: listed at debug, and a warning once they have waited long. */
  private noteForeign(foreign: readonly RestPacket[]): void {
    const ids = foreign.map((p) => p.packetRecId);
    if (ids.length > 0)
      this.log.debug(
        { packet_rec_ids: ids },
        `${ids.length} pending packet(s) of another site or resource left for the configuration that serves them`,
      );
    const stale = foreign.filter((p) => p.timestamp && Date.now() - p.timestamp.getTime() > FOREIGN_WARNING_AGE_MS);
    const key = stale.map((p) => p.packetRecId).join(',');
    const changed = key !== this.foreignWarned;
    this.foreignWarned = key;
    if (stale.length > 0 && changed) {
      this.log.warn(
        { foreign_waiting: stale.length, packet_rec_ids: stale.map((p) => p.packetRecId) },
        `${stale.length} pending packet(s) of another site or resource have waited over ${FOREIGN_WARNING_AGE_MS / 3_600_000} h: ` +
          'is the configuration that serves them running?',
      );
    }
  }

  /**
   * DPC, DAC and ITC carry no ResourceList: the resource is in the RPC/RAC that opened their
   * transaction. Returns that packet by trans_rec_id, from the listing, from the local copy, or,
   * when it was never seen here (a site that moved from the tables in the middle of a
   * transaction, a new database), fetched from the transaction's packets (`context`, to store).
   */
  private async openingRequests(
    listed: readonly RestPacket[],
  ): Promise<{ context: RestPacket[]; openings: Map<number, RestPacket> }> {
    const openings = new Map<number, RestPacket>();
    for (const p of listed) {
      const seen = openings.get(p.transRecId);
      if (OPENING_TYPE_IDS.includes(p.typeId) && (!seen || p.packetId < seen.packetId)) openings.set(p.transRecId, p);
    }
    const wanted = [
      ...new Set(listed.filter((p) => NEEDS_OPENING_TYPE_IDS.includes(p.typeId)).map((p) => p.transRecId)),
    ].filter((t) => !openings.has(t));
    if (wanted.length === 0) return { context: [], openings };
    const { rows } = await this.db.query<{ packet: unknown }>(
      `SELECT DISTINCT ON (trans_rec_id) packet FROM amie_toolkit.rest_packets
        WHERE trans_rec_id = ANY($1::bigint[]) AND type_id = ANY($2::int[]) ORDER BY trans_rec_id, packet_rec_id`,
      [wanted, OPENING_TYPE_IDS],
    );
    for (const r of rows) {
      const stored = parseRestPacket(r.packet, 'stored packet');
      openings.set(stored.transRecId, stored);
    }
    const found: RestPacket[] = [];
    for (const transRecId of wanted.filter((t) => !openings.has(t))) {
      try {
        const { packets } = await this.client.transactionPackets(transRecId);
        const opening = packets
          .filter((p) => !p.outgoing && OPENING_TYPE_IDS.includes(p.typeId))
          .sort((a, b) => a.packetId - b.packetId)[0];
        if (opening) {
          found.push(opening);
          openings.set(transRecId, opening);
        } else
          this.log.warn(
            { trans_rec_id: transRecId },
            'the transaction has no request_project_create or request_account_create on the server',
          );
      } catch (err) {
        if (!(err instanceof AmieRestError && err.refused)) throw err;
        this.log.warn(
          { trans_rec_id: transRecId, err: err.message },
          'could not read the transaction that a DPC/DAC/ITC belongs to',
        );
      }
    }
    return { context: found, openings };
  }

  /** Replies an earlier run committed but did not (or did not know it did) send. */
  private async sendLeftovers(): Promise<void> {
    const { rows } = await this.db.query<{ in_reply_to: string | number }>(
      `SELECT in_reply_to FROM amie_toolkit.rest_outbox
        WHERE status = 'unsent' AND ($1::boolean OR created_at < now() - make_interval(secs => $2::double precision))
        ORDER BY created_at, in_reply_to`,
      [this.db.kind === 'pglite', this.graceSeconds],
    );
    if (rows.length === 0) return;
    this.log.warn({ replies: rows.length }, 'sending replies an earlier run left unsent');
    await this.deliver(
      rows.map((r) => Number(r.in_reply_to)),
      { leftovers: true, runId: randomUUID() },
    );
    if (this.deliveryError) throw this.deliveryError;
  }

  private get graceSeconds(): number {
    return (this.options.outboxGraceMs ?? 60_000) / 1000;
  }

  /**
   * POSTs outbox entries, each under its row lock, and marks them sent. An entry that may have
   * been POSTed before (left by another run) is looked for on the server first. A refusal about
   * the reply itself fails its transaction on the server; a failure of the run (unreachable,
   * credentials) stops sending and is kept in `deliveryError`.
   */
  private async deliver(
    ids: readonly number[],
    ctx: { leftovers: boolean; runId: string },
  ): Promise<Map<number, Delivery>> {
    const out = new Map<number, Delivery>();
    for (const [i, id] of ids.entries()) {
      let entry: OutboxEntry | undefined;
      try {
        const delivery = await this.db.transaction(async (tx) => {
          const { rows } = await tx.query<OutboxEntry>(
            `SELECT in_reply_to, trans_rec_id, reply_type, packet,
                    created_at < now() - make_interval(secs => $2::double precision) AS stale
               FROM amie_toolkit.rest_outbox WHERE in_reply_to = $1 AND status = 'unsent'
              FOR UPDATE SKIP LOCKED`,
            [id, this.graceSeconds],
          );
          entry = rows[0];
          // Already sent, or being sent by another run right now.
          if (!entry) return undefined;
          return this.deliverOne(tx, entry, ctx);
        });
        if (delivery) out.set(id, delivery);
      } catch (err) {
        const left = ids.length - i;
        const what = entry ? `the ${entry.reply_type} answering packet ${id}` : `the reply to packet ${id}`;
        // Not an HTTP failure: the database failed around the POST, which may have gone through.
        const doing = err instanceof AmieRestError ? 'send' : 'send or record the sending of';
        const message =
          `could not ${doing} ${what}: ${(err as Error).message}; ` +
          `${left === 1 ? 'it is' : `it and ${left - 1} other repl${left === 2 ? 'y are' : 'ies are'}`} kept in the outbox and sent at the start of the next run` +
          (err instanceof AmieRestError ? '' : ' (unless the server shows it arrived)');
        await this.db
          .query(
            `UPDATE amie_toolkit.rest_outbox SET attempts = attempts + 1, last_error = $2 WHERE in_reply_to = $1`,
            [id, (err as Error).message],
          )
          .catch(() => {});
        this.log.error({ packet_rec_id: id, err: (err as Error).message }, 'reply not sent');
        this.deliveryError = new RestDeliveryError(message, { cause: err });
        break;
      }
    }
    return out;
  }

  private async deliverOne(
    tx: Queryable,
    entry: OutboxEntry,
    ctx: { leftovers: boolean; runId: string },
  ): Promise<Delivery> {
    const inReplyTo = Number(entry.in_reply_to);
    const transRecId = Number(entry.trans_rec_id);
    const log = this.log.child({ packet_rec_id: inReplyTo, trans_rec_id: transRecId, reply_type: entry.reply_type });
    const find = () => this.findReply(inReplyTo, transRecId, entry.reply_type);
    // On the embedded database no other process can have touched a reply this run just wrote.
    const mayBeThere = ctx.leftovers || (this.db.kind === 'pg' && entry.stale);
    try {
      let delivery: { kind: 'sent' | 'found'; replyPacketRecId: number | null } | undefined;
      if (mayBeThere) {
        const existing = await find();
        if (existing !== undefined) delivery = { kind: 'found', replyPacketRecId: existing };
      }
      if (!delivery) {
        const sent = await this.client.sendPacket(entry.packet, { alreadySent: find });
        delivery = { kind: sent.alreadyThere ? 'found' : 'sent', replyPacketRecId: sent.packetRecId };
      }
      await markSent(tx, inReplyTo, delivery.replyPacketRecId);
      if (delivery.kind === 'found')
        log.warn(
          { reply_packet_rec_id: delivery.replyPacketRecId },
          'the reply had already reached the server; marked sent without sending it again',
        );
      else log.info({ reply_packet_rec_id: delivery.replyPacketRecId }, 'reply sent');
      return delivery;
    } catch (err) {
      if (!isDefiniteRefusal(err)) throw err;
      // A refusal may only mean the reply is there already (an earlier attempt arrived late).
      const existing = await find().catch((e: unknown) => {
        if (e instanceof AmieRestError && e.refused && !RUN_LEVEL_REFUSALS.has(e.status!)) return undefined;
        throw e;
      });
      if (existing !== undefined) {
        await markSent(tx, inReplyTo, existing);
        log.warn(
          { reply_packet_rec_id: existing, err: err.message },
          'the server refused the reply because it already had it; marked sent',
        );
        return { kind: 'found', replyPacketRecId: existing };
      }
      // The server will never take this reply: the transaction cannot complete, so say so.
      let failed = 'transaction marked failed on the server';
      try {
        await this.client.failTransaction(transRecId);
      } catch (failErr) {
        failed = `marking the transaction failed did not work either: ${(failErr as Error).message}`;
      }
      const reason = `${entry.reply_type} refused: ${err.message}; ${failed}`;
      await markRefused(tx, inReplyTo, reason, ctx.runId);
      log.error({ err: err.message }, reason);
      return { kind: 'refused', reason };
    }
  }

  /** The server's packet_rec_id of a reply to `inReplyTo` already in the transaction, if any. */
  private async findReply(inReplyTo: number, transRecId: number, replyType: string): Promise<number | undefined> {
    const { packets } = await this.client.transactionPackets(transRecId);
    const replies = packets.filter((p) => p.outgoing);
    const hit = replies.find((p) => p.inReplyTo === inReplyTo);
    if (hit) return hit.packetRecId;
    // A server that does not echo in_reply_to: a reply of the same type after the packet it answers.
    if (!replies.some((p) => p.inReplyTo !== null)) {
      const answered = packets.find((p) => p.packetRecId === inReplyTo);
      const same = replies.find((p) => p.type === replyType && (!answered || p.packetId > answered.packetId));
      if (same) return same.packetRecId;
    }
    return undefined;
  }

  /** Leaves the site's view of each packet in its client_state on the server (best effort). */
  private async noteClientStates(decisions: readonly PacketDecision[]): Promise<void> {
    // After a failure to send, the server is not worth waiting for again.
    if (this.options.clientState === false || this.deliveryError) return;
    const wanted = new Map<number, string>();
    for (const d of decisions) {
      const state =
        d.state === 'pending'
          ? d.audit.outcome === 'unhandled'
            ? 'unhandled'
            : 'deferred'
          : d.reply
            ? null
            : 'completed';
      if (state) wanted.set(d.packet.packetRecId, state);
    }
    if (wanted.size === 0) return;
    const { rows } = await this.db.query<{ packet_rec_id: string | number; client_state: string | null }>(
      `SELECT packet_rec_id, client_state FROM amie_toolkit.rest_packets WHERE packet_rec_id = ANY($1::bigint[])`,
      [[...wanted.keys()]],
    );
    for (const r of rows) {
      const id = Number(r.packet_rec_id);
      const state = wanted.get(id)!;
      if (r.client_state === state) continue;
      try {
        await this.client.setClientState(id, state);
        await this.db.query(`UPDATE amie_toolkit.rest_packets SET client_state = $2 WHERE packet_rec_id = $1`, [
          id,
          state,
        ]);
      } catch (err) {
        this.log.warn(
          { packet_rec_id: id, client_state: state, err: (err as Error).message },
          'could not set the client_state of a packet on the server',
        );
      }
    }
  }
}

/**
 * Over the REST API central's ITC is answered with a success ITC, as amieclient's reference
 * example does (its ITC expects one): the server lists an unanswered ITC for ever. The dispatcher
 * only closes it, which is all the AMIE tables need (their transfer daemon ends the transaction).
 */
const CENTRAL_ITC_ANSWER_ROWS = PacketBody.fromTags({ StatusCode: 'Success', DetailCode: '1', Message: 'OK' }).toRows();

function answerCentralItcs(decisions: PacketDecision[]): PacketDecision[] {
  return decisions.map((d) =>
    d.packet.typeId === PACKET_TYPE_IDS.inform_transaction_complete &&
    d.state === 'completed' &&
    d.audit.outcome === 'closed' &&
    !d.reply
      ? { ...d, reply: { type: 'inform_transaction_complete', rows: CENTRAL_ITC_ANSWER_ROWS, expectedReply: null } }
      : d,
  );
}

/** Copies listed packets in; a packet already known keeps its local state (a completed one stays completed). */
async function storePackets(
  tx: Queryable,
  pending: readonly RestPacket[],
  context: readonly RestPacket[],
): Promise<void> {
  if (pending.length === 0 && context.length === 0) return;
  const rows = [
    ...pending.map((p) => ({
      packet_rec_id: p.packetRecId,
      trans_rec_id: p.transRecId,
      type_id: p.typeId,
      packet: p.raw,
      state: 'pending',
    })),
    ...context.map((p) => ({
      packet_rec_id: p.packetRecId,
      trans_rec_id: p.transRecId,
      type_id: p.typeId,
      packet: p.raw,
      state: 'context',
    })),
  ];
  await tx.query(
    `INSERT INTO amie_toolkit.rest_packets AS r (packet_rec_id, trans_rec_id, type_id, packet, state)
     SELECT x.packet_rec_id, x.trans_rec_id, x.type_id, x.packet, x.state
       FROM jsonb_to_recordset($1::jsonb) AS x(packet_rec_id bigint, trans_rec_id bigint, type_id int, packet jsonb, state text)
     ON CONFLICT (packet_rec_id) DO UPDATE SET state = 'pending', packet = EXCLUDED.packet
      WHERE r.state = 'context' AND EXCLUDED.state = 'pending'`,
    [JSON.stringify(rows)],
  );
}

/** Locks up to `limit` pending packets that the server still lists, with their opening request and error count. */
async function claim(tx: Queryable, listed: readonly number[], opts: ClaimOptions): Promise<ClaimedPacket[]> {
  const typeIds = opts.types?.length ? opts.types.map((t) => PACKET_TYPE_IDS[t]) : null;
  const { rows } = await tx.query<{ packet: unknown; request: unknown; error_count: number }>(
    `SELECT p.packet,
            (SELECT r.packet FROM amie_toolkit.rest_packets r
              WHERE r.trans_rec_id = p.trans_rec_id AND r.type_id = ANY($6::int[]) AND r.packet_rec_id <> p.packet_rec_id
              ORDER BY r.packet_rec_id LIMIT 1) AS request,
            COALESCE(e.error_count, 0)::int AS error_count
       FROM amie_toolkit.rest_packets p
       LEFT JOIN amie_toolkit.packet_errors e ON e.source = 'rest' AND e.packet_rec_id = p.packet_rec_id
      WHERE p.state = 'pending' AND p.packet_rec_id = ANY($1::bigint[])
        AND NOT (p.packet_rec_id = ANY($2::bigint[]))
        AND ($3::int[] IS NULL OR p.type_id = ANY($3::int[]))
        AND ($5::bigint[] IS NULL OR p.packet_rec_id = ANY($5::bigint[]))
      ORDER BY p.packet_rec_id
      LIMIT $4
      FOR UPDATE OF p SKIP LOCKED`,
    [listed, opts.exclude, typeIds, opts.limit, opts.only ?? null, OPENING_TYPE_IDS],
  );
  return rows.map((r) =>
    claimedFromRest(
      parseRestPacket(r.packet, 'stored packet'),
      r.request ? parseRestPacket(r.request, 'stored packet') : null,
      r.error_count,
    ),
  );
}

/**
 * Records a batch's decisions in one statement: completed packets change local state and their
 * replies enter the outbox, error counts go up or are forgotten, every decision gets its audit
 * row (the reply's packet_rec_id is filled in once the server gives it).
 */
async function recordDecisions(tx: Queryable, decisions: readonly PacketDecision[]): Promise<void> {
  if (decisions.length === 0) return;
  const d = decisions.map((x) => ({
    packet_rec_id: x.packet.packetRecId,
    trans_rec_id: x.packet.transaction.transRecId,
    complete: x.state === 'completed',
    count_error: x.countError,
    reply_type: x.reply?.type ?? null,
    reply: x.reply ? replyPacketJson(x.reply, { packetRecId: x.packet.packetRecId, ...x.packet.transaction }) : null,
    run_id: x.audit.runId,
    packet_type: x.audit.packetType,
    outcome: x.audit.outcome,
    reason: x.audit.reason ?? null,
    duration_ms: x.audit.durationMs,
    handler: x.audit.handler,
  }));
  const { rows } = await tx.query<{ completed: number; replies: number }>(
    `WITH d AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
         packet_rec_id bigint, trans_rec_id bigint, complete boolean, count_error boolean, reply_type text, reply jsonb,
         run_id text, packet_type text, outcome text, reason text, duration_ms int, handler text)),
     upd AS (
       UPDATE amie_toolkit.rest_packets p SET state = 'completed', completed_at = now()
         FROM d WHERE d.complete AND p.packet_rec_id = d.packet_rec_id AND p.state = 'pending'
       RETURNING p.packet_rec_id),
     ob AS (
       -- clock_timestamp: close to the commit, which is when another run could first see the row.
       INSERT INTO amie_toolkit.rest_outbox (in_reply_to, trans_rec_id, reply_type, packet, created_at)
       SELECT d.packet_rec_id, d.trans_rec_id, d.reply_type, d.reply, clock_timestamp() FROM d JOIN upd ON upd.packet_rec_id = d.packet_rec_id
        WHERE d.reply IS NOT NULL
       RETURNING in_reply_to),
     ${errorCountCtes('rest')},
     au AS (
       INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, reply_type, duration_ms, handler)
       SELECT 'rest', run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, reply_type, duration_ms, handler FROM d)
     SELECT (SELECT count(*) FROM upd)::int AS completed, (SELECT count(*) FROM ob)::int AS replies`,
    [JSON.stringify(d)],
  );
  const toComplete = decisions.filter((x) => x.state === 'completed').length;
  if (rows[0]!.completed !== toComplete) {
    throw new Error(
      `${toComplete - rows[0]!.completed} of the batch's packets were no longer pending when their outcome was written`,
    );
  }
}

async function markSent(tx: Queryable, inReplyTo: number, replyPacketRecId: number | null): Promise<void> {
  await tx.query(
    `WITH o AS (
       UPDATE amie_toolkit.rest_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,
              reply_packet_rec_id = $2, last_error = NULL
        WHERE in_reply_to = $1 RETURNING in_reply_to)
     UPDATE amie_toolkit.audit a SET reply_packet_rec_id = $2
       FROM o WHERE $2::bigint IS NOT NULL AND a.source = 'rest' AND a.packet_rec_id = o.in_reply_to
        AND a.reply_type IS NOT NULL AND a.reply_packet_rec_id IS NULL`,
    [inReplyTo, replyPacketRecId],
  );
}

async function markRefused(tx: Queryable, inReplyTo: number, reason: string, runId: string): Promise<void> {
  await tx.query(
    `WITH o AS (
       UPDATE amie_toolkit.rest_outbox SET status = 'refused', attempts = attempts + 1, last_error = $2
        WHERE in_reply_to = $1 RETURNING in_reply_to, trans_rec_id, reply_type)
     INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, reply_type, duration_ms, handler)
     SELECT 'rest', $3, o.in_reply_to, o.trans_rec_id, COALESCE(p.packet->>'type', 'type_id ' || p.type_id), 'refused', $2, o.reply_type, 0, 'rest source'
       FROM o JOIN amie_toolkit.rest_packets p ON p.packet_rec_id = o.in_reply_to`,
    [inReplyTo, reason, runId],
  );
}
