/**
 * One HTTP request with bounded retries, shared by the ACCESS API clients (the AMIE REST API and
 * the Usage API): what may pass on a second try (network errors, timeouts, 5xx, 408, 429) is
 * retried with exponential backoff and jitter, honouring Retry-After; anything else is returned
 * to the caller, whose protocol decides what a 4xx means. Headers are the caller's; nothing here
 * logs or repeats them, so an API key in a header never reaches a message.
 *
 * Answers are hostile input: a redirect is never followed (fetch would carry XA-API-KEY to
 * whatever host the Location names), and a body is read only up to a size cap, within the
 * per-attempt timeout (which also covers a body that never ends).
 */

export interface RetryPolicy {
  /** Per attempt. */
  timeoutMs: number;
  /** Retries after the first attempt. */
  retries: number;
  /** First wait before a retry; doubled each time, capped at MAX_RETRY_WAIT_MS. */
  retryBaseMs: number;
  /** The largest answer body read; a longer one is an error (default DEFAULT_MAX_RESPONSE_BYTES). */
  maxResponseBytes?: number;
}

/** The longest wait before a retry, whether backoff or the server's Retry-After. */
export const MAX_RETRY_WAIT_MS = 30_000;

/** 64 MiB: far above any real answer, far below what would endanger the process. */
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** An answer that was not retried (or was the last one): status, raw text and the parsed body. */
export interface HttpAnswer {
  status: number;
  statusText: string;
  text: string;
  /** The parsed JSON, or the raw text when it is not JSON, or undefined when empty. */
  body: unknown;
  /** False when the text was not empty and not JSON. */
  isJson: boolean;
}

/** The server stayed unreachable, or kept answering 5xx, through every retry. */
export class HttpRetriesExhausted extends Error {
  override name = 'HttpRetriesExhausted';
  constructor(
    /** What went wrong the last time, e.g. "HTTP 503: maintenance" or "no answer within 30000 ms". */
    readonly failure: string,
    readonly attempts: number,
    /** The last HTTP status, when there was an answer. */
    readonly status: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(`failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${failure}`, options);
  }
}

/**
 * An answer that must not be used and is not worth retrying: a redirect (never followed, so the
 * API key stays with the configured origin) or a body over the size cap.
 */
export class HttpAnswerRefused extends Error {
  override name = 'HttpAnswerRefused';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** How long to wait before retry number `attempt` (1-based): base × 2^(attempt-1), capped, ±25 % jitter. */
export function backoffMs(retryBaseMs: number, attempt: number): number {
  return Math.round(Math.min(MAX_RETRY_WAIT_MS, retryBaseMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5));
}

/**
 * The wait a Retry-After header asks for, in ms: delay-seconds or an HTTP date; undefined when
 * absent or unreadable.
 */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The upper bound of one call's duration under `policy`: every attempt timing out, every wait at its longest (a Retry-After may ask for up to MAX_RETRY_WAIT_MS). */
export function worstCaseMs(policy: RetryPolicy): number {
  let total = policy.timeoutMs * (policy.retries + 1);
  for (let a = 1; a <= policy.retries; a++)
    total += Math.max(MAX_RETRY_WAIT_MS, Math.min(MAX_RETRY_WAIT_MS, policy.retryBaseMs * 2 ** (a - 1)) * 1.25);
  return Math.ceil(total);
}

/** The server's explanation in an error body: `message` (AMIE REST), `Message` (Usage API), or the text. */
export function messageOf(body: unknown): string | undefined {
  if (typeof body === 'string') return body.trim() === '' ? undefined : body.slice(0, 500);
  if (body && typeof body === 'object') {
    const o = body as Record<string, unknown>;
    const m = o.message ?? o.Message ?? o.error ?? o.Error ?? o.detail;
    if (m !== undefined && m !== null) return typeof m === 'string' ? m : JSON.stringify(m);
  }
  return undefined;
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as Error;
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = (e.cause as Error | undefined)?.message;
  return `${e.message}${cause ? ` (${cause})` : ''}`;
}

/** The headers every ACCESS API (AMIE REST and Usage) request carries: the site and its key. */
export function accessHeaders(site: string, apiKey: string, withBody: boolean): Record<string, string> {
  return {
    'XA-SITE': site,
    'XA-API-KEY': apiKey,
    Accept: 'application/json',
    ...(withBody ? { 'Content-Type': 'application/json' } : {}),
  };
}

export interface RetryHooks {
  /** Called before each retry, for logging. */
  onRetry?: (info: { attempt: number; waitMs: number; reason: string }) => void;
  /**
   * Called after a failed attempt whose effect on the server is unknown (no answer, or 5xx) and
   * before trying again; returning an answer ends the call with it instead. A POST that must not
   * be sent twice uses this to ask the server whether the first attempt arrived.
   */
  beforeRetry?: () => Promise<HttpAnswer | undefined>;
}

/** Sends the request, retrying what may pass; returns the first answer that is not retried. */
export async function fetchWithRetries(
  fetchFn: typeof fetch,
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
  policy: RetryPolicy,
  hooks: RetryHooks = {},
): Promise<HttpAnswer> {
  const maxBytes = policy.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  for (let attempt = 0; ; attempt++) {
    let failure: string;
    let status: number | undefined;
    let cause: unknown;
    let askedWaitMs: number | undefined;
    try {
      // The timeout signal covers reading the body too: headers followed by silence end here.
      const res = await fetchFn(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(policy.timeoutMs) });
      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel().catch(() => {});
        throw new HttpAnswerRefused(redirectMessage(res.status, res.headers.get('location'), url), res.status);
      }
      const text = await readCapped(res, maxBytes);
      const answer = parseAnswer(res.status, res.statusText, text);
      if (!retryableStatus(res.status)) return answer;
      status = res.status;
      askedWaitMs = retryAfterMs(res.headers.get('retry-after'));
      failure = `HTTP ${res.status}: ${messageOf(answer.body) ?? (text.slice(0, 200) || 'no message')}`;
    } catch (err) {
      if (err instanceof HttpAnswerRefused) throw err;
      failure = describeFetchError(err, policy.timeoutMs);
      cause = err;
    }
    if (askedWaitMs !== undefined && askedWaitMs > MAX_RETRY_WAIT_MS) {
      // Retrying sooner than the server asked only meets the same answer; the next run will try.
      throw new HttpRetriesExhausted(
        `${failure} (the server asks to wait ${Math.ceil(askedWaitMs / 1000)} s; not waiting longer than ${MAX_RETRY_WAIT_MS / 1000} s)`,
        attempt + 1,
        status,
        { cause },
      );
    }
    if (attempt >= policy.retries) throw new HttpRetriesExhausted(failure, attempt + 1, status, { cause });
    const waitMs = Math.max(backoffMs(policy.retryBaseMs, attempt + 1), askedWaitMs ?? 0);
    hooks.onRetry?.({ attempt: attempt + 1, waitMs, reason: failure });
    await new Promise((r) => setTimeout(r, waitMs));
    // A 408 or 429 says the request was not acted on: nothing to look for.
    if (status === 408 || status === 429) continue;
    const instead = await hooks.beforeRetry?.();
    if (instead) return instead;
  }
}

/** Names the status and where the redirect points (its origin only: a query may hold anything). */
function redirectMessage(status: number, location: string | null, url: string): string {
  let target = 'nowhere (no Location)';
  if (location !== null) {
    try {
      target = new URL(location, url).origin;
    } catch {
      target = 'an unreadable Location';
    }
  }
  return `answered HTTP ${status}, a redirect to ${target}, which is not followed: the API key goes only to the configured URL (set the url to where the API is now)`;
}

/** The body as text, read as it streams and abandoned past `maxBytes`, so memory stays bounded. */
async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  const tooLarge = () =>
    new HttpAnswerRefused(
      `answered HTTP ${res.status} with a body larger than ${maxBytes} bytes (maxResponseBytes); it was not read further`,
      res.status,
    );
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  // The fetch types leave the chunk type open; a response body streams bytes.
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** True for a host whose traffic never leaves the machine. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * Why `url` may not carry an API key, or undefined: plain http crosses the network readable by
 * anyone on the way, so it is refused unless the host is loopback or the site says it accepts that.
 */
export function insecureUrlProblem(
  url: string,
  allowInsecureHttp: boolean | undefined,
  configKey: string,
): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined; // the url's own check says what is wrong with it
  }
  if (u.protocol !== 'http:' || allowInsecureHttp || isLoopbackHost(u.hostname)) return undefined;
  return `${u.origin} is plain http: the API key would cross the network unencrypted; use https, or set ${configKey}: true to accept that`;
}

function parseAnswer(status: number, statusText: string, text: string): HttpAnswer {
  if (text.trim() === '') return { status, statusText, text, body: undefined, isJson: true };
  try {
    return { status, statusText, text, body: JSON.parse(text), isJson: true };
  } catch {
    return { status, statusText, text, body: text, isJson: false };
  }
}
