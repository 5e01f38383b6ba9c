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
  stateName,
  validateBody,
  type DataRow,
  type PacketTypeName,
  type TagValue,
} from '../protocol/index.js';
import { HANDLED_TYPES, type AmieHandler, type HandledType, type IncomingPacket, type PacketContext } from './handler.js';
import { isOutcome } from './outcome.js';
import {
  claimBatch,
  completePacket,
  recordDeferral,
  rowsFromJson,
  type ClaimedRow,
  type ReplyToWrite,
  type TransactionRecord,
} from '../store/index.js';

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
}

export type OutcomeKind = 'reply' | 'fail' | 'invalid' | 'defer' | 'error' | 'ignore' | 'unhandled' | 'closed';

/** One handled packet, for the summary, the dry-run listing and notifications. */
export interface PacketResult {
  packetRecId: number;
  transRecId: number;
  transactionId: number;
  type: string;
  outcome: OutcomeKind;
  reason?: string;
  replyType?: PacketTypeName;
  replyPacketRecId?: number | null;
  /** The reply's body as JSON (always present for replies; shown by --dry-run). */
  reply?: Record<string, TagValue>;
  /** Key identifying tags of the incoming packet, for people reading logs and notifications. */
  keys: Record<string, string>;
  durationMs: number;
}

export interface RunSummary {
  runId: string;
  dryRun: boolean;
  taken: number;
  answered: number;
  failed: number;
  invalid: number;
  deferred: number;
  errors: number;
  ignored: number;
  closed: number;
  unhandled: Record<string, number>;
  results: PacketResult[];
  durationMs: number;
}

/** 0: everything went as the handler chose; 1: a handler error, a failure reply or an unhandled type. */
export function exitCodeFor(summary: RunSummary): 0 | 1 {
  const unhandled = Object.keys(summary.unhandled).length > 0;
  return summary.errors > 0 || summary.failed > 0 || summary.invalid > 0 || unhandled ? 1 : 0;
}

export function formatSummary(s: RunSummary): string {
  const unhandled = Object.entries(s.unhandled)
    .map(([t, n]) => `${t} ×${n}`)
    .join(', ');
  return (
    `${s.dryRun ? '[dry run] ' : ''}${s.taken} packet(s): ${s.answered} answered, ${s.failed + s.invalid} failed` +
    ` (${s.invalid} invalid), ${s.deferred + s.errors} deferred (${s.errors} by errors), ${s.ignored} ignored,` +
    ` ${s.closed} closed by ITC, unhandled types: ${unhandled || 'none'} (${s.durationMs} ms)`
  );
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

class RollbackDryRun extends Error {}

/**
 * The engine: claims pending incoming packets, validates them, calls the handler method
 * for their type, completes the reply and writes it together with the packet's new state.
 */
export class Dispatcher {
  private readonly opts: Required<Omit<DispatchOptions, 'types' | 'limit'>> & Pick<DispatchOptions, 'types' | 'limit'>;

  constructor(
    private readonly db: Database,
    private readonly handler: AmieHandler,
    private readonly log: Logger,
    options: DispatchOptions = {},
  ) {
    this.opts = {
      dryRun: options.dryRun ?? false,
      batchSize: options.batchSize ?? 50,
      maxErrorDeferrals: options.maxErrorDeferrals ?? 5,
      handlerName: options.handlerName ?? (handler.constructor as { handlerName?: string }).handlerName ?? 'custom',
      types: options.types,
      limit: options.limit,
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
    // Packets this run left in progress (deferred, unhandled) are not offered again in the same run.
    const seen: number[] = [];
    for (;;) {
      const room = this.opts.limit === undefined ? this.opts.batchSize : Math.min(this.opts.batchSize, this.opts.limit - summary.taken);
      if (room <= 0) break;
      const results = await this.runBatch(room, seen, summary.runId);
      if (results.length === 0) break;
      for (const r of results) {
        seen.push(r.packetRecId);
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

  private async runBatch(limit: number, exclude: readonly number[], runId: string): Promise<PacketResult[]> {
    const results: PacketResult[] = [];
    try {
      await this.db.transaction(async (tx) => {
        const claimed = await claimBatch(tx, { limit, exclude, types: this.opts.types });
        for (const [i, row] of claimed.entries()) {
          // One round trip per packet for its savepoint: the previous packet's is released and
          // this one's set together; COMMIT releases the last.
          await tx.exec(i === 0 ? 'SAVEPOINT amie_packet' : 'RELEASE SAVEPOINT amie_packet; SAVEPOINT amie_packet');
          results.push(await this.handleOne(tx, row, runId));
        }
        if (this.opts.dryRun && claimed.length > 0) throw new RollbackDryRun();
      });
    } catch (err) {
      if (!(err instanceof RollbackDryRun)) throw err;
    }
    return results;
  }

  /**
   * Each packet is handled under its own savepoint: whatever its handler or its reply wrote is
   * undone if anything fails, while the rest of the batch goes on. A lost connection is not the
   * packet's fault and ends the run.
   */
  private async handleOne(tx: Queryable, row: ClaimedRow, runId: string): Promise<PacketResult> {
    const started = Date.now();
    const type = packetTypeName(Number(row.type_id));
    const transaction: TransactionRecord = {
      transRecId: row.trans_rec_id,
      originatingSiteName: row.originating_site_name,
      transactionId: Number(row.transaction_id),
      localSiteName: row.local_site_name,
      remoteSiteName: row.remote_site_name,
      state: stateName(Number(row.trans_state_id)) ?? 'in-progress',
      ts: row.trans_ts,
    };
    const body = PacketBody.fromRows(rowsFromJson(row.data));
    const log = this.log.child({
      run_id: runId,
      packet_rec_id: row.packet_rec_id,
      trans_rec_id: row.trans_rec_id,
      transaction_id: transaction.transactionId,
      packet_type: type ?? `type_id ${row.type_id}`,
    });
    const keys: Record<string, string> = {};
    for (const k of KEY_TAGS) {
      const v = body.get(k);
      if (v) keys[k] = v;
    }
    const base = {
      packetRecId: row.packet_rec_id,
      transRecId: row.trans_rec_id,
      transactionId: transaction.transactionId,
      type: type ?? `type_id ${row.type_id}`,
      keys,
    };
    const audit = (outcome: OutcomeKind, reason?: string) => ({
      runId,
      packetRecId: row.packet_rec_id,
      transRecId: row.trans_rec_id,
      packetType: base.type,
      outcome,
      reason: reason ?? null,
      durationMs: Date.now() - started,
      handler: this.opts.handlerName,
    });
    const finish = (r: Omit<PacketResult, keyof typeof base | 'durationMs'>): PacketResult => {
      const result = { ...base, ...r, durationMs: Date.now() - started };
      const line = { outcome: r.outcome, reason: r.reason, reply_type: r.replyType, reply_packet_rec_id: r.replyPacketRecId, ms: result.durationMs, ...keys };
      if (r.outcome === 'reply' || r.outcome === 'closed' || r.outcome === 'ignore') log.info(line, `packet ${r.outcome}`);
      else if (r.outcome === 'defer') log.warn(line, 'packet deferred');
      else log.error(line, `packet ${r.outcome}`);
      return result;
    };

    const canFail = !!type && type !== 'inform_transaction_complete' && (HANDLED_TYPES as readonly string[]).includes(type);
    const work = async (): Promise<PacketResult> => {
      if (!type || !(HANDLED_TYPES as readonly string[]).includes(type)) {
        const reason = type ? `${type} is not a packet type a site receives` : `unknown packet type id ${row.type_id}`;
        await recordDeferral(tx, audit('unhandled', reason), false);
        return finish({ outcome: 'unhandled', reason });
      }
      const handledType = type as HandledType;

      // An incoming ITC ends the conversation: note it, send nothing.
      if (handledType === 'inform_transaction_complete') {
        const packet = this.packet(handledType, row, body, transaction);
        const ctx: PacketContext = { tx, log, dryRun: this.opts.dryRun, errorCount: row.error_count };
        await this.handler.inform_transaction_complete(packet, ctx);
        await completePacket(tx, audit('closed', body.get('Message')), null);
        return finish({ outcome: 'closed', reason: `${body.get('StatusCode') ?? ''} ${body.get('Message') ?? ''}`.trim() });
      }

      const replyType = specOf(handledType).siteReply as PacketTypeName;
      const problems = validateBody(handledType, body);
      if (problems.length > 0) {
        const message = `invalid ${handledType}: ${formatProblems(problems)}`;
        const reply = this.failureReply(row, message);
        const id = await completePacket(tx, audit('invalid', message), reply);
        return finish({ outcome: 'invalid', reason: message, replyType: reply.type, replyPacketRecId: id, reply: toJson(reply.rows) });
      }

      const packet = this.packet(handledType, row, body, transaction);
      const ctx: PacketContext = { tx, log, dryRun: this.opts.dryRun, errorCount: row.error_count };
      const method = this.handler[handledType] as (p: IncomingPacket, c: PacketContext) => Promise<unknown>;
      const result = await method.call(this.handler, packet, ctx);

      if (isOutcome(result)) {
        switch (result.kind) {
          case 'unhandled': {
            const reason = `the handler does not implement ${handledType}`;
            await recordDeferral(tx, audit('unhandled', reason), false);
            return finish({ outcome: 'unhandled', reason });
          }
          case 'defer':
            await recordDeferral(tx, audit('defer', result.reason), false);
            return finish({ outcome: 'defer', reason: result.reason });
          case 'ignore':
            await completePacket(tx, audit('ignore', result.reason), null);
            return finish({ outcome: 'ignore', reason: result.reason });
          case 'fail': {
            const reply = this.failureReply(row, result.message);
            const id = await completePacket(tx, audit('fail', result.message), reply);
            return finish({ outcome: 'fail', reason: result.message, replyType: reply.type, replyPacketRecId: id, reply: toJson(reply.rows) });
          }
        }
      }

      // A reply: fill what may be taken from the request, then hold the handler to the protocol.
      const replyBody = PacketBody.fromTags((result ?? {}) as Record<string, TagValue>);
      fillFromRequest(replyType, replyBody, body, packet.request?.body);
      if (replyType === 'inform_transaction_complete') {
        if (!replyBody.has('StatusCode')) replyBody.set('StatusCode', 'Success');
        if (!replyBody.has('DetailCode')) replyBody.set('DetailCode', replyBody.get('StatusCode') === 'Failure' ? '2' : '1');
        if (!replyBody.has('Message')) replyBody.set('Message', `${handledType} handled`);
      }
      const replyProblems = validateBody(replyType, replyBody);
      if (replyProblems.length > 0) {
        throw new Error(`handler returned an incomplete ${replyType} for ${handledType}: ${formatProblems(replyProblems)}`);
      }
      const reply = this.replyFor(replyType, replyBody.toRows());
      const id = await completePacket(tx, audit('reply'), reply);
      return finish({ outcome: 'reply', replyType, replyPacketRecId: id, reply: replyBody.toJSON() });
    };

    // The caller has set savepoint amie_packet just before this packet.
    try {
      return await work();
    } catch (err) {
      if (isConnectionLost(err)) throw err;
      await tx.query('ROLLBACK TO SAVEPOINT amie_packet');
      return this.handlerError(tx, row, err, audit, finish, canFail);
    }
  }

  private async handlerError(
    tx: Queryable,
    row: ClaimedRow,
    error: unknown,
    audit: (o: OutcomeKind, r?: string) => Parameters<typeof recordDeferral>[1],
    finish: (r: Omit<PacketResult, 'packetRecId' | 'transRecId' | 'transactionId' | 'type' | 'keys' | 'durationMs'>) => PacketResult,
    canFail: boolean,
  ): Promise<PacketResult> {
    const message = error instanceof Error ? error.message : String(error);
    const attempts = row.error_count + 1;
    if (canFail && attempts > this.opts.maxErrorDeferrals) {
      const reason = `handler failed ${attempts} times, giving up: ${message}`;
      const reply = this.failureReply(row, reason);
      const id = await completePacket(tx, audit('fail', reason), reply);
      return finish({ outcome: 'fail', reason, replyType: reply.type, replyPacketRecId: id, reply: toJson(reply.rows) });
    }
    const reason = `handler error (attempt ${attempts} of ${this.opts.maxErrorDeferrals + 1}): ${message}`;
    await recordDeferral(tx, audit('error', reason), true);
    return finish({ outcome: 'error', reason });
  }

  private packet<N extends PacketTypeName>(type: N, row: ClaimedRow, body: PacketBody, transaction: TransactionRecord): IncomingPacket<N> {
    let request: IncomingPacket<'request_project_create' | 'request_account_create'> | undefined;
    if (row.request) {
      const reqType = packetTypeName(Number(row.request.type_id)) as 'request_project_create' | 'request_account_create';
      const reqBody = PacketBody.fromRows(rowsFromJson(row.request.data));
      request = {
        type: reqType,
        packetRecId: row.request.packet_rec_id,
        packetId: Number(row.request.packet_id),
        transaction,
        tags: readTags(reqType, reqBody) as IncomingPacket<typeof reqType>['tags'],
        body: reqBody,
        resource: reqBody.get('ResourceList'),
      };
    }
    return {
      type,
      packetRecId: row.packet_rec_id,
      packetId: Number(row.packet_id),
      transaction,
      tags: readTags(type, body),
      body,
      request,
      resource: body.get('ResourceList') ?? request?.resource,
    };
  }

  private replyFor(type: PacketTypeName, rows: DataRow[]): ReplyToWrite {
    const expected = specOf(type).expectedReply;
    return {
      type,
      rows,
      expectedReply: expected ? { type: expected, timeoutMinutes: DEFAULT_REPLY_TIMEOUT_MINUTES } : null,
    };
  }

  private failureReply(row: ClaimedRow, message: string): ReplyToWrite {
    const body = PacketBody.fromTags({ StatusCode: 'Failure', DetailCode: '2', Message: message });
    return this.replyFor('inform_transaction_complete', body.toRows());
  }
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
