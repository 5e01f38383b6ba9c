/**
 * The central AMIE service and its transfer daemon, played over the AMIE tables: it opens
 * transactions with a request, ships (marks completed) what the site sends, checks every site
 * packet against the protocol and answers it the way central does.
 */
import type { Database, Queryable } from '../db/index.js';
import {
  PacketBody,
  formatProblems,
  specOf,
  unexpectedTags,
  validateBody,
  type JsonBody,
  type PacketTypeName,
  type TagValue,
} from '../protocol/index.js';
import {
  getTransaction,
  listTransactionPackets,
  openTransaction,
  setPacketState,
  setTransactionState,
  writePacket,
  type PacketRecord,
} from '../store/index.js';
import { STATE_IDS } from '../protocol/ids.js';
import { isSimulatedRequest } from './people.js';

export interface CentralSiteOptions {
  /** local_site_name: the site under test. */
  siteName: string;
  /** The site's resource, named in every request's ResourceList. */
  resource: string;
  /** remote_site_name and originating site of central's transactions. */
  remoteSiteName?: string;
}

export interface Check {
  ok: boolean;
  message: string;
}

/** What a step demands of the site's replies in its transaction. */
export interface ConversationExpectations {
  /** The request is invalid on purpose: the site must refuse it with a failure ITC. */
  failure?: boolean;
  /** Tag values the site's first reply must carry (ids known from earlier transactions). */
  reply?: Record<string, string>;
  /** Tag values the site's first reply must not carry (an id that must be new). */
  replyNot?: Record<string, string>;
}

export type ConversationState = 'open' | 'completed' | 'failed';

/** One transaction central started, as central sees it. */
export class Conversation {
  state: ConversationState = 'open';
  readonly checks: Check[] = [];
  /** The site's packets in this transaction, in the order they were shipped. */
  readonly siteReplies: Array<{ type: PacketTypeName | undefined; body: JsonBody }> = [];

  constructor(
    readonly transRecId: number,
    readonly transactionId: number,
    readonly requestType: PacketTypeName,
    readonly request: JsonBody,
    readonly expect: ConversationExpectations,
  ) {}

  /** The body of the site's packet of this type, if it sent one. */
  reply(type: PacketTypeName): JsonBody | undefined {
    return this.siteReplies.find((r) => r.type === type)?.body;
  }

  /** A single-valued tag of the site's reply of this type. */
  replyTag(type: PacketTypeName, tag: string): string | undefined {
    return single(this.reply(type)?.[tag]);
  }

  get label(): string {
    return `${this.requestType} (transaction ${this.transactionId})`;
  }

  get failedChecks(): Check[] {
    return this.checks.filter((c) => !c.ok);
  }
}

function single(v: TagValue | undefined): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return undefined;
}

/** Tags of a site reply that must repeat the value the request carried, per reply type. */
const ECHOED: Partial<Record<PacketTypeName, Record<string, string>>> = {
  notify_project_create: { ProjectID: 'ProjectID', PiPersonID: 'PiPersonID', GrantNumber: 'GrantNumber' },
  notify_account_create: { ProjectID: 'ProjectID', UserPersonID: 'UserPersonID' },
  notify_project_inactivate: { ProjectID: 'ProjectID' },
  notify_project_reactivate: { ProjectID: 'ProjectID' },
  notify_account_inactivate: { ProjectID: 'ProjectID', PersonID: 'PersonID' },
  notify_account_reactivate: { ProjectID: 'ProjectID', PersonID: 'PersonID' },
};

export class CentralSite {
  readonly siteName: string;
  readonly resource: string;
  readonly remoteSiteName: string;
  readonly #open = new Set<Conversation>();

  constructor(
    private readonly db: Database,
    options: CentralSiteOptions,
  ) {
    this.siteName = options.siteName;
    this.resource = options.resource;
    this.remoteSiteName = options.remoteSiteName ?? 'TGCDB';
  }

  /**
   * Opens a transaction with `type` as its first packet, as central's transfer daemon would
   * deliver it: incoming, in progress, expecting the site's reply.
   */
  async send(
    type: PacketTypeName,
    tags: Record<string, TagValue>,
    expect: ConversationExpectations = {},
  ): Promise<Conversation> {
    const body = PacketBody.fromTags(tags);
    const conversation = await this.db.transaction(async (tx) => {
      const t = await openTransaction(tx, {
        originatingSiteName: this.remoteSiteName,
        localSiteName: this.siteName,
        remoteSiteName: this.remoteSiteName,
      });
      await writePacket(tx, {
        transRecId: t.transRecId,
        packetId: 1,
        type,
        rows: body.toRows(),
        outgoing: false,
        expectedReply: expectedReplyOf(type),
      });
      return new Conversation(t.transRecId, t.transactionId, type, body.toJSON(), expect);
    });
    this.#open.add(conversation);
    return conversation;
  }

  /**
   * One pass of the transfer daemon and central: every in-progress packet the site sent in an
   * open conversation is checked, marked sent (completed) and answered; a conversation whose
   * last word was said is closed. Packets of transactions central did not start here are left
   * alone.
   */
  async transfer(): Promise<void> {
    for (const c of [...this.#open]) {
      await this.db.transaction((tx) => this.transferOne(tx, c));
      if (c.state !== 'open') this.#open.delete(c);
    }
  }

  /**
   * Picks up the conversations an earlier process of the simulator left open in this database
   * (`amie simulate --queue-only`), so that `transfer` ships and answers what the site sent since.
   * Only transactions whose request the simulator wrote are taken (see `isSimulatedRequest`):
   * central's real packets in the same tables are never touched. The scenario's own expectations
   * are not known any more; an invalid request is still expected to be refused.
   */
  async resume(): Promise<Conversation[]> {
    const { rows } = await this.db.query<{ trans_rec_id: number; transaction_id: string }>(
      `SELECT t.trans_rec_id, t.transaction_id::text FROM transaction_tbl t
        WHERE t.originating_site_name = $1 AND t.remote_site_name = $1 AND t.local_site_name = $2 AND t.state_id = $3
        ORDER BY t.trans_rec_id`,
      [this.remoteSiteName, this.siteName, STATE_IDS['in-progress']],
    );
    const resumed: Conversation[] = [];
    for (const r of rows) {
      const first = (await listTransactionPackets(this.db, r.trans_rec_id))[0];
      if (!first || first.outgoing || !first.type || first.packetId !== 1) continue;
      const body = PacketBody.fromRows(first.rows);
      if (!isSimulatedRequest(body)) continue;
      const c = new Conversation(r.trans_rec_id, Number(r.transaction_id), first.type, body.toJSON(), {
        failure: validateBody(first.type, body).length > 0,
      });
      if ([...this.#open].some((o) => o.transRecId === c.transRecId)) continue;
      this.#open.add(c);
      resumed.push(c);
    }
    return resumed;
  }

  /** Gives up on a conversation the site never finished, so it is not worked again. */
  async abandon(c: Conversation, why: string): Promise<void> {
    if (c.state !== 'open') return;
    await setTransactionState(this.db, c.transRecId, 'failed');
    c.state = 'failed';
    c.checks.push({ ok: false, message: `${c.label}: ${why}` });
    this.#open.delete(c);
  }

  private async transferOne(tx: Queryable, c: Conversation): Promise<void> {
    const packets = await listTransactionPackets(tx, c.transRecId);
    for (const p of packets) {
      if (!p.outgoing || p.state !== 'in-progress' || c.state !== 'open') continue;
      await this.receive(tx, c, p, packets);
    }
    if (c.state !== 'open') return;
    // Over the REST API the site may also fail a transaction outright (PUT …/state/failed).
    if ((await getTransaction(tx, c.transRecId))?.state === 'failed') {
      c.state = 'failed';
      c.checks.push(
        c.expect.failure
          ? { ok: true, message: `${c.label}: the site failed the transaction of the invalid packet` }
          : { ok: false, message: `${c.label}: the site failed the transaction instead of answering it` },
      );
      return;
    }
    // Central's closing ITC, once the site has taken it (over the tables), ends the transaction.
    const last = packets[packets.length - 1];
    if (last && !last.outgoing && last.type === 'inform_transaction_complete' && last.state === 'completed') {
      await this.close(tx, c, 'completed');
      c.checks.push({ ok: true, message: `${c.label} completed` });
    }
  }

  private async receive(tx: Queryable, c: Conversation, p: PacketRecord, packets: PacketRecord[]): Promise<void> {
    await setPacketState(tx, p.packetRecId, 'completed');
    const body = PacketBody.fromRows(p.rows);
    const json = body.toJSON();
    c.siteReplies.push({ type: p.type, body: json });
    const answered = [...packets].reverse().find((x) => !x.outgoing && x.packetId < p.packetId);
    const answeredType = answered?.type;
    // Over the REST API the site answers central's closing ITC with a success ITC, which ends the
    // transaction; over the AMIE tables it only takes the ITC (see transferOne).
    const expected =
      answeredType === 'inform_transaction_complete'
        ? answeredType
        : answeredType
          ? specOf(answeredType).siteReply
          : undefined;
    const what = `${c.label}: the site's ${p.type ?? `packet of type_id ${p.typeId}`} (packet_id ${p.packetId})`;
    const fail = async (message: string) => {
      c.checks.push({ ok: false, message });
      await this.close(tx, c, 'failed');
    };

    if (!p.type) return fail(`${what} has a type unknown to AMIE`);
    const problems = validateBody(p.type, body);
    if (problems.length > 0) return fail(`${what} breaks the protocol: ${formatProblems(problems)}`);
    const unexpected = unexpectedTags(p.type, body);
    if (unexpected.length > 0) {
      c.checks.push({
        ok: true,
        message: `${what} carries tags ${p.type} does not name (kept, not an error): ${unexpected.join(', ')}`,
      });
    }

    if (p.type === 'inform_transaction_complete') {
      const status = body.get('StatusCode');
      const message = body.get('Message') ?? '';
      if (status === 'Failure') {
        await this.close(tx, c, 'failed');
        if (c.expect.failure)
          c.checks.push({
            ok: true,
            message: `${c.label}: the site refused the invalid packet with a failure ITC: ${message}`,
          });
        else
          c.checks.push({
            ok: false,
            message: `${c.label}: the site answered ${answeredType} with a failure ITC: ${message}`,
          });
        return;
      }
      if (c.expect.failure)
        return fail(`${c.label}: the site accepted an invalid ${c.requestType} (success ITC) instead of refusing it`);
      if (expected !== 'inform_transaction_complete') {
        return fail(`${what}: a success ITC does not answer ${answeredType}; expected ${expected ?? 'nothing'}`);
      }
      await this.close(tx, c, 'completed');
      c.checks.push({ ok: true, message: `${c.label} completed` });
      return;
    }

    if (p.type !== expected) {
      return fail(`${what} does not answer ${answeredType}: expected ${expected ?? 'no reply at all'}`);
    }
    if (c.expect.failure)
      return fail(`${c.label}: the site answered an invalid ${c.requestType} with ${p.type} instead of a failure ITC`);

    const mismatches: string[] = [];
    if (body.has('ResourceList') && body.get('ResourceList') !== this.resource) {
      mismatches.push(
        `ResourceList is "${body.get('ResourceList')}", expected "${this.resource}" (the resource of the request)`,
      );
    }
    const request = answered?.rows ? PacketBody.fromRows(answered.rows) : undefined;
    for (const [replyTag, requestTag] of Object.entries(ECHOED[p.type] ?? {})) {
      const asked = request?.get(requestTag);
      if (asked !== undefined && asked.trim() !== '' && body.get(replyTag) !== asked) {
        mismatches.push(
          `${replyTag} is "${body.get(replyTag) ?? ''}", expected "${asked}" (the ${requestTag} of the ${answeredType})`,
        );
      }
    }
    if (packets[0] === answered) {
      for (const [tag, value] of Object.entries(c.expect.reply ?? {})) {
        if (body.get(tag) !== value && !mismatches.some((m) => m.startsWith(`${tag} `))) {
          mismatches.push(`${tag} is "${body.get(tag) ?? ''}", expected "${value}" (given in an earlier transaction)`);
        }
      }
      for (const [tag, value] of Object.entries(c.expect.replyNot ?? {})) {
        if (body.get(tag) === value)
          mismatches.push(`${tag} is "${value}", which already names another one (expected a new ${tag})`);
      }
    }
    if (mismatches.length > 0) return fail(`${what} has inconsistent ids: ${mismatches.join('; ')}`);

    const reply = centralAnswer(p.type, body, request);
    const packetId = Math.max(...packets.map((x) => x.packetId)) + 1;
    await writePacket(tx, {
      transRecId: c.transRecId,
      packetId,
      type: reply.type,
      rows: reply.body.toRows(),
      outgoing: false,
      expectedReply: expectedReplyOf(reply.type),
    });
    packets.push({
      ...p,
      packetId,
      outgoing: false,
      type: reply.type,
      state: 'in-progress',
      rows: reply.body.toRows(),
    });
  }

  private async close(tx: Queryable, c: Conversation, state: 'completed' | 'failed'): Promise<void> {
    await setTransactionState(tx, c.transRecId, state);
    c.state = state;
  }
}

function expectedReplyOf(type: PacketTypeName): { type: PacketTypeName } | null {
  const next = specOf(type).expectedReply;
  return next ? { type: next } : null;
}

/** Central's answer to a site packet that passed the checks. */
function centralAnswer(
  type: PacketTypeName,
  body: PacketBody,
  request: PacketBody | undefined,
): { type: PacketTypeName; body: PacketBody } {
  if (type === 'notify_project_create' || type === 'notify_account_create') {
    const isProject = type === 'notify_project_create';
    const dns = request?.getList(isProject ? 'PiDnList' : 'UserDnList').filter((d) => d.trim() !== '') ?? [];
    const data = PacketBody.fromTags({
      PersonID: body.get(isProject ? 'PiPersonID' : 'UserPersonID'),
      ProjectID: body.get('ProjectID'),
      ...(dns.length > 0 ? { DnList: dns } : {}),
    });
    return { type: isProject ? 'data_project_create' : 'data_account_create', body: data };
  }
  return {
    type: 'inform_transaction_complete',
    body: PacketBody.fromTags({ StatusCode: 'Success', DetailCode: '1', Message: `${type} recorded by central` }),
  };
}
