import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { isConnectionLost, type Database, type Queryable } from '../db/index.js';
import {
  DEFAULT_REPLY_TIMEOUT_MINUTES,
  PacketBody,
  formatProblems,
  packetTypeName,
  readTags,
  specOf,
  validateBody,
  type DataRow,
  type PacketTypeName,
  type TagValue,
} from '../protocol/index.js';
import {
  HANDLED_TYPES,
  type AmieHandler,
  type BatchContext,
  type HandledType,
  type IncomingPacket,
  type PacketContext,
} from './handler.js';
import { PacketFailure, isOutcome } from './outcome.js';
import type { OutcomeKind, PacketResult, RunSummary } from './summary.js';
import type { ReplyToWrite } from '../store/index.js';
import { TablesSource } from '../sources/tables.js';
import type { ClaimedPacket, PacketDecision, PacketSource, RecordedDecision } from '../sources/types.js';

export interface DispatchOptions {
  /** Handlers must not change anything outside; every database change is rolled back. */
  dryRun?: boolean;
  /** Take at most this many packets in the run. */
  limit?: number;
  /** Only these packet types. */
  types?: PacketTypeName[];
  /** Packets claimed and committed together; a crash loses at most one batch of (idempotent) work. */
  batchSize?: number;
  /** A handler exception defers the packet this many times; the next one answers with a failure ITC. */
  maxErrorDeferrals?: number;
  /** Name recorded in the audit. */
  handlerName?: string;
  /** Asked before each batch: once it says true, the run ends after the batch in progress (SIGTERM). */
  stopRequested?: () => boolean;
}

/** Tags worth showing a person next to a packet's ids. */
const KEY_TAGS = [
  'ProjectID',
  'GrantNumber',
  'PersonID',
  'PiPersonID',
  'UserPersonID',
  'PiLastName',
  'UserLastName',
  'AllocationType',
  'ActionType',
  'KeepPersonID',
  'DeletePersonID',
  'StatusCode',
];

/** What a packet is before its handler sees it: refused early, or on its way to a method. */
interface Prepared {
  claimed: ClaimedPacket;
  type: PacketTypeName | undefined;
  started: number;
  /** Set when the packet never reaches the handler (unknown or unhandled type, invalid body). */
  early?: PacketDecision;
  incoming?: IncomingPacket;
}

/** One attempt at a batch: what it claimed, and its results or the error that rolled it back. */
type Attempt =
  { ok: true; claimed: number[]; results: PacketResult[] } | { ok: false; claimed: number[]; error: unknown };

type Handle = (packets: ClaimedPacket[], tx: Queryable) => Promise<PacketDecision[]>;

/**
 * A packet's view of the batch transaction. Its savepoint is set lazily, on the packet's first
 * statement, so a handler that keeps its books in beginBatch/endBatch (or none) costs no round
 * trip per packet; a handler error rolls back to it only if the packet wrote something.
 */
class PacketTx implements Queryable {
  used = false;
  constructor(
    private readonly tx: Queryable,
    private readonly batch: { savepoint: boolean },
  ) {}
  private async begin(): Promise<void> {
    if (this.used) return;
    this.used = true;
    // The previous packet's savepoint is released and this one's set in the same round trip.
    await this.tx.exec(
      this.batch.savepoint ? 'RELEASE SAVEPOINT amie_packet; SAVEPOINT amie_packet' : 'SAVEPOINT amie_packet',
    );
    this.batch.savepoint = true;
  }
  async query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]) {
    await this.begin();
    return this.tx.query<R>(sql, params);
  }
  async exec(sql: string): Promise<void> {
    await this.begin();
    return this.tx.exec(sql);
  }
}

/**
 * The engine: takes batches of pending incoming packets from a source (the AMIE tables or the
 * ACCESS REST API), validates them, calls the handler method for their type, completes and
 * validates the replies, and gives the decisions back to the source, which records them in the
 * batch's transaction. A batch that fails as a whole (a handler's endBatch, a write refused) is
 * rolled back and redone one packet at a time, so one bad packet never holds up the others.
 */
export class Dispatcher {
  private readonly opts: Required<Omit<DispatchOptions, 'types' | 'limit' | 'stopRequested'>> &
    Pick<DispatchOptions, 'types' | 'limit' | 'stopRequested'>;
  private readonly source: PacketSource;

  constructor(
    source: PacketSource | Database,
    private readonly handler: AmieHandler,
    private readonly log: Logger,
    options: DispatchOptions = {},
  ) {
    this.source = 'runBatch' in source ? source : new TablesSource(source);
    this.opts = {
      dryRun: options.dryRun ?? false,
      batchSize: options.batchSize ?? 50,
      maxErrorDeferrals: options.maxErrorDeferrals ?? 5,
      handlerName: options.handlerName ?? (handler.constructor as { handlerName?: string }).handlerName ?? 'custom',
      types: options.types,
      limit: options.limit,
      stopRequested: options.stopRequested,
    };
  }

  /** One pass over all pending work (up to `limit`), then returns what happened. */
  async runOnce(): Promise<RunSummary> {
    const started = Date.now();
    const summary: RunSummary = {
      runId: randomUUID(),
      dryRun: this.opts.dryRun,
      taken: 0,
      answered: 0,
      failed: 0,
      invalid: 0,
      deferred: 0,
      errors: 0,
      ignored: 0,
      closed: 0,
      unhandled: {},
      results: [],
      durationMs: 0,
    };
    await this.source.start?.({ site: this.handler.site });
    // Packets this run left in progress (deferred, unhandled; everything in a dry run) are not
    // offered again in the same run; completed ones cannot be.
    const exclude: number[] = [];
    for (;;) {
      if (this.opts.stopRequested?.()) break;
      const room =
        this.opts.limit === undefined
          ? this.opts.batchSize
          : Math.min(this.opts.batchSize, this.opts.limit - summary.taken);
      if (room <= 0) break;
      const results = await this.runBatch(room, exclude, summary.runId);
      if (results.length === 0) break;
      for (const r of results) {
        if (this.opts.dryRun || PENDING_OUTCOMES.has(r.outcome)) exclude.push(r.packetRecId);
        this.count(summary, r);
      }
    }
    summary.durationMs = Date.now() - started;
    return summary;
  }

  private count(s: RunSummary, r: PacketResult) {
    s.taken++;
    s.results.push(r);
    switch (r.outcome) {
      case 'reply':
        s.answered++;
        break;
      case 'fail':
        s.failed++;
        break;
      case 'invalid':
        s.invalid++;
        break;
      case 'defer':
        s.deferred++;
        break;
      case 'error':
        s.errors++;
        break;
      case 'ignore':
        s.ignored++;
        break;
      case 'closed':
        s.closed++;
        break;
      case 'unhandled':
        s.unhandled[r.type] = (s.unhandled[r.type] ?? 0) + 1;
        break;
    }
  }

  /**
   * One batch. If it fails as a whole, each of its packets is tried alone; a packet that fails
   * alone too is recorded as a handler error (deferred, then failed after maxErrorDeferrals), so
   * the run goes on. A lost connection is not a packet's fault and ends the run.
   */
  private async runBatch(limit: number, exclude: readonly number[], runId: string): Promise<PacketResult[]> {
    const batch = await this.attempt({ limit, exclude }, runId);
    if (batch.ok) return batch.results;
    if (batch.claimed.length === 0) throw batch.error;
    if (batch.claimed.length > 1) {
      this.log.warn(
        { run_id: runId, err: errorMessage(batch.error), packets: batch.claimed.length },
        'batch failed; handling its packets one at a time',
      );
    }
    const results: PacketResult[] = [];
    for (const id of batch.claimed) {
      const one = batch.claimed.length === 1 ? batch : await this.attempt({ limit: 1, exclude: [], only: [id] }, runId);
      if (one.ok) {
        results.push(...one.results);
        continue;
      }
      if (one.claimed.length === 0) throw one.error;
      const failed = one.error;
      const recorded = await this.attempt({ limit: 1, exclude: [], only: [id] }, runId, async (packets) =>
        packets.map((p) => {
          return this.errorDecision(this.prepare(p), failed, runId);
        }),
      );
      if (!recorded.ok) throw recorded.error;
      results.push(...recorded.results);
    }
    return results;
  }

  private async attempt(
    options: { limit: number; exclude: readonly number[]; only?: readonly number[] },
    runId: string,
    handle?: Handle,
  ): Promise<Attempt> {
    let claimed: number[] = [];
    // The handler's lock is taken before claiming, not after: a run that claimed first and locked
    // second could answer a packet (a RAC) before another run committed the one it needs (its RPC).
    const lock = async (tx: Queryable) => {
      const log = this.log.child({ run_id: runId });
      const locked = await this.handler.lockBatch({ tx, log, dryRun: this.opts.dryRun });
      if (locked === false) log.debug('another run holds the handler lock; leaving the pending packets to it');
      return locked;
    };
    try {
      const recorded = await this.source.runBatch(
        { ...options, types: this.opts.types, site: this.handler.site, dryRun: this.opts.dryRun, lock },
        (packets, tx) => {
          claimed = packets.map((p) => p.packetRecId);
          return handle ? handle(packets, tx) : this.handleBatch(packets, tx, runId);
        },
      );
      return { ok: true, claimed, results: recorded.map((d) => this.finish(d, runId)) };
    } catch (error) {
      if (isConnectionLost(error)) throw error;
      return { ok: false, claimed, error };
    }
  }

  private async handleBatch(packets: ClaimedPacket[], tx: Queryable, runId: string): Promise<PacketDecision[]> {
    const batchCtx: BatchContext = { tx, log: this.log.child({ run_id: runId }), dryRun: this.opts.dryRun };
    const prepared = packets.map((p) => this.classify(this.prepare(p), runId));
    await this.handler.beginBatch(
      prepared.flatMap((p) => (p.incoming ? [p.incoming] : [])),
      batchCtx,
    );
    const savepoint = { savepoint: false };
    const decisions: PacketDecision[] = [];
    const accepted: IncomingPacket[] = [];
    for (const p of prepared) {
      if (p.early) {
        decisions.push(p.early);
        continue;
      }
      p.started = Date.now();
      const { decision, ok } = await this.handleOne(p, tx, savepoint, runId);
      decisions.push(decision);
      if (ok) accepted.push(p.incoming!);
    }
    await this.handler.endBatch(accepted, batchCtx);
    return decisions;
  }

  private prepare(claimed: ClaimedPacket): Prepared {
    return { claimed, type: packetTypeName(claimed.typeId), started: Date.now() };
  }

  /** Refuses a packet here if it has no method to go to or does not validate; else makes it a handler's packet. */
  private classify(p: Prepared, runId: string): Prepared {
    const { claimed, type } = p;
    if (!type || !(HANDLED_TYPES as readonly string[]).includes(type)) {
      const reason = type ? `${type} is not a packet type a site receives` : `unknown packet type id ${claimed.typeId}`;
      p.early = this.decision(p, runId, 'pending', 'unhandled', reason);
      return p;
    }
    try {
      if (type !== 'inform_transaction_complete') {
        const problems = validateBody(type, claimed.body);
        if (problems.length > 0) {
          const message = `invalid ${type}: ${formatProblems(problems)}`;
          p.early = this.decision(p, runId, 'completed', 'invalid', message, failureReply(message));
          return p;
        }
      }
      p.incoming = incomingPacket(type, claimed);
    } catch (err) {
      // Packet text that trips validation itself is this packet's problem, answered as such;
      // thrown here, it would fail the batch before any packet reached its handler.
      // An incoming ITC is never answered, not even with a failure.
      const message = `invalid ${type}: the packet cannot be read: ${errorMessage(err)}`;
      p.early = this.decision(
        p,
        runId,
        'completed',
        'invalid',
        message,
        type === 'inform_transaction_complete' ? null : failureReply(message),
      );
    }
    return p;
  }

  private async handleOne(
    p: Prepared,
    tx: Queryable,
    batch: { savepoint: boolean },
    runId: string,
  ): Promise<{ decision: PacketDecision; ok: boolean }> {
    const packet = p.incoming!;
    const type = packet.type as HandledType;
    const ptx = new PacketTx(tx, batch);
    const log = this.log.child({
      run_id: runId,
      packet_rec_id: p.claimed.packetRecId,
      trans_rec_id: p.claimed.transaction.transRecId,
      transaction_id: p.claimed.transaction.transactionId,
      packet_type: type,
    });
    const ctx: PacketContext = {
      tx: ptx,
      log,
      dryRun: this.opts.dryRun,
      errorCount: p.claimed.errorCount,
      resource: packet.resource,
    };
    try {
      // An incoming ITC ends the conversation: note it, send nothing.
      if (type === 'inform_transaction_complete') {
        await this.handler.inform_transaction_complete(packet as IncomingPacket<'inform_transaction_complete'>, ctx);
        const reason = `${packet.body.get('StatusCode') ?? ''} ${packet.body.get('Message') ?? ''}`.trim();
        return { decision: this.decision(p, runId, 'completed', 'closed', reason || undefined), ok: true };
      }
      // eslint-disable-next-line @typescript-eslint/unbound-method -- called with .call(this.handler) just below
      const method = this.handler[type] as (p: IncomingPacket, c: PacketContext) => Promise<unknown>;
      const result = await method.call(this.handler, packet, ctx);
      if (isOutcome(result)) {
        switch (result.kind) {
          case 'unhandled':
            return {
              decision: this.decision(p, runId, 'pending', 'unhandled', `the handler does not implement ${type}`),
              ok: true,
            };
          case 'defer':
            return { decision: this.decision(p, runId, 'pending', 'defer', result.reason), ok: true };
          case 'ignore':
            return { decision: this.decision(p, runId, 'completed', 'ignore', result.reason), ok: true };
          case 'fail':
            return {
              decision: this.decision(p, runId, 'completed', 'fail', result.message, failureReply(result.message)),
              ok: true,
            };
        }
      }
      // A reply: fill what may be taken from the request, then hold the handler to the protocol.
      const replyType = specOf(type).siteReply as PacketTypeName;
      const replyBody = PacketBody.fromTags((result ?? {}) as Record<string, TagValue>);
      fillFromRequest(replyType, replyBody, packet.body, packet.request?.body);
      if (replyType === 'inform_transaction_complete') {
        if (!replyBody.has('StatusCode')) replyBody.set('StatusCode', 'Success');
        if (!replyBody.has('DetailCode'))
          replyBody.set('DetailCode', replyBody.get('StatusCode') === 'Failure' ? '2' : '1');
        if (!replyBody.has('Message')) replyBody.set('Message', `${type} handled`);
      }
      const replyProblems = validateBody(replyType, replyBody);
      if (replyProblems.length > 0) {
        throw new Error(`handler returned an incomplete ${replyType} for ${type}: ${formatProblems(replyProblems)}`);
      }
      return {
        decision: this.decision(p, runId, 'completed', 'reply', undefined, replyFor(replyType, replyBody.toRows())),
        ok: true,
      };
    } catch (err) {
      if (isConnectionLost(err)) throw err;
      if (ptx.used) await tx.query('ROLLBACK TO SAVEPOINT amie_packet');
      // The handler forgets what it staged for the packet, as the savepoint forgot its SQL.
      await this.handler.discardPacket(packet, ctx);
      if (err instanceof PacketFailure && type !== 'inform_transaction_complete') {
        return {
          decision: this.decision(p, runId, 'completed', 'fail', err.message, failureReply(err.message)),
          ok: false,
        };
      }
      return { decision: this.errorDecision(p, err, runId), ok: false };
    }
  }

  /** A handler exception: the packet is deferred, and answered with a failure after maxErrorDeferrals. */
  private errorDecision(p: Prepared, error: unknown, runId: string): PacketDecision {
    const message = errorMessage(error);
    const attempts = p.claimed.errorCount + 1;
    const canFail =
      !!p.type && p.type !== 'inform_transaction_complete' && (HANDLED_TYPES as readonly string[]).includes(p.type);
    if (canFail && attempts > this.opts.maxErrorDeferrals) {
      const reason = `handler failed ${attempts} times, giving up: ${message}`;
      return this.decision(p, runId, 'completed', 'fail', reason, failureReply(reason));
    }
    const reason = `handler error (attempt ${attempts} of ${this.opts.maxErrorDeferrals + 1}): ${message}`;
    return { ...this.decision(p, runId, 'pending', 'error', reason), countError: true };
  }

  private decision(
    p: Prepared,
    runId: string,
    state: PacketDecision['state'],
    outcome: OutcomeKind,
    reason?: string,
    reply: ReplyToWrite | null = null,
  ): PacketDecision {
    return {
      packet: p.claimed,
      state,
      reply,
      countError: false,
      audit: {
        runId,
        packetRecId: p.claimed.packetRecId,
        transRecId: p.claimed.transaction.transRecId,
        packetType: p.type ?? `type_id ${p.claimed.typeId}`,
        outcome,
        reason: reason ?? null,
        durationMs: Date.now() - p.started,
        handler: this.opts.handlerName,
      },
    };
  }

  /** The result of a recorded decision, logged now that it is committed. */
  private finish(d: RecordedDecision, runId: string): PacketResult {
    const keys = keysOf(d.packet.body);
    const outcome = d.audit.outcome as OutcomeKind;
    const reply = d.reply;
    const result: PacketResult = {
      packetRecId: d.packet.packetRecId,
      transRecId: d.packet.transaction.transRecId,
      transactionId: d.packet.transaction.transactionId,
      type: d.audit.packetType,
      outcome,
      ...(d.audit.reason ? { reason: d.audit.reason } : {}),
      ...(reply ? { replyType: reply.type, replyPacketRecId: d.replyPacketRecId } : {}),
      keys,
      durationMs: d.audit.durationMs,
    };
    // The reply's JSON is built when read (dry-run listings), not for every packet of a run.
    if (reply) Object.defineProperty(result, 'reply', { enumerable: true, get: () => toJson(reply.rows) });
    const body = d.packet.body;
    Object.defineProperty(result, 'tags', { enumerable: true, get: () => tagTexts(body) });
    const line = {
      run_id: runId,
      packet_rec_id: result.packetRecId,
      trans_rec_id: result.transRecId,
      transaction_id: result.transactionId,
      packet_type: result.type,
      outcome,
      reason: result.reason,
      reply_type: result.replyType,
      reply_packet_rec_id: result.replyPacketRecId,
      ms: result.durationMs,
      ...keys,
    };
    if (outcome === 'reply' || outcome === 'closed' || outcome === 'ignore') this.log.info(line, `packet ${outcome}`);
    else if (outcome === 'defer') this.log.warn(line, 'packet deferred');
    else this.log.error(line, `packet ${outcome}`);
    return result;
  }
}

function tagTexts(body: PacketBody): Record<string, string> {
  const out = new Map<string, string>();
  for (const [tag, value] of Object.entries(body.toJSON())) {
    if (typeof value === 'string') out.set(tag, value);
    else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) out.set(tag, value.join(', '));
  }
  return Object.fromEntries(out);
}

function keysOf(body: PacketBody): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const k of KEY_TAGS) {
    const v = body.get(k);
    if (v) keys[k] = v;
  }
  return keys;
}

/** Outcomes that leave the packet in progress. */
const PENDING_OUTCOMES = new Set<OutcomeKind>(['defer', 'error', 'unhandled']);

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function incomingPacket(type: PacketTypeName, claimed: ClaimedPacket): IncomingPacket {
  let request: IncomingPacket<'request_project_create' | 'request_account_create'> | undefined;
  if (claimed.request) {
    const reqType = packetTypeName(claimed.request.typeId) as 'request_project_create' | 'request_account_create';
    const reqBody = claimed.request.body;
    request = {
      type: reqType,
      packetRecId: claimed.request.packetRecId,
      packetId: claimed.request.packetId,
      transaction: claimed.transaction,
      tags: readTags(reqType, reqBody),
      body: reqBody,
      resource: reqBody.get('ResourceList'),
    };
  }
  return {
    type,
    packetRecId: claimed.packetRecId,
    packetId: claimed.packetId,
    transaction: claimed.transaction,
    tags: readTags(type, claimed.body),
    body: claimed.body,
    request,
    resource: claimed.body.get('ResourceList') ?? request?.resource,
  };
}

function replyFor(type: PacketTypeName, rows: DataRow[]): ReplyToWrite {
  const expected = specOf(type).expectedReply;
  return {
    type,
    rows,
    expectedReply: expected ? { type: expected, timeoutMinutes: DEFAULT_REPLY_TIMEOUT_MINUTES } : null,
  };
}

function failureReply(message: string): ReplyToWrite {
  const body = PacketBody.fromTags({ StatusCode: 'Failure', DetailCode: '2', Message: message });
  return replyFor('inform_transaction_complete', body.toRows());
}

/** Copies the reply tags the protocol lets the site take over from the request it answers. */
function fillFromRequest(replyType: PacketTypeName, reply: PacketBody, request: PacketBody, opening?: PacketBody) {
  const infer = specOf(replyType).inferFromRequest ?? {};
  for (const [replyTag, requestTag] of Object.entries(infer)) {
    if (reply.has(replyTag)) continue;
    const source = request.has(requestTag) ? request : opening?.has(requestTag) ? opening : undefined;
    if (!source) continue;
    const json = source.toJSON()[requestTag];
    if (json === undefined) continue;
    if (typeof json === 'string') reply.set(replyTag, json);
    else if (json.length > 0 && typeof json[0] === 'string') reply.setList(replyTag, json as string[]);
    else reply.setEntries(replyTag, json as Array<Record<string, string>>);
  }
}

function toJson(rows: readonly DataRow[]): Record<string, TagValue> {
  return PacketBody.fromRows(rows).toJSON();
}
