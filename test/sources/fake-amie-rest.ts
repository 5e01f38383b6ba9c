/**
 * A small AMIE REST API on loopback for the REST source's tests: it keeps packets in memory,
 * checks XA-SITE/XA-API-KEY, answers the endpoints of the protocol (§8) and lets a test inject
 * the failures a real server has (5xx, no answer, HTML instead of JSON, accepting a POST and then
 * failing). It counts every request, so a test can prove no reply was POSTed twice.
 * (The toolkit's own HTTP simulator plays whole scenarios; this one is for failure injection.)
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PACKET_TYPE_IDS, type PacketTypeName } from '../../src/protocol/index.js';
import { parseReplyPacket } from '../../src/sources/index.js';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: unknown;
}

/** Acts on a request instead of (or before) the normal route; returns true when it answered. */
export interface Fault {
  match: (r: RecordedRequest) => boolean;
  act: (r: RecordedRequest, res: ServerResponse, api: FakeAmieRest) => boolean | Promise<boolean>;
}

type Json = Record<string, any>;

export const isPost = (r: RecordedRequest) => r.method === 'POST' && r.path.startsWith('/packets/');
export const isList = (r: RecordedRequest) => r.method === 'GET' && r.path.startsWith('/packets/');

export class FakeAmieRest {
  readonly site = 'EXAMPLE';
  readonly apiKey = `key-${randomBytes(6).toString('hex')}`;
  url = '';
  /** Every packet, both directions, by packet_rec_id. */
  readonly packets = new Map<number, Json>();
  readonly transactions = new Map<number, { state: string; transactionId: number }>();
  readonly requests: RecordedRequest[] = [];
  readonly faults: Fault[] = [];
  /** Keep listing answered packets as in progress, like a server slow to catch up. */
  lagging = false;
  private server!: Server;
  private nextRecId = 5001;
  private nextTransRecId = 701;
  private nextTransactionId = 90001;

  static async start(): Promise<FakeAmieRest> {
    const api = new FakeAmieRest();
    api.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const u = new URL(req.url ?? '/', 'http://x');
        const r: RecordedRequest = {
          method: req.method ?? 'GET',
          path: decodeURIComponent(u.pathname.replace(/^\/api/, '')),
          query: u.searchParams,
          headers: req.headers,
          body: text ? safeJson(text) : undefined,
        };
        api.requests.push(r);
        void api.handle(r, res);
      });
    });
    await new Promise<void>((resolve) => api.server.listen(0, '127.0.0.1', resolve));
    api.url = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}/api/`;
    return api;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  /** POSTs of packets received (whatever became of them). */
  get posts(): RecordedRequest[] {
    return this.requests.filter(isPost);
  }

  /** Stored replies answering `packetRecId`. */
  repliesTo(packetRecId: number): Json[] {
    return [...this.packets.values()].filter((p) => p.header.outgoing_flag && p.header.in_reply_to === packetRecId);
  }

  /** Opens a transaction (or uses `transRecId`'s) and puts an incoming in-progress packet in it. */
  addIncoming(
    type: PacketTypeName,
    body: Json,
    opts: { transRecId?: number; packetId?: number; header?: Json } = {},
  ): { packetRecId: number; transRecId: number } {
    const transRecId = opts.transRecId ?? this.nextTransRecId++;
    if (!this.transactions.has(transRecId))
      this.transactions.set(transRecId, { state: 'in-progress', transactionId: this.nextTransactionId++ });
    const packetRecId = this.nextRecId++;
    this.packets.set(packetRecId, {
      DATA_TYPE: 'Packet',
      type,
      type_id: PACKET_TYPE_IDS[type],
      header: {
        packet_rec_id: packetRecId,
        packet_id: opts.packetId ?? this.maxPacketId(transRecId) + 1,
        transaction_id: this.transactions.get(transRecId)!.transactionId,
        trans_rec_id: transRecId,
        expected_reply_list: [],
        local_site_name: this.site,
        remote_site_name: 'XSEDE',
        originating_site_name: 'XSEDE',
        outgoing_flag: false,
        packet_state: 'in-progress',
        packet_timestamp: new Date().toISOString(),
        client_state: null,
        client_json: null,
        ...opts.header,
      },
      body,
    });
    return { packetRecId, transRecId };
  }

  private maxPacketId(transRecId: number): number {
    return Math.max(
      0,
      ...[...this.packets.values()]
        .filter((p) => p.header.trans_rec_id === transRecId)
        .map((p) => Number(p.header.packet_id)),
    );
  }

  /** A packet as served: the transaction's current state filled in. */
  private served(p: Json, listing = false): Json {
    const t = this.transactions.get(p.header.trans_rec_id);
    const answered = !p.header.outgoing_flag && this.repliesTo(p.header.packet_rec_id).length > 0;
    return {
      ...p,
      header: {
        ...p.header,
        transaction_state: t?.state ?? 'in-progress',
        packet_state: listing && this.lagging && answered ? 'in-progress' : p.header.packet_state,
      },
    };
  }

  private send(res: ServerResponse, status: number, body: unknown) {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private async handle(r: RecordedRequest, res: ServerResponse) {
    const i = this.faults.findIndex((f) => f.match(r));
    if (i >= 0) {
      const [fault] = this.faults.splice(i, 1);
      if (await fault!.act(r, res, this)) return;
    }
    const { status, body } = this.route(r);
    this.send(res, status, body);
  }

  /** The normal behaviour of the API: changes state and returns the answer. */
  route(r: RecordedRequest): { status: number; body: unknown } {
    if (r.headers['xa-site'] !== this.site || r.headers['xa-api-key'] !== this.apiKey) {
      return {
        status: 401,
        body: { message: `XA-SITE/XA-API-KEY not valid for site ${String(r.headers['xa-site'])}` },
      };
    }
    const seg = r.path.split('/').filter(Boolean);
    if (seg[1] !== this.site) return { status: 403, body: { message: `site ${seg[1]} is not yours` } };
    if (r.method === 'GET' && seg[0] === 'packets' && seg.length === 2) {
      const states = r.query.get('states')?.split(',');
      const tstates = r.query.get('transaction_state')?.split(',');
      const incoming = r.query.get('incoming') === 'true';
      const result = [...this.packets.values()]
        .map((p) => this.served(p, true))
        .filter(
          (p) =>
            (!incoming || !p.header.outgoing_flag) &&
            (!states || states.includes(p.header.packet_state)) &&
            (!tstates || tstates.includes(p.header.transaction_state)),
        );
      return { status: 200, body: { message: `${result.length} packets`, result } };
    }
    if (r.method === 'POST' && seg[0] === 'packets' && seg.length === 2) {
      let reply;
      try {
        reply = parseReplyPacket(r.body);
      } catch (err) {
        return { status: 400, body: { message: (err as Error).message } };
      }
      const to = this.packets.get(reply.inReplyTo);
      if (!to || to.header.outgoing_flag)
        return { status: 400, body: { message: `in_reply_to ${reply.inReplyTo}: no such incoming packet` } };
      if (to.header.packet_state !== 'in-progress')
        return { status: 400, body: { message: `in_reply_to ${reply.inReplyTo}: the packet was already answered` } };
      const transRecId = to.header.trans_rec_id;
      if (this.transactions.get(transRecId)?.state !== 'in-progress')
        return { status: 400, body: { message: `transaction ${transRecId} is not in progress` } };
      const packetRecId = this.nextRecId++;
      const stored = {
        DATA_TYPE: 'Packet',
        type: reply.type,
        type_id: reply.typeId,
        header: {
          ...to.header,
          packet_rec_id: packetRecId,
          packet_id: this.maxPacketId(transRecId) + 1,
          outgoing_flag: true,
          in_reply_to: reply.inReplyTo,
          expected_reply_list: reply.expectedReplyList,
          packet_state: 'completed',
          packet_timestamp: new Date().toISOString(),
        },
        body: reply.body.toJSON(),
      };
      this.packets.set(packetRecId, stored);
      to.header.packet_state = 'completed';
      if (reply.type === 'inform_transaction_complete') {
        this.transactions.get(transRecId)!.state = reply.body.get('StatusCode') === 'Failure' ? 'failed' : 'completed';
      }
      return { status: 200, body: { message: 'packet sent', result: this.served(stored) } };
    }
    if (r.method === 'GET' && seg[0] === 'transactions' && seg[3] === 'packets') {
      const id = Number(seg[2]);
      if (!this.transactions.has(id)) return { status: 404, body: { message: `no transaction ${id}` } };
      const result = [...this.packets.values()].filter((p) => p.header.trans_rec_id === id).map((p) => this.served(p));
      return { status: 200, body: { message: 'ok', result } };
    }
    if (r.method === 'PUT' && seg[0] === 'transactions' && seg[3] === 'state' && seg[4] === 'failed') {
      const t = this.transactions.get(Number(seg[2]));
      if (!t) return { status: 404, body: { message: `no transaction ${seg[2]}` } };
      t.state = 'failed';
      return { status: 200, body: { message: 'transaction failed' } };
    }
    if (seg[0] === 'packets' && seg[3] === 'client_state' && (r.method === 'PUT' || r.method === 'DELETE')) {
      const p = this.packets.get(Number(seg[2]));
      if (!p) return { status: 404, body: { message: `no packet ${seg[2]}` } };
      p.header.client_state = r.method === 'PUT' ? (seg[4] ?? null) : null;
      return { status: 200, body: { message: 'client_state set' } };
    }
    return { status: 404, body: { message: `no route ${r.method} ${r.path}` } };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Faults, each used once. */
export const faults = {
  status: (match: Fault['match'], status: number, body: unknown): Fault => ({
    match,
    act: (_r, res) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
      return true;
    },
  }),
  /** No answer at all (the client's timeout fires). */
  hang: (match: Fault['match']): Fault => ({ match, act: () => true }),
  text: (match: Fault['match'], status: number, text: string): Fault => ({
    match,
    act: (_r, res) => {
      res.writeHead(status, { 'Content-Type': 'text/html' });
      res.end(text);
      return true;
    },
  }),
  /** Does what the request asks, then answers 500 (or nothing): the client cannot know it worked. */
  acceptThen: (match: Fault['match'], then: 'error' | 'hang', also?: () => void): Fault => ({
    match,
    act: (r, res, api) => {
      api.route(r);
      also?.();
      if (then === 'error') {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ message: 'internal error after commit' }));
      }
      return true;
    },
  }),
};

/** A request_account_create shaped like the ones ACCESS sends, oddities included. */
export function racBody(n: number, extra: Json = {}): Json {
  return {
    GrantNumber: 'TG-ABC123',
    ProjectID: 'p-abc123',
    ResourceList: ['cluster.example.org'],
    AllocatedResource: 'cluster.example.org',
    UserFirstName: `Zoë${n}`,
    UserLastName: "O'Neil-Smith",
    UserOrganization: 'Université de Montréal',
    UserOrgCode: '0012345',
    UserGlobalID: String(71700 + n),
    UserEmail: `zoe${n}@example.edu`,
    UserRequestedLoginList: [''],
    UserDnList: [`/C=US/O=Example/CN=Zoe ONeil ${n}`, `/DC=org/DC=cilogon/C=US/O=Example/CN=Zoe ONeil A${n}`],
    SitePersonId: [
      { Site: 'X-PORTAL', PersonID: `zoneil${n}` },
      { Site: 'XSEDE', PersonID: String(71700 + n) },
    ],
    AcademicDegree: [
      { Degree: 'PhD', Field: 'Physics' },
      { Degree: 'MS', Field: 'Computer Science' },
    ],
    CitizenshipList: ['Canada', 'France'],
    RoleList: ['Allocation Manager'],
    NsfStatusCode: 'GS',
    UserBusinessPhoneNumber: '+1 412 555 0100',
    // Tags a newer central side may add: kept, reported as unexpected, never fatal.
    UserPreferredPronouns: 'she/her',
    PortalTags: ['a', 'b'],
    ...extra,
  };
}
