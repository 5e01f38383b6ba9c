/**
 * The central site over HTTP: the ACCESS AMIE REST API and the Usage API served on loopback, so a
 * site that talks REST can be tested with no outside service. Central keeps its state in the AMIE
 * tables of a database of its own (a private in-memory one by default), exactly as the
 * table-based simulator does: `CentralSite` writes its requests there as packets the site
 * receives; this server shows them as REST JSON; a reply the site POSTs is checked as the real
 * service would (headers, the packet it answers, its type, its body) and written there as a
 * packet the site sent, for `CentralSite.transfer()` to take and answer.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { openPglite, type Database } from '../db/index.js';
import {
  STATE_IDS,
  PacketBody,
  formatProblems,
  specOf,
  validateBody,
  type PacketTypeName,
  type StateName,
} from '../protocol/index.js';
import { initDatabase, setPacketState, setTransactionState, getTransaction, writePacket } from '../store/index.js';
import {
  createSimTables,
  listServedPackets,
  lockServedPacket,
  nextPacketId,
  notePacket,
  replyTo,
  type PacketFilter,
} from './http-store.js';
import { readPostedPacket, toRestPacket } from './http-packets.js';
import { UsageApiState } from './usage-api.js';

/** Where each API lives on the simulator's one port. */
export const AMIE_API_PATH = '/amie/';
export const USAGE_API_PATH = '/usage-api/';
/** Request bodies the AMIE REST API accepts, like the Usage API's limit. */
const AMIE_BODY_LIMIT = 1024 * 1024;
/** Bodies over the 1024 KiB limits are read (to answer 413 with their size) up to this many bytes. */
const READ_CAP = 64 * 1024 * 1024;

export interface RestSimulatorOptions {
  /** The one site served: XA-SITE must name it. */
  site: { name: string; resource: string; remoteSite?: string };
  /** XA-API-KEY every request must carry. */
  apiKey: string;
  /** Default 0: any free port. */
  port?: number;
  /** Default 127.0.0.1: the simulator is for this machine only. */
  host?: string;
  /** Central's database; default a private in-memory embedded one, closed with the server. */
  db?: Database;
  /** One debug line per request (method, path, status); headers and keys are never logged. */
  log?: Logger;
}

/**
 * A misbehaviour to play instead of (or after) the real answer, for testing how a site copes with
 * a service that fails: a status and JSON body, raw text (malformed JSON), no answer at all, or a
 * cut connection.
 */
export interface Fault {
  api?: 'amie' | 'usage';
  method?: string;
  /** Tested against the path under the API's base, e.g. `packets/EXAMPLE`, `usage/`. */
  path?: RegExp;
  /** How many matching requests get it (default 1). */
  times?: number;
  status?: number;
  body?: unknown;
  raw?: string;
  hang?: boolean;
  drop?: boolean;
  /** Handle the request first (its effect stays), then answer with the fault. */
  afterHandling?: boolean;
}

/** One request as served, for tests that count what reached the server. */
export interface ServedRequest {
  api: 'amie' | 'usage' | 'none';
  method: string;
  path: string;
  status: number;
}

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** An answer that stops handling: thrown by checks, turned into the response. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

const STATE_NAMES = Object.keys(STATE_IDS) as StateName[];

export class RestSimulator {
  readonly siteName: string;
  readonly resource: string;
  readonly remoteSiteName: string;
  /** The Usage API's books: what was posted, loaded and refused. */
  readonly usage: UsageApiState;
  /** Every request answered, in order. */
  readonly requests: ServedRequest[] = [];
  readonly #faults: Fault[] = [];
  #server!: Server;
  #port = 0;

  private constructor(
    /** Central's database: pass it to runScenarios as the database central plays in. */
    readonly db: Database,
    private readonly ownsDb: boolean,
    private readonly opts: RestSimulatorOptions,
  ) {
    this.siteName = opts.site.name;
    this.resource = opts.site.resource;
    this.remoteSiteName = opts.site.remoteSite ?? 'TGCDB';
    this.usage = new UsageApiState([opts.site.resource]);
  }

  /** Prepares central's database and listens; resolves once requests can be made. */
  static async start(opts: RestSimulatorOptions): Promise<RestSimulator> {
    if (!opts.apiKey) throw new Error('the REST simulator needs an API key (XA-API-KEY) to check requests against');
    const db = opts.db ?? (await openPglite());
    const sim = new RestSimulator(db, !opts.db, opts);
    try {
      if (opts.db === undefined) await initDatabase(db);
      await createSimTables(db);
      await sim.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
    } catch (err) {
      if (sim.ownsDb) await db.close();
      throw err;
    }
    return sim;
  }

  get port(): number {
    return this.#port;
  }
  /** Base URL of the AMIE REST API (`packets/{site}` and so on resolve against it). */
  get amieUrl(): string {
    return `http://${this.host}:${this.#port}${AMIE_API_PATH}`;
  }
  /** Base URL of the Usage API (`usage/` resolves against it). */
  get usageUrl(): string {
    return `http://${this.host}:${this.#port}${USAGE_API_PATH}`;
  }
  private get host(): string {
    const h = this.opts.host ?? '127.0.0.1';
    return h.includes(':') ? `[${h}]` : h;
  }

  /** Plays `fault` on the next matching request(s). */
  inject(fault: Fault): void {
    this.#faults.push({ ...fault, times: fault.times ?? 1 });
  }

  /** Forgets faults not yet played. */
  clearFaults(): void {
    this.#faults.length = 0;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.ownsDb) await this.db.close();
  }

  private listen(port: number, host: string): Promise<void> {
    this.#server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.opts.log?.error({ err }, 'REST simulator: request failed');
        if (!res.headersSent)
          send(res, { status: 500, body: { message: `simulator error: ${(err as Error).message}` } });
      });
    });
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#port = (this.#server.address() as AddressInfo).port;
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  private takeFault(api: 'amie' | 'usage', method: string, path: string): Fault | undefined {
    const i = this.#faults.findIndex(
      (f) =>
        (f.api === undefined || f.api === api) &&
        (f.method === undefined || f.method === method) &&
        (f.path === undefined || f.path.test(path)),
    );
    if (i < 0) return undefined;
    const fault = this.#faults[i]!;
    fault.times = (fault.times ?? 1) - 1;
    if (fault.times <= 0) this.#faults.splice(i, 1);
    return fault;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://simulator');
    const raw = await readBody(req);
    const api = url.pathname.startsWith(AMIE_API_PATH)
      ? 'amie'
      : url.pathname.startsWith(USAGE_API_PATH)
        ? 'usage'
        : 'none';
    const path =
      api === 'amie'
        ? url.pathname.slice(AMIE_API_PATH.length)
        : api === 'usage'
          ? url.pathname.slice(USAGE_API_PATH.length)
          : url.pathname;
    if (api === 'usage' && method === 'POST' && raw !== null) this.usage.receive(req.headers, raw);
    const fault = api === 'none' ? undefined : this.takeFault(api, method, path);

    let answer: Answer;
    if (fault && !fault.afterHandling && (fault.hang || fault.drop)) {
      this.requests.push({ api, method, path, status: 0 });
      if (fault.drop) req.socket.destroy();
      return; // a hang never answers: the client's timeout must fire
    }
    if (fault && !fault.afterHandling) {
      answer = faultAnswer(fault);
    } else {
      try {
        if (api === 'none') {
          throw new Refusal(
            404,
            `no such endpoint: ${method} ${url.pathname}; the AMIE REST API is under ${AMIE_API_PATH} and the Usage API under ${USAGE_API_PATH}`,
          );
        }
        this.authenticate(req, api);
        answer =
          api === 'amie' ? await this.amie(method, path, url.searchParams, raw) : this.usageApi(method, path, raw);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        // The Usage API gives the reason under `error`, the AMIE API under `message` (as amieclient reads them).
        answer = {
          status: err.status,
          body: api === 'usage' ? { error: err.message } : { message: err.message },
          headers: err.headers,
        };
      }
      if (fault) {
        if (fault.hang || fault.drop) {
          this.requests.push({ api, method, path, status: 0 });
          if (fault.drop) req.socket.destroy();
          return;
        }
        answer = faultAnswer(fault);
      }
    }
    this.requests.push({ api, method, path, status: answer.status });
    this.opts.log?.debug({ method, path: url.pathname, status: answer.status }, 'REST simulator request');
    if (fault?.raw !== undefined) {
      res.writeHead(answer.status, { 'Content-Type': 'application/json' });
      res.end(fault.raw);
      return;
    }
    send(res, answer);
  }

  /** XA-SITE and XA-API-KEY, checked before anything else, as the real service does. */
  private authenticate(req: IncomingMessage, api: 'amie' | 'usage'): void {
    const what = api === 'amie' ? 'the AMIE REST API' : 'the Usage API';
    const site = header(req, 'xa-site');
    const key = header(req, 'xa-api-key');
    if (site === undefined || site === '')
      throw new Refusal(401, `missing XA-SITE header: every request to ${what} names the site`);
    if (key === undefined || key === '')
      throw new Refusal(401, `missing XA-API-KEY header: every request to ${what} carries the site's API key`);
    if (site !== this.siteName)
      throw new Refusal(
        401,
        `XA-SITE ${JSON.stringify(site)} is not a site of this server (it serves ${this.siteName})`,
      );
    if (key !== this.opts.apiKey) throw new Refusal(401, `XA-API-KEY is not the API key of site ${this.siteName}`);
  }

  // --- AMIE REST API -------------------------------------------------------------------------

  private async amie(method: string, path: string, query: URLSearchParams, raw: Buffer | null): Promise<Answer> {
    let parts: string[];
    try {
      parts = path
        .split('/')
        .filter((p) => p !== '')
        .map(decodeURIComponent);
    } catch {
      throw new Refusal(400, `the path ${JSON.stringify(path)} is not valid percent-encoding`);
    }
    const [collection, site, id, ...rest] = parts;
    const route = (allowed: string[], handlers: Record<string, () => Promise<Answer>>): Promise<Answer> => {
      const h = Object.hasOwn(handlers, method) ? handlers[method] : undefined;
      if (!h)
        throw new Refusal(405, `${method} is not allowed on ${path}; use ${allowed.join(' or ')}`, {
          Allow: allowed.join(', '),
        });
      return h();
    };
    if ((collection === 'packets' || collection === 'transactions') && site !== undefined && site !== this.siteName) {
      throw new Refusal(
        401,
        `the path names site ${JSON.stringify(site)}, but XA-SITE is ${this.siteName}: a site reads and writes only its own packets`,
      );
    }
    if (collection === 'packets' && site !== undefined) {
      if (id === undefined) {
        return route(['GET', 'POST'], {
          GET: () => this.listPackets(query),
          POST: () => this.receiveReply(bodyJson(raw, 'the packet')),
        });
      }
      const packetRecId = recId(id, 'packet_rec_id');
      if (rest.length === 0) return route(['GET'], { GET: () => this.onePacket(packetRecId) });
      if (rest[0] === 'client_state' && rest.length <= 2) {
        const state = rest[1];
        return route(['PUT', 'DELETE'], {
          PUT: () => {
            if (state === undefined || state.trim() === '') {
              throw new Refusal(
                400,
                `name the client state in the path: PUT packets/${this.siteName}/${packetRecId}/client_state/{state}`,
              );
            }
            return this.setNote(packetRecId, { clientState: state }, `client_state set to ${JSON.stringify(state)}`);
          },
          DELETE: () => this.setNote(packetRecId, { clientState: null }, 'client_state cleared'),
        });
      }
      if (rest[0] === 'client_json' && rest.length === 1) {
        return route(['PUT', 'DELETE'], {
          PUT: () => this.setNote(packetRecId, { clientJson: bodyJson(raw, 'client_json') }, 'client_json stored'),
          DELETE: () => this.setNote(packetRecId, { clientJson: null }, 'client_json cleared'),
        });
      }
    }
    if (collection === 'transactions' && site !== undefined && id !== undefined) {
      const transRecId = recId(id, 'trans_rec_id');
      if (rest.length === 1 && rest[0] === 'packets')
        return route(['GET'], { GET: () => this.transactionPackets(transRecId) });
      if (rest.length === 2 && rest[0] === 'state') {
        return route(['PUT'], {
          PUT: () => {
            if (rest[1] !== 'failed')
              throw new Refusal(
                400,
                `a site can only fail a transaction (PUT .../state/failed), not set it to ${JSON.stringify(rest[1])}`,
              );
            return this.failTransaction(transRecId);
          },
        });
      }
    }
    throw new Refusal(
      404,
      `no such endpoint: ${method} ${AMIE_API_PATH}${path}; the AMIE REST API has packets/{site}, packets/{site}/{packet_rec_id}[/client_state[/{state}]|/client_json], ` +
        'transactions/{site}/{trans_rec_id}/packets and transactions/{site}/{trans_rec_id}/state/failed',
    );
  }

  private async listPackets(query: URLSearchParams): Promise<Answer> {
    const filter = readFilter(query, this.siteName);
    const packets = await listServedPackets(this.db, filter);
    return { status: 200, body: { message: `${packets.length} packet(s)`, result: packets.map(toRestPacket) } };
  }

  private async onePacket(packetRecId: number): Promise<Answer> {
    const [packet] = await listServedPackets(this.db, { site: this.siteName, packetRecId });
    if (!packet) throw new Refusal(404, `site ${this.siteName} has no packet with packet_rec_id ${packetRecId}`);
    return { status: 200, body: { message: 'packet found', result: toRestPacket(packet) } };
  }

  private async transactionPackets(transRecId: number): Promise<Answer> {
    const packets = await listServedPackets(this.db, { site: this.siteName, transRecIds: [transRecId] });
    if (packets.length === 0)
      throw new Refusal(404, `site ${this.siteName} has no transaction with trans_rec_id ${transRecId}`);
    // The transaction with its packets under DATA, as amieclient's Transaction.from_dict reads it.
    const t = packets[0]!.transaction;
    const result = {
      DATA_TYPE: 'transaction',
      trans_rec_id: transRecId,
      transaction_id: t.transactionId,
      originating_site_name: t.originatingSiteName,
      local_site_name: t.localSiteName,
      remote_site_name: t.remoteSiteName,
      state: t.state,
      timestamp: t.ts.toISOString(),
      DATA: packets.map(toRestPacket),
    };
    return { status: 200, body: { message: `${packets.length} packet(s) in transaction ${transRecId}`, result } };
  }

  private async setNote(
    packetRecId: number,
    note: { clientState?: string | null; clientJson?: unknown },
    what: string,
  ): Promise<Answer> {
    const packet = await this.db.transaction(async (tx) => {
      const p = await lockServedPacket(tx, this.siteName, packetRecId);
      if (!p) throw new Refusal(404, `site ${this.siteName} has no packet with packet_rec_id ${packetRecId}`);
      await notePacket(tx, packetRecId, note);
      return (await listServedPackets(tx, { site: this.siteName, packetRecId }))[0]!;
    });
    return { status: 200, body: { message: `packet ${packetRecId}: ${what}`, result: toRestPacket(packet) } };
  }

  private async failTransaction(transRecId: number): Promise<Answer> {
    const t = await this.db.transaction(async (tx) => {
      const found = await getTransaction(tx, transRecId);
      if (!found || found.localSiteName !== this.siteName)
        throw new Refusal(404, `site ${this.siteName} has no transaction with trans_rec_id ${transRecId}`);
      if (found.state === 'completed') {
        throw new Refusal(
          409,
          `transaction trans_rec_id ${transRecId} (transaction_id ${found.transactionId}) is already completed; it cannot be failed`,
        );
      }
      if (found.state !== 'failed') await setTransactionState(tx, transRecId, 'failed');
      return found;
    });
    return {
      status: 200,
      body: {
        message: `transaction trans_rec_id ${transRecId} (transaction_id ${t.transactionId}) is failed`,
        result: { trans_rec_id: transRecId, transaction_id: t.transactionId, transaction_state: 'failed' },
      },
    };
  }

  /**
   * A reply from the site: it must answer a packet the site received, in an in-progress
   * transaction, that has no reply yet, with the type the protocol names for it (or a failure
   * ITC), and its body must validate once the tags central takes over from the request are
   * filled in (as the real service does).
   */
  private async receiveReply(json: unknown): Promise<Answer> {
    const posted = readPostedPacket(json);
    if (!posted.ok) throw new Refusal(400, posted.problem);
    const { type, inReplyTo, body } = posted;
    const saved = await this.db.transaction(async (tx) => {
      const answered = await lockServedPacket(tx, this.siteName, inReplyTo);
      if (!answered)
        throw new Refusal(400, `${type}: header.in_reply_to ${inReplyTo} names no packet of site ${this.siteName}`);
      const what = `${type} in reply to packet_rec_id ${inReplyTo} (${answered.type ?? `type_id ${answered.typeId}`})`;
      if (answered.outgoing)
        throw new Refusal(
          400,
          `${what}: packet ${inReplyTo} is one the site sent; a reply answers a packet the site received`,
        );
      if (posted.transRecId !== undefined && posted.transRecId !== answered.transRecId) {
        throw new Refusal(
          400,
          `${what}: header.trans_rec_id is ${posted.transRecId}, but packet ${inReplyTo} belongs to trans_rec_id ${answered.transRecId}`,
        );
      }
      const previous = await replyTo(tx, inReplyTo);
      if (previous !== undefined) {
        throw new Refusal(
          409,
          `${what}: packet ${inReplyTo} was already answered by packet_rec_id ${previous}; a packet is answered once`,
        );
      }
      if (answered.transaction.state !== 'in-progress') {
        throw new Refusal(
          400,
          `${what}: transaction trans_rec_id ${answered.transRecId} (transaction_id ${answered.transaction.transactionId}) is ${answered.transaction.state}; replies go only to in-progress transactions`,
        );
      }
      const failure = type === 'inform_transaction_complete' && body.get('StatusCode') === 'Failure';
      const expected = answered.type ? restReplyTo(answered.type) : undefined;
      if (!failure) {
        if (!expected)
          throw new Refusal(
            400,
            `${what}: ${answered.type ?? 'a packet of unknown type'} takes no reply (only a failure inform_transaction_complete)`,
          );
        if (type !== expected)
          throw new Refusal(
            400,
            `${what}: ${answered.type} is answered with ${expected} (or a failure inform_transaction_complete), not ${type}`,
          );
      }
      if (answered.state !== 'in-progress')
        throw new Refusal(
          400,
          `${what}: packet ${inReplyTo} is ${answered.state}; only an in-progress packet takes a reply`,
        );

      const opening = (await listServedPackets(tx, { site: this.siteName, transRecIds: [answered.transRecId] })).find(
        (p) => !p.outgoing,
      );
      fillFromRequest(
        type,
        body,
        PacketBody.fromRows(answered.rows),
        opening ? PacketBody.fromRows(opening.rows) : undefined,
      );
      const problems = validateBody(type, body);
      if (problems.length > 0) throw new Refusal(400, `${what} breaks the protocol: ${formatProblems(problems)}`);

      const expectedReply = failure ? undefined : specOf(type).expectedReply;
      const { packetRecId } = await writePacket(tx, {
        transRecId: answered.transRecId,
        packetId: await nextPacketId(tx, answered.transRecId),
        type,
        rows: body.toRows(),
        outgoing: true,
        expectedReply: expectedReply ? { type: expectedReply } : null,
      });
      await notePacket(tx, packetRecId, { inReplyTo });
      await setPacketState(tx, inReplyTo, 'completed');
      return (await listServedPackets(tx, { site: this.siteName, packetRecId }))[0]!;
    });
    return {
      status: 200,
      body: {
        message: `${type} received as packet_rec_id ${saved.packetRecId} in reply to ${inReplyTo}`,
        result: toRestPacket(saved),
      },
    };
  }

  // --- Usage API -----------------------------------------------------------------------------

  private usageApi(method: string, path: string, raw: Buffer | null): Answer {
    const p = path.replace(/\/+$/, '');
    if (p === 'usage') {
      if (method !== 'POST') throw new Refusal(405, `${method} is not allowed on usage/; use POST`, { Allow: 'POST' });
      return this.usage.post(raw ?? Buffer.alloc(0));
    }
    if (p === 'usage/failed' || p === 'usage/status') {
      if (method === 'DELETE' && p === 'usage/failed')
        throw new Refusal(400, 'name the failed records to clear: DELETE usage/failed/{FailedRecordID,...}');
      if (method !== 'GET')
        throw new Refusal(405, `${method} is not allowed on ${p}; use GET`, {
          Allow: p === 'usage/failed' ? 'GET, DELETE' : 'GET',
        });
      return p === 'usage/failed' ? this.usage.failedRecords() : this.usage.status();
    }
    const clear = /^usage\/failed\/([^/]+)$/.exec(p);
    if (clear) {
      if (method !== 'DELETE')
        throw new Refusal(405, `${method} is not allowed on ${p}; use DELETE`, { Allow: 'DELETE' });
      let ids: string;
      try {
        ids = decodeURIComponent(clear[1]!);
      } catch {
        throw new Refusal(400, `the path ${JSON.stringify(p)} is not valid percent-encoding`);
      }
      return this.usage.clearFailed(ids);
    }
    throw new Refusal(
      404,
      `no such endpoint: ${method} ${USAGE_API_PATH}${path}; the Usage API has POST usage/, GET usage/failed, DELETE usage/failed/{ids} and GET usage/status`,
    );
  }
}

/**
 * The reply a packet the site received takes over the REST API: the protocol's, and for central's
 * ITC a success ITC (amieclient's ITC expects one and its reference example sends it; over the
 * AMIE tables the transfer daemon closes the transaction instead).
 */
function restReplyTo(type: PacketTypeName): PacketTypeName | undefined {
  return type === 'inform_transaction_complete' ? 'inform_transaction_complete' : specOf(type).siteReply;
}

/** Copies the reply tags central takes over from the request when the site left them out. */
function fillFromRequest(type: PacketTypeName, reply: PacketBody, request: PacketBody, opening?: PacketBody): void {
  for (const [replyTag, requestTag] of Object.entries(specOf(type).inferFromRequest ?? {})) {
    if (reply.has(replyTag)) continue;
    const source = request.has(requestTag) ? request : opening?.has(requestTag) ? opening : undefined;
    const value = source?.toJSON()[requestTag];
    if (value === undefined) continue;
    if (typeof value === 'string') reply.set(replyTag, value);
    else if (value.length > 0 && typeof value[0] === 'string') reply.setList(replyTag, value as string[]);
    else reply.setEntries(replyTag, value as Array<Record<string, string>>);
  }
}

/** Raw text (malformed JSON) comes with 200 unless told otherwise; other faults default to 500. */
function faultAnswer(fault: Fault): Answer {
  return { status: fault.status ?? (fault.raw !== undefined ? 200 : 500), body: fault.body };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function send(res: ServerResponse, answer: Answer): void {
  const text = answer.body === undefined ? '' : JSON.stringify(answer.body);
  res.writeHead(answer.status, { 'Content-Type': 'application/json', ...answer.headers });
  res.end(text);
}

/** The body, or null when there was none. A body past the cap is not worth reading: the connection is cut. */
async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > READ_CAP) {
      req.socket.destroy();
      throw new Error(`request body over ${READ_CAP} bytes: connection cut`);
    }
    chunks.push(chunk);
  }
  return size === 0 ? null : Buffer.concat(chunks);
}

function bodyJson(raw: Buffer | null, what: string): unknown {
  if (raw === null) throw new Refusal(400, `the request has no body: send ${what} as JSON`);
  if (raw.length > AMIE_BODY_LIMIT)
    throw new Refusal(
      413,
      `request body of ${raw.length} bytes is larger than the ${AMIE_BODY_LIMIT / 1024} KiB the AMIE REST API accepts`,
    );
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new Refusal(400, `malformed JSON in ${what}: ${(err as Error).message}`);
  }
}

function recId(text: string, what: string): number {
  if (!/^\d{1,9}$/.test(text)) throw new Refusal(400, `${what} ${JSON.stringify(text)} in the path is not a number`);
  return Number(text);
}

const FILTERS = [
  'trans_rec_id',
  'outgoing',
  'incoming',
  'update_time',
  'states',
  'transaction_state',
  'client_state',
] as const;
/** Plural and singular spellings clients use for the same filter. */
const FILTER_ALIASES: Record<string, (typeof FILTERS)[number]> = {
  trans_rec_ids: 'trans_rec_id',
  state: 'states',
  packet_state: 'states',
  transaction_states: 'transaction_state',
  client_states: 'client_state',
};

/**
 * The query string of `GET packets/{site}`; an unknown or malformed filter is refused, not ignored.
 * With no filter at all the answer is the site's pending work, its in-progress incoming packets
 * of in-progress transactions: clients written like amieclient's example call `list_packets()`
 * bare and answer everything it returns.
 */
function readFilter(query: URLSearchParams, site: string): PacketFilter {
  const f: PacketFilter = { site };
  if ([...query.keys()].length === 0)
    return { ...f, outgoing: false, states: ['in-progress'], transactionStates: ['in-progress'] };
  let incoming = false;
  let outgoing = false;
  for (const [rawName, value] of query) {
    const name = (Object.hasOwn(FILTER_ALIASES, rawName) ? FILTER_ALIASES[rawName] : undefined) ?? rawName;
    const list = () =>
      value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    switch (name) {
      case 'trans_rec_id':
        f.transRecIds = list().map((v) => recId(v, 'trans_rec_id'));
        break;
      case 'incoming':
        incoming = flag(rawName, value);
        break;
      case 'outgoing':
        outgoing = flag(rawName, value);
        break;
      case 'states':
      case 'transaction_state': {
        const states = list();
        const bad = states.filter((s) => !(STATE_NAMES as string[]).includes(s));
        if (bad.length > 0)
          throw new Refusal(
            400,
            `${rawName}: ${bad.map((s) => JSON.stringify(s)).join(', ')} is not an AMIE state; expected ${STATE_NAMES.join(', ')}`,
          );
        if (name === 'states') f.states = states as StateName[];
        else f.transactionStates = states as StateName[];
        break;
      }
      case 'client_state':
        f.clientStates = list();
        break;
      case 'update_time': {
        const [from, until, extra] = value.split(',');
        if (extra !== undefined)
          throw new Refusal(
            400,
            `update_time: expected "start,end" (either may be empty), got ${JSON.stringify(value)}`,
          );
        f.updatedFrom = time('update_time start', from);
        f.updatedUntil = time('update_time end', until);
        break;
      }
      default:
        throw new Refusal(
          400,
          `unknown query parameter ${JSON.stringify(rawName)}; GET packets/{site} filters by ${FILTERS.join(', ')}`,
        );
    }
  }
  // incoming=true or outgoing=true limits the direction; both (or neither) leave it open.
  if (incoming !== outgoing) f.outgoing = outgoing;
  return f;
}

function flag(name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no', ''].includes(v)) return false;
  throw new Refusal(400, `${name}: expected true or false, got ${JSON.stringify(value)}`);
}

function time(what: string, text: string | undefined): Date | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const d = new Date(text.trim());
  if (Number.isNaN(d.getTime())) throw new Refusal(400, `${what}: ${JSON.stringify(text)} is not an ISO 8601 time`);
  return d;
}
