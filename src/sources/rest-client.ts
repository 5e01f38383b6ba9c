/**
 * A client of the ACCESS AMIE REST API on Node's fetch. Every request carries XA-SITE and
 * XA-API-KEY; the key travels only in that header and is never logged or put in an error.
 * Network errors, timeouts, 408, 429 and 5xx answers are retried with backoff (bounded); a 4xx is
 * an AmieRestError carrying the server's message; an answer that is not the JSON the API promises,
 * a redirect (never followed) or a body over the size cap is an AmieRestError saying what came
 * back instead. A plain http URL is refused unless it is loopback or allowInsecureHttp is set.
 */
import {
  HttpAnswerRefused,
  HttpRetriesExhausted,
  accessHeaders,
  fetchWithRetries,
  insecureUrlProblem,
  messageOf,
  retryableStatus,
  worstCaseMs,
  type HttpAnswer,
  type RetryPolicy,
} from '../http.js';
import {
  RestPacketError,
  packetListOf,
  parseRestPacket,
  postedPacketRecId,
  type RestPacket,
  type RestPacketJson,
} from './rest-json.js';

export interface AmieRestClientOptions {
  /** Base URL of the API; `packets/{site}` and `transactions/{site}/…` are resolved against it. */
  url: string;
  /** XA-SITE, and the {site} of every path. */
  site: string;
  /** XA-API-KEY. */
  apiKey: string;
  /** Per attempt (default 30 s). */
  timeoutMs?: number;
  /** Retries after the first attempt on network errors, timeouts and 5xx (default 3). */
  retries?: number;
  /** First wait before a retry, doubled each time (default 1 s). */
  retryBaseMs?: number;
  /** The largest answer read (default 64 MiB); a larger one is an error, not a memory exhaustion. */
  maxResponseBytes?: number;
  /** Accept a plain http URL to a host that is not loopback (the key then crosses the network unencrypted). */
  allowInsecureHttp?: boolean;
  /** Replaced in tests; default the global fetch. */
  fetch?: typeof fetch;
  /** Called before each retry, for logging. */
  onRetry?: (info: { request: string; attempt: number; waitMs: number; reason: string }) => void;
}

/** A request the API refused (4xx), answered with something unreadable, or that kept failing. */
export class AmieRestError extends Error {
  override name = 'AmieRestError';
  constructor(
    message: string,
    /** e.g. "GET packets/EXAMPLE". */
    readonly request: string,
    /** The HTTP status, when there was an answer. */
    readonly status?: number,
    /** The server's `message`, for a refusal. */
    readonly serverMessage?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /**
   * True when the server answered with a refusal (4xx) rather than failing or not answering.
   * A 408 or 429 (even after the retries ran out) says "not now", which is no refusal.
   */
  get refused(): boolean {
    return this.status !== undefined && this.status >= 400 && this.status < 500 && !retryableStatus(this.status);
  }
}

/** Query filters of `GET packets/{site}` (AMIE REST API). */
export interface PacketFilters {
  /** Only packets the site received. */
  incoming?: boolean;
  /** Only packets the site sent. */
  outgoing?: boolean;
  /** Packet states, e.g. ["in-progress"]. */
  states?: readonly string[];
  transactionStates?: readonly string[];
  clientStates?: readonly string[];
  transRecIds?: readonly number[];
  /** Packets updated in this window. */
  updateTime?: { start?: Date; end?: Date };
}

/** Packets of an answer: those that could be read, and an error for each that could not. */
export interface PacketListing {
  packets: RestPacket[];
  malformed: RestPacketError[];
}

export class AmieRestClient {
  private readonly base: URL;
  private readonly fetchFn: typeof fetch;
  readonly policy: RetryPolicy;

  constructor(private readonly opts: AmieRestClientOptions) {
    this.base = new URL(opts.url.endsWith('/') ? opts.url : `${opts.url}/`);
    const insecure = insecureUrlProblem(opts.url, opts.allowInsecureHttp, 'source.allowInsecureHttp');
    if (insecure) throw new Error(`AMIE REST API at ${insecure}`);
    this.fetchFn = opts.fetch ?? fetch;
    this.policy = {
      timeoutMs: opts.timeoutMs ?? 30_000,
      retries: opts.retries ?? 3,
      retryBaseMs: opts.retryBaseMs ?? 1000,
      maxResponseBytes: opts.maxResponseBytes,
    };
  }

  get site(): string {
    return this.opts.site;
  }

  /** The base URL, for messages (it carries no secret: the key is a header). */
  get url(): string {
    return this.base.toString();
  }

  /** The longest one call can take with its retries: every attempt timing out. */
  get worstCaseCallMs(): number {
    return worstCaseMs(this.policy);
  }

  /** `GET packets/{site}` with filters. */
  async listPackets(filters: PacketFilters = {}): Promise<PacketListing> {
    const q = new URLSearchParams();
    if (filters.incoming !== undefined) q.set('incoming', String(filters.incoming));
    if (filters.outgoing !== undefined) q.set('outgoing', String(filters.outgoing));
    if (filters.states?.length) q.set('states', filters.states.join(','));
    if (filters.transactionStates?.length) q.set('transaction_state', filters.transactionStates.join(','));
    if (filters.clientStates?.length) q.set('client_state', filters.clientStates.join(','));
    if (filters.transRecIds?.length) q.set('trans_rec_id', filters.transRecIds.join(','));
    if (filters.updateTime)
      q.set(
        'update_time',
        `${filters.updateTime.start?.toISOString() ?? ''},${filters.updateTime.end?.toISOString() ?? ''}`,
      );
    const query = q.toString();
    const path = `packets/${this.sitePath}${query ? `?${query}` : ''}`;
    return this.listing('GET', path, await this.json('GET', path));
  }

  /** `GET transactions/{site}/{trans_rec_id}/packets`: every packet of one transaction, both directions. */
  async transactionPackets(transRecId: number): Promise<PacketListing> {
    const path = `transactions/${this.sitePath}/${transRecId}/packets`;
    return this.listing('GET', path, await this.json('GET', path));
  }

  /**
   * `POST packets/{site}`: sends a packet (a reply carries header.in_reply_to). A retry after an
   * attempt whose fate is unknown (no answer, 5xx) first calls `alreadySent`: when it finds the
   * packet on the server, that is the result and nothing is POSTed again.
   * The packet counts as delivered only when the server's JSON answer names the packet_rec_id it
   * created, or `alreadySent` then finds it there; any other answer (a proxy's page, a 2xx without
   * the packet) is an AmieRestError, so the caller keeps the packet to send again.
   */
  async sendPacket(
    packet: RestPacketJson,
    opts: { alreadySent?: () => Promise<number | null | undefined> } = {},
  ): Promise<{ packetRecId: number | null; alreadyThere: boolean }> {
    const path = `packets/${this.sitePath}`;
    let found: number | null | undefined;
    const answer = await this.json('POST', path, packet, async () => {
      found = await opts.alreadySent?.();
      return found === undefined
        ? undefined
        : { status: 200, statusText: 'OK', text: '', body: undefined, isJson: true };
    });
    if (found !== undefined) return { packetRecId: found, alreadyThere: true };
    const packetRecId = postedPacketRecId(answer);
    if (packetRecId !== null) return { packetRecId, alreadyThere: false };
    found = await opts.alreadySent?.();
    if (found !== undefined && found !== null) return { packetRecId: found, alreadyThere: true };
    const request = `POST ${path}`;
    throw new AmieRestError(
      `AMIE REST API answered ${request} without naming the packet it created (no packet_rec_id in ${JSON.stringify(shorten(JSON.stringify(answer) ?? ''))}), ` +
        'and the transaction does not show it: not counted as delivered',
      request,
      200,
    );
  }

  /** `PUT packets/{site}/{packet_rec_id}/client_state/{state}`: a note for the site, kept by the server. */
  async setClientState(packetRecId: number, state: string): Promise<void> {
    await this.json('PUT', `packets/${this.sitePath}/${packetRecId}/client_state/${encodeURIComponent(state)}`);
  }

  /** `DELETE packets/{site}/{packet_rec_id}/client_state`. */
  async clearClientState(packetRecId: number): Promise<void> {
    await this.json('DELETE', `packets/${this.sitePath}/${packetRecId}/client_state`);
  }

  /** `PUT packets/{site}/{packet_rec_id}/client_json`. */
  async setClientJson(packetRecId: number, value: unknown): Promise<void> {
    await this.json('PUT', `packets/${this.sitePath}/${packetRecId}/client_json`, value);
  }

  /** `DELETE packets/{site}/{packet_rec_id}/client_json`. */
  async clearClientJson(packetRecId: number): Promise<void> {
    await this.json('DELETE', `packets/${this.sitePath}/${packetRecId}/client_json`);
  }

  /** `PUT transactions/{site}/{trans_rec_id}/state/failed`. */
  async failTransaction(transRecId: number): Promise<void> {
    await this.json('PUT', `transactions/${this.sitePath}/${transRecId}/state/failed`);
  }

  private get sitePath(): string {
    return encodeURIComponent(this.opts.site);
  }

  private listing(method: string, path: string, answer: unknown): PacketListing {
    const request = `${method} ${path.split('?')[0]}`;
    let items: unknown[];
    try {
      items = packetListOf(answer, `AMIE REST API answered ${request}`);
    } catch (err) {
      throw new AmieRestError((err as Error).message, request, 200);
    }
    const out: PacketListing = { packets: [], malformed: [] };
    items.forEach((item, i) => {
      try {
        out.packets.push(parseRestPacket(item, `item ${i} of ${request}`));
      } catch (err) {
        if (!(err instanceof RestPacketError)) throw err;
        out.malformed.push(err);
      }
    });
    return out;
  }

  /** One call: retried while it may pass, then a 2xx body or an AmieRestError. */
  private async json(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body?: unknown,
    beforeRetry?: () => Promise<HttpAnswer | undefined>,
  ): Promise<unknown> {
    // Messages name the endpoint; the query (filters) only adds noise to them.
    const request = `${method} ${path.split('?')[0]}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let answer: HttpAnswer;
    try {
      answer = await fetchWithRetries(
        this.fetchFn,
        new URL(path, this.base).toString(),
        {
          method,
          headers: accessHeaders(this.opts.site, this.opts.apiKey, payload !== undefined),
          body: payload,
        },
        this.policy,
        {
          onRetry: (info) => this.opts.onRetry?.({ request, ...info }),
          // Only a POST can do harm twice; the other calls are idempotent and simply repeated.
          beforeRetry: method === 'POST' ? beforeRetry : undefined,
        },
      );
    } catch (err) {
      if (err instanceof HttpRetriesExhausted || err instanceof HttpAnswerRefused) {
        throw new AmieRestError(
          `AMIE REST API at ${this.url}: ${request} ${err.message}`,
          request,
          err.status,
          undefined,
          { cause: err },
        );
      }
      throw err;
    }
    if (answer.status >= 300) {
      // node:http only on this path: a run that is answered well does not load it.
      const statusText = answer.statusText || (await import('node:http')).STATUS_CODES[answer.status] || '';
      const message = messageOf(answer.body);
      throw new AmieRestError(
        `AMIE REST API refused ${request}: ${answer.status}${statusText ? ` ${statusText}` : ''}: ${message ?? 'no message'}`,
        request,
        answer.status,
        message,
      );
    }
    if (!answer.isJson) {
      throw new AmieRestError(
        `AMIE REST API answered ${request} with something that is not JSON (HTTP ${answer.status}): ${JSON.stringify(shorten(answer.text))}`,
        request,
        answer.status,
      );
    }
    return answer.body;
  }
}

function shorten(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
