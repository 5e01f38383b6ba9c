/**
 * One HTTP request with bounded retries, shared by the ACCESS API clients (the AMIE REST API and
 * the Usage API): what may pass on a second try (network errors, timeouts, 5xx, 408, 429) is
 * retried with exponential backoff and jitter; anything else is returned to the caller, whose
 * protocol decides what a 4xx means. Headers are the caller's; nothing here logs or repeats them,
 * so an API key in a header never reaches a message.
 */

export interface RetryPolicy {
  /** Per attempt. */
  timeoutMs: number;
  /** Retries after the first attempt. */
  retries: number;
  /** First wait before a retry; doubled each time, capped at MAX_RETRY_WAIT_MS. */
  retryBaseMs: number;
}

export const MAX_RETRY_WAIT_MS = 30_000;

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

export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** How long to wait before retry number `attempt` (1-based): base × 2^(attempt-1), capped, ±25 % jitter. */
export function backoffMs(retryBaseMs: number, attempt: number): number {
  return Math.round(Math.min(MAX_RETRY_WAIT_MS, retryBaseMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5));
}

/** The upper bound of one call's duration under `policy`: every attempt timing out, every wait at its longest. */
export function worstCaseMs(policy: RetryPolicy): number {
  let total = policy.timeoutMs * (policy.retries + 1);
  for (let a = 1; a <= policy.retries; a++) total += Math.min(MAX_RETRY_WAIT_MS, policy.retryBaseMs * 2 ** (a - 1)) * 1.25;
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
  for (let attempt = 0; ; attempt++) {
    let failure: string;
    let status: number | undefined;
    let cause: unknown;
    try {
      const res = await fetchFn(url, { ...init, signal: AbortSignal.timeout(policy.timeoutMs) });
      const text = await res.text();
      const answer = parseAnswer(res.status, res.statusText, text);
      if (!retryableStatus(res.status)) return answer;
      status = res.status;
      failure = `HTTP ${res.status}: ${messageOf(answer.body) ?? (text.slice(0, 200) || 'no message')}`;
    } catch (err) {
      failure = describeFetchError(err, policy.timeoutMs);
      cause = err;
    }
    if (attempt >= policy.retries) throw new HttpRetriesExhausted(failure, attempt + 1, status, { cause });
    const waitMs = backoffMs(policy.retryBaseMs, attempt + 1);
    hooks.onRetry?.({ attempt: attempt + 1, waitMs, reason: failure });
    await new Promise((r) => setTimeout(r, waitMs));
    const instead = await hooks.beforeRetry?.();
    if (instead) return instead;
  }
}

function parseAnswer(status: number, statusText: string, text: string): HttpAnswer {
  if (text.trim() === '') return { status, statusText, text, body: undefined, isJson: true };
  try {
    return { status, statusText, text, body: JSON.parse(text), isJson: true };
  } catch {
    return { status, statusText, text, body: text, isJson: false };
  }
}
