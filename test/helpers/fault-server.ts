/**
 * A misbehaving HTTP server on 127.0.0.1, for the hostile-answer tests: it plays the proxy or
 * server that redirects elsewhere, rate-limits, times out, answers a login page with 200, streams
 * forever, sends more than anyone should read, or never answers. A request no rule matches is
 * forwarded to `upstream` (the fake AMIE REST API, the simulator) when one is given, so the fault
 * sits in front of a working API like a real proxy would; otherwise it gets a 404.
 *
 * Every request is recorded with its headers, so a second FaultServer can stand for "another
 * origin" and prove what (if anything) reached it. The server is bounded and stops itself: a
 * streamed body ends after `maxStreamBytes`, hanging answers are cut when the server closes, and
 * the server closes on its own after `lifetimeMs` even if a test forgets to.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export type Fault =
  /** A redirect; `to` is absolute (another origin) or a path on this server. */
  | { kind: 'redirect'; status: 301 | 302 | 303 | 307 | 308; to: string }
  /** A status with a JSON body, e.g. 429 with `retryAfter: '1'`, 408, 503. */
  | { kind: 'status'; status: number; json?: unknown; retryAfter?: string }
  /** A page instead of the API's JSON, as a proxy or a login portal sends (status 200 unless given). */
  | { kind: 'html'; html: string; status?: number }
  /** JSON of the server's choosing, status 200 unless given. */
  | { kind: 'json'; json: unknown; status?: number }
  /** The request goes on to the upstream, which acts on it; the client gets `json` (200) instead of its answer. */
  | { kind: 'forward-then-json'; json: unknown }
  /** 200 and a body that never ends (until the client leaves or maxStreamBytes); `trickleMs` slows it to a byte per tick. */
  | { kind: 'endless'; trickleMs?: number }
  /** 200 and a JSON listing of `bytes` bytes, generated as it is sent; Content-Length only when `declare`. */
  | { kind: 'large'; bytes: number; declare?: boolean }
  /** No answer at all, or headers and then silence. */
  | { kind: 'hang'; after: 'nothing' | 'headers' };

export interface FaultRule {
  match: (r: SeenRequest) => boolean;
  fault: Fault;
  /** How many requests it answers (default 1; Infinity for all). */
  times?: number;
}

export interface FaultServerOptions {
  /** Where unmatched requests go, e.g. the fake API's URL (only its origin is used). */
  upstream?: string;
  /** Safety bound on any streamed body (default 1 GiB). */
  maxStreamBytes?: number;
  /** The server closes itself after this long (default 120 s). */
  lifetimeMs?: number;
}

const CHUNK = Buffer.alloc(64 * 1024, 'x');

export class FaultServer {
  readonly requests: SeenRequest[] = [];
  readonly rules: FaultRule[] = [];
  /** Body bytes written by streamed answers (endless, large), for proving the client stopped reading. */
  streamedBytes = 0;
  origin = '';
  private server!: Server;
  private lifetime!: NodeJS.Timeout;
  private closed = false;

  private constructor(private readonly opts: FaultServerOptions) {}

  static async start(opts: FaultServerOptions = {}): Promise<FaultServer> {
    const f = new FaultServer(opts);
    f.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const seen: SeenRequest = {
          method: req.method ?? 'GET',
          url: req.url ?? '/',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        };
        f.requests.push(seen);
        void f.answer(seen, res).catch(() => res.destroy());
      });
    });
    await new Promise<void>((resolve) => f.server.listen(0, '127.0.0.1', resolve));
    f.origin = `http://127.0.0.1:${(f.server.address() as AddressInfo).port}`;
    f.lifetime = setTimeout(() => void f.close(), opts.lifetimeMs ?? 120_000);
    f.lifetime.unref();
    f.server.unref();
    return f;
  }

  /** This server's root URL. */
  get url(): string {
    return `${this.origin}/`;
  }

  /** `upstreamUrl` with this server's origin: what a client uses to reach the upstream through the faults. */
  in(upstreamUrl: string): string {
    const u = new URL(upstreamUrl);
    return `${this.origin}${u.pathname}${u.search}`;
  }

  /** Adds a rule; rules are tried in the order added. */
  on(match: FaultRule['match'], fault: Fault, times = 1): this {
    this.rules.push({ match, fault, times });
    return this;
  }

  clear(): void {
    this.rules.length = 0;
  }

  /** The API keys that reached this server, one per request that carried one. */
  get keysSeen(): string[] {
    return this.requests.map((r) => r.headers['xa-api-key']).filter((k): k is string => typeof k === 'string');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.lifetime);
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private async answer(r: SeenRequest, res: ServerResponse): Promise<void> {
    const rule = this.rules.find((x) => (x.times ?? 1) > 0 && x.match(r));
    if (!rule) return this.forward(r, res);
    rule.times = (rule.times ?? 1) - 1;
    const f = rule.fault;
    switch (f.kind) {
      case 'redirect':
        res.writeHead(f.status, { Location: f.to, 'Content-Type': 'text/html' });
        res.end(`<html><body>Moved <a href="${f.to}">here</a></body></html>`);
        return;
      case 'status':
        res.writeHead(f.status, {
          'Content-Type': 'application/json',
          ...(f.retryAfter !== undefined ? { 'Retry-After': f.retryAfter } : {}),
        });
        res.end(JSON.stringify(f.json ?? { message: `fault ${f.status}` }));
        return;
      case 'html':
        res.writeHead(f.status ?? 200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(f.html);
        return;
      case 'json':
        res.writeHead(f.status ?? 200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(f.json));
        return;
      case 'forward-then-json':
        await this.forward(r, undefined);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(f.json));
        return;
      case 'endless':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"message":"","result":[');
        await this.stream(res, Infinity, f.trickleMs);
        return;
      case 'large': {
        const head = '{"message":"large","result":["';
        const tail = '"]}';
        const size = Math.max(head.length + tail.length, f.bytes);
        res.writeHead(200, {
          'Content-Type': 'application/json',
          ...(f.declare ? { 'Content-Length': String(size) } : {}),
        });
        res.write(head);
        if (await this.stream(res, size - head.length - tail.length)) res.end(tail);
        return;
      }
      case 'hang':
        // Before headers: nothing at all. Either way close() cuts the connection.
        if (f.after === 'headers') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.flushHeaders();
        }
        return;
    }
  }

  /**
   * Writes `bytes` of filler (or until the client leaves, the server closes or maxStreamBytes),
   * respecting backpressure so the server's own memory stays small. True when all was written.
   */
  private async stream(res: ServerResponse, bytes: number, trickleMs?: number): Promise<boolean> {
    const cap = this.opts.maxStreamBytes ?? 1024 ** 3;
    let left = Math.min(bytes, cap);
    let gone = false;
    res.on('close', () => (gone = true));
    while (left > 0 && !gone && !this.closed) {
      if (trickleMs !== undefined) {
        res.write('x');
        this.streamedBytes += 1;
        left -= 1;
        await new Promise((r) => setTimeout(r, trickleMs).unref());
        continue;
      }
      const n = Math.min(left, CHUNK.length);
      const ok = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      this.streamedBytes += n;
      left -= n;
      if (!ok) {
        // Whichever comes first; the other listener goes with it, or every wait would leave one behind.
        await new Promise<void>((r) => {
          const done = () => {
            res.off('drain', done).off('close', done);
            r();
          };
          res.once('drain', done).once('close', done);
        });
      }
    }
    if (left > 0 && !gone) res.destroy(); // the safety bound, or the server closing: cut it
    return left === 0 && !gone;
  }

  /** Passes the request on to the upstream and copies its answer back (to `res`, when given). */
  private async forward(r: SeenRequest, res: ServerResponse | undefined): Promise<void> {
    if (!this.opts.upstream) {
      if (res) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ message: `no fault for ${r.method} ${r.url} and no upstream` }));
      }
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.headers)) {
      if (typeof v === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k))
        headers[k] = v;
    }
    const up = await fetch(new URL(r.url, this.opts.upstream), {
      method: r.method,
      headers,
      body: r.method === 'GET' || r.method === 'HEAD' ? undefined : r.body,
      redirect: 'manual',
    });
    const text = await up.text();
    if (!res) return;
    const out: Record<string, string> = { 'Content-Type': up.headers.get('content-type') ?? 'application/json' };
    for (const h of ['retry-after', 'location', 'allow']) {
      const v = up.headers.get(h);
      if (v !== null) out[h] = v;
    }
    res.writeHead(up.status, out);
    res.end(text);
  }
}

/** Request matchers for the ACCESS APIs. */
export const on = {
  post: (r: SeenRequest) => r.method === 'POST',
  get: (r: SeenRequest) => r.method === 'GET',
  path: (part: string) => (r: SeenRequest) => r.url.includes(part),
  postTo: (part: string) => (r: SeenRequest) => r.method === 'POST' && r.url.includes(part),
  getOf: (part: string) => (r: SeenRequest) => r.method === 'GET' && r.url.includes(part),
  any: () => true,
};
