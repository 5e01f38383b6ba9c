import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One chat.postMessage as the Slack Web API received it. */
export interface SlackRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  contentType: string | undefined;
  /** The form (or JSON) fields of the body. */
  body: Record<string, string>;
  at: number;
}

/**
 * How the pretend Slack answers: `ok` like Slack does; `hang` reads the request and never
 * answers; `refuse` answers `{ok: false, error}` as Slack does for a bad channel or token;
 * `rate-limit` answers 429 with Retry-After as Slack does past its rate limit.
 */
export type SlackMode =
  { kind: 'ok' } | { kind: 'hang' } | { kind: 'refuse'; error: string } | { kind: 'rate-limit'; retryAfter: number };

/** A local HTTP server answering like the Slack Web API, recording what it was sent. */
export class FakeSlack {
  readonly requests: SlackRequest[] = [];
  mode: SlackMode = { kind: 'ok' };
  private server: Server | undefined;
  private readonly hanging: ServerResponse[] = [];
  private nextTs = 1;

  /** The base URL to give as notify.slack.apiUrl. */
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/`;
    return this;
  }

  /** Texts of the messages received, in order. */
  get texts(): string[] {
    return this.requests.map((r) => r.body.text ?? '');
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const contentType = req.headers['content-type'];
    const body: Record<string, string> = contentType?.startsWith('application/json')
      ? (JSON.parse(raw) as Record<string, string>)
      : Object.fromEntries(new URLSearchParams(raw));
    this.requests.push({
      method: req.method ?? '',
      path: req.url ?? '',
      authorization: req.headers.authorization,
      contentType,
      body,
      at: Date.now(),
    });
    const json = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      res.end(JSON.stringify(payload));
    };
    const mode = this.mode;
    if (mode.kind === 'hang') {
      this.hanging.push(res);
      return;
    }
    if (mode.kind === 'rate-limit')
      return json(429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(mode.retryAfter) });
    if (req.headers.authorization !== 'Bearer xoxb-test-token') return json(200, { ok: false, error: 'invalid_auth' });
    if (mode.kind === 'refuse') return json(200, { ok: false, error: mode.error });
    if (req.url !== '/api/chat.postMessage') return json(200, { ok: false, error: 'unknown_method' });
    const ts = `1700000000.${String(this.nextTs++).padStart(6, '0')}`;
    json(200, { ok: true, channel: 'C0123ABCD', ts, message: { type: 'message', text: body.text, ts } });
  }
}

export const SLACK_TOKEN = 'xoxb-test-token';

/** A port nothing listens on: bound, noted and closed again. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/api/`;
}
