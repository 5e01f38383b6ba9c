/**
 * A client of the ACCESS Usage API: compute records POSTed to `usage/` in batches that stay
 * well under the server's 1024 KiB body limit, with retries on what may pass (network errors,
 * timeouts, 5xx) and a per-record verdict on what will not (4xx, ValidationFailedRecords).
 * The API key travels only in the XA-API-KEY header; it is never logged or put in an error.
 * The retry loop is shared with the AMIE REST API client (src/http.ts).
 *
 * Records count as accepted only on a 2xx whose JSON body has the Usage API's shape (`Message`,
 * `ValidationFailedRecords`): a redirect (never followed), a proxy's HTML page or any other
 * answer is a UsageApiError and leaves the records undecided, so they are sent again.
 */
import {
  HttpAnswerRefused,
  HttpRetriesExhausted,
  accessHeaders,
  fetchWithRetries,
  insecureUrlProblem,
  messageOf,
} from '../http.js';
import {
  UsageAnswerError,
  readFailedRecords,
  readUsageStatus,
  type FailedUsageRecord,
  type UsageStatusResource,
} from './api-answers.js';

export interface ComputeRecord {
  Username: string;
  LocalProjectID: string;
  LocalRecordID: string;
  Resource: string;
  SubmitTime: string;
  StartTime: string;
  EndTime: string;
  Charge: number;
  Attributes: {
    NodeCount?: number;
    CpuCoreCount?: number;
    JobName?: string;
    Memory?: number;
    Queue?: string;
  };
  ParentRecordID?: string;
  LocalReference?: string;
}

export interface UsageApiClientOptions {
  /** Base URL; `usage/` is resolved against it. */
  url: string;
  /** XA-SITE: the site name. */
  site: string;
  /** XA-API-KEY. */
  apiKey: string;
  timeoutMs?: number;
  maxRetries?: number;
  /** First wait before a retry; doubled each time, capped at 30 s. */
  retryBaseMs?: number;
  maxBatchBytes?: number;
  maxBatchRecords?: number;
  /** The largest answer read (default 64 MiB); a larger one is an error, not a memory exhaustion. */
  maxResponseBytes?: number;
  /** Accept a plain http URL to a host that is not loopback (the key then crosses the network unencrypted). */
  allowInsecureHttp?: boolean;
  /** Replaced in tests; default the global fetch. */
  fetch?: typeof fetch;
  /** Called before each retry, for logging. */
  onRetry?: (info: { attempt: number; waitMs: number; reason: string }) => void;
}

/** The server could not be reached or kept failing; nothing about the records was decided. */
export class UsageApiError extends Error {
  override name = 'UsageApiError';
  /** Verdicts on the records of bodies answered before the failure, so they are not lost. */
  decided: RecordVerdict[] = [];
  constructor(
    message: string,
    readonly httpStatus?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface RecordVerdict {
  /** Position in the records given to postCompute. */
  index: number;
  accepted: boolean;
  reason?: string;
  httpStatus: number;
}

/** Refusals about the request as a whole (credentials, URL), not about its records: nothing is decided. */
const RUN_LEVEL_REFUSALS = new Set([401, 403, 404, 405, 407]);

/** The server's own limit; a batch is never allowed near it. */
export const USAGE_API_BODY_LIMIT = 1024 * 1024;

/**
 * Splits records into POST bodies of at most `maxBytes` (as serialized, envelope included) and
 * `maxRecords` records. A single record over the limit still gets a body of its own: the
 * server's answer about it is the useful message.
 */
export function splitComputeBatches<T>(records: readonly T[], maxBytes: number, maxRecords: number): T[][] {
  const envelope = Buffer.byteLength(JSON.stringify({ UsageType: 'compute', Records: [] }));
  const batches: T[][] = [];
  let current: T[] = [];
  let size = envelope;
  for (const r of records) {
    const bytes = Buffer.byteLength(JSON.stringify(r)) + 1; // the comma
    if (current.length > 0 && (size + bytes > maxBytes || current.length >= maxRecords)) {
      batches.push(current);
      current = [];
      size = envelope;
    }
    current.push(r);
    size += bytes;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export class UsageApiClient {
  private readonly base: URL;
  private readonly fetchFn: typeof fetch;
  readonly maxBatchBytes: number;
  readonly maxBatchRecords: number;

  constructor(private readonly opts: UsageApiClientOptions) {
    this.base = new URL(opts.url.endsWith('/') ? opts.url : `${opts.url}/`);
    const insecure = insecureUrlProblem(opts.url, opts.allowInsecureHttp, 'usage.usageApi.allowInsecureHttp');
    if (insecure) throw new Error(`Usage API at ${insecure}`);
    this.fetchFn = opts.fetch ?? fetch;
    this.maxBatchBytes = Math.min(opts.maxBatchBytes ?? 512 * 1024, USAGE_API_BODY_LIMIT - 1024);
    this.maxBatchRecords = opts.maxBatchRecords ?? 1000;
  }

  /** Where requests go, for messages (the base URL carries no secret). */
  get endpoint(): string {
    return new URL('usage/', this.base).toString();
  }

  /**
   * POSTs compute records, split into bodies under the size limit, and returns one verdict per
   * record. Throws UsageApiError when the server stays unreachable or keeps answering 5xx after
   * the retries: the records of that body and every later one were not decided.
   */
  async postCompute(records: readonly ComputeRecord[]): Promise<RecordVerdict[]> {
    const verdicts: RecordVerdict[] = [];
    const indexed = records.map((record, index) => ({ record, index }));
    const queue = splitComputeBatches(indexed, this.maxBatchBytes, this.maxBatchRecords);
    while (queue.length > 0) {
      const batch = queue.shift()!;
      let answer: { status: number; body: unknown; isJson: boolean; text: string };
      try {
        answer = await this.send('POST', 'usage/', { UsageType: 'compute', Records: batch.map((b) => b.record) });
        if (RUN_LEVEL_REFUSALS.has(answer.status)) {
          throw new UsageApiError(
            `POST ${this.endpoint}: HTTP ${answer.status}: ${messageOf(answer.body) ?? 'no message'}`,
            answer.status,
          );
        }
        if (answer.status < 400 && !isUsageAnswer(answer.body, answer.isJson)) {
          const shown = answer.text.length > 120 ? `${answer.text.slice(0, 117)}...` : answer.text;
          throw new UsageApiError(
            `POST ${this.endpoint} answered HTTP ${answer.status} with something that is not the Usage API's answer ` +
              `(a JSON object with Message): ${JSON.stringify(shown)}; the records were not counted as reported`,
            answer.status,
          );
        }
      } catch (err) {
        if (err instanceof UsageApiError) err.decided = verdicts.sort((a, b) => a.index - b.index);
        throw err;
      }
      if (answer.status === 413 && batch.length > 1) {
        // The server's limit is lower than configured: halve and try again.
        const half = Math.ceil(batch.length / 2);
        queue.unshift(batch.slice(0, half), batch.slice(half));
        continue;
      }
      if (answer.status >= 400) {
        const reason = `HTTP ${answer.status}: ${messageOf(answer.body) ?? 'no message'}`;
        for (const b of batch) verdicts.push({ index: b.index, accepted: false, reason, httpStatus: answer.status });
        continue;
      }
      verdicts.push(...judgeBatch(batch, answer.body, answer.status));
    }
    return verdicts.sort((a, b) => a.index - b.index);
  }

  /** `GET usage/failed`: records the server failed to load. */
  async getFailed(): Promise<unknown> {
    return this.getJson('usage/failed');
  }

  /** `GET usage/status`: per-resource counts. */
  async getStatus(): Promise<unknown> {
    return this.getJson('usage/status');
  }

  /** `GET usage/failed`, read: each record with its FailedRecordID and reason. */
  async failedRecords(): Promise<FailedUsageRecord[]> {
    return this.readAnswer(async () => readFailedRecords(await this.getJson('usage/failed')), 'usage/failed');
  }

  /** `GET usage/status`, read: per resource, the counts and the failures grouped by error. */
  async usageStatus(): Promise<UsageStatusResource[]> {
    return this.readAnswer(async () => readUsageStatus(await this.getJson('usage/status')), 'usage/status');
  }

  /**
   * `DELETE usage/failed/{ids}` (ids comma-separated, as amieclient's clear_failed_records sends
   * them), a hundred ids per request to keep the URL short. Throws UsageApiError on a refusal;
   * ids cleared by earlier requests stay cleared.
   */
  async clearFailed(ids: readonly string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 100) {
      const path = `usage/failed/${ids
        .slice(i, i + 100)
        .map(encodeURIComponent)
        .join(',')}`;
      const answer = await this.send('DELETE', path);
      if (answer.status < 200 || answer.status >= 300) {
        throw new UsageApiError(
          `DELETE ${this.url(path)}: HTTP ${answer.status}: ${messageOf(answer.body) ?? 'no message'}`,
          answer.status,
        );
      }
    }
  }

  private async readAnswer<T>(read: () => Promise<T>, path: string): Promise<T> {
    try {
      return await read();
    } catch (err) {
      if (err instanceof UsageAnswerError)
        throw new UsageApiError(`${this.url(path)}: ${err.message}`, 200, { cause: err });
      throw err;
    }
  }

  private async getJson(path: string): Promise<unknown> {
    const answer = await this.send('GET', path);
    if (answer.status >= 400) {
      throw new UsageApiError(
        `GET ${this.url(path)}: HTTP ${answer.status}: ${messageOf(answer.body) ?? 'no message'}`,
        answer.status,
      );
    }
    return answer.body;
  }

  private url(path: string): string {
    return new URL(path, this.base).toString();
  }

  /** One request with retries; returns the first non-retryable answer (2xx or 4xx). */
  private async send(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown; isJson: boolean; text: string }> {
    const url = this.url(path);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    try {
      const answer = await fetchWithRetries(
        this.fetchFn,
        url,
        {
          method,
          headers: accessHeaders(this.opts.site, this.opts.apiKey, payload !== undefined),
          body: payload,
        },
        {
          timeoutMs: this.opts.timeoutMs ?? 60_000,
          retries: this.opts.maxRetries ?? 5,
          retryBaseMs: this.opts.retryBaseMs ?? 1000,
          maxResponseBytes: this.opts.maxResponseBytes,
        },
        { onRetry: this.opts.onRetry },
      );
      return answer;
    } catch (err) {
      if (err instanceof HttpRetriesExhausted || err instanceof HttpAnswerRefused) {
        throw new UsageApiError(`${method} ${url} ${err.message}`, err.status, { cause: err });
      }
      throw err;
    }
  }
}

/**
 * The shape of a Usage API answer to a POST: a JSON object with its `Message` (amieclient reads
 * it unconditionally) or a list of failed records. An empty body, an array or a page is not one.
 */
function isUsageAnswer(body: unknown, isJson: boolean): boolean {
  if (!isJson || !body || typeof body !== 'object' || Array.isArray(body)) return false;
  const o = body as Record<string, unknown>;
  return typeof o.Message === 'string' || Array.isArray(o.ValidationFailedRecords) || Array.isArray(o.FailedRecords);
}

/** The text of a ValidationFailedRecords entry that says why. */
function failureReason(entry: unknown): string {
  if (typeof entry === 'string') return entry;
  if (entry && typeof entry === 'object') {
    const o = entry as Record<string, unknown>;
    for (const k of [
      'Error',
      'Errors',
      'ValidationError',
      'ValidationErrors',
      'Reason',
      'Message',
      'error',
      'errors',
      'message',
    ]) {
      const v = o[k];
      if (v === undefined || v === null) continue;
      if (typeof v === 'string') return v;
      if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('; ');
      return JSON.stringify(v);
    }
  }
  return JSON.stringify(entry);
}

/** The record an entry names: by LocalReference when given, else LocalRecordID, at top level or under Record. */
function entryIds(entry: unknown): { localRecordId?: string; localReference?: string } {
  if (!entry || typeof entry !== 'object') return {};
  const o = entry as Record<string, unknown>;
  const inner = [o, o.Record, o.record, o.Data].find(
    (x) => x && typeof x === 'object' && ('LocalRecordID' in x || 'LocalReference' in x),
  ) as Record<string, unknown> | undefined;
  if (!inner) return {};
  const id = inner.LocalRecordID;
  const ref = inner.LocalReference;
  return {
    localRecordId: id === undefined || id === null ? undefined : String(id),
    localReference: typeof ref === 'string' ? ref : undefined,
  };
}

function judgeBatch(
  batch: ReadonlyArray<{ record: ComputeRecord; index: number }>,
  body: unknown,
  status: number,
): RecordVerdict[] {
  // amieclient reads ValidationFailedRecords and writes FailedRecords: either names the failures.
  const answer = body && typeof body === 'object' ? (body as Record<string, unknown>) : undefined;
  const failedEntries = answer ? (answer.ValidationFailedRecords ?? answer.FailedRecords) : undefined;
  const failed = new Map<number, string>();
  const unmatched: string[] = [];
  if (Array.isArray(failedEntries)) {
    for (const entry of failedEntries) {
      const ids = entryIds(entry);
      const hits = batch.filter((b) =>
        ids.localReference !== undefined && b.record.LocalReference !== undefined
          ? b.record.LocalReference === ids.localReference
          : ids.localRecordId !== undefined && b.record.LocalRecordID === ids.localRecordId,
      );
      if (hits.length === 0) unmatched.push(failureReason(entry));
      for (const h of hits) failed.set(h.index, failureReason(entry));
    }
  }
  return batch.map((b) => {
    const reason = failed.get(b.index);
    if (reason !== undefined) return { index: b.index, accepted: false, reason, httpStatus: status };
    // A failure the server did not tie to a record leaves every record of the body in doubt;
    // calling them failed lets an operator see and resend them rather than trusting a guess.
    if (unmatched.length > 0) {
      return {
        index: b.index,
        accepted: false,
        reason: `the server reported failures without naming the record: ${unmatched.join('; ').slice(0, 500)}`,
        httpStatus: status,
      };
    }
    return { index: b.index, accepted: true, httpStatus: status };
  });
}
