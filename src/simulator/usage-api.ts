/**
 * The ACCESS Usage API as the simulator plays it, in the shapes amieclient reads and writes:
 * `POST usage/` loads records and answers `{Message, ValidationFailedRecords}`, refusing bodies
 * over 1024 KiB with 413; `GET usage/failed` lists records that failed, each with a
 * `FailedRecordID`, under both `ValidationFailedRecords` (what amieclient reads) and
 * `FailedRecords` (what it writes); `DELETE usage/failed/{ids}` clears them; `GET usage/status`
 * gives per resource what was loaded, and the failures grouped by error,
 * `Errors: [{Error, Records}]`. Refusals carry the reason under `error`. Records are checked the
 * way the real service checks them (required fields, times, a numeric Charge, a known resource),
 * and a record sent again replaces the first (same Resource and LocalRecordID), so a resend never
 * counts a job twice.
 */
import { isIsoDateTime } from '../protocol/index.js';

export const USAGE_BODY_LIMIT = 1024 * 1024;
const USAGE_TYPES = ['compute', 'storage', 'adjustment'] as const;
type UsageType = (typeof USAGE_TYPES)[number];

/** A POST the simulator received, kept so a test can see what the site sent. */
export interface UsagePost {
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
  body: { UsageType: string; Records: Array<Record<string, unknown>> };
}

export interface UsageAnswer {
  status: number;
  body: unknown;
}

const REQUIRED: Record<UsageType, readonly string[]> = {
  compute: ['Username', 'LocalProjectID', 'LocalRecordID', 'Resource', 'SubmitTime', 'StartTime', 'EndTime', 'Charge'],
  storage: ['Username', 'LocalProjectID', 'LocalRecordID', 'Resource', 'CollectionTime', 'Charge'],
  adjustment: ['AdjustmentType', 'Username', 'LocalProjectID', 'LocalRecordID', 'Resource', 'StartTime', 'Charge'],
};
const TIMES = ['SubmitTime', 'StartTime', 'EndTime', 'CollectionTime'];

interface Loaded {
  usageType: UsageType;
  record: Record<string, unknown>;
}

export class UsageApiState {
  /** Every POST usage/ that reached the server, in order, refused and faulted ones included. */
  readonly received: UsagePost[] = [];
  /** Loaded records by Resource and LocalRecordID. */
  readonly loaded = new Map<string, Loaded>();
  /** Records that failed to load, with the reason (a later good copy, or a clear, removes them). */
  readonly failed = new Map<string, FailedRecord>();
  /** LocalRecordIDs the server refuses whatever they carry, with the reason (to test failure handling). */
  readonly refuse = new Map<string, string>();

  #nextFailedRecordId = 1;

  /** @param resources the resources of the site; records naming another one fail. */
  constructor(readonly resources: readonly string[]) {}

  /** Every record loaded so far, in the order last loaded. */
  get accepted(): Array<Record<string, unknown>> {
    return [...this.loaded.values()].map((l) => l.record);
  }

  /** Forgets everything: what was received, loaded, failed and is to be refused. */
  reset(): void {
    this.received.length = 0;
    this.loaded.clear();
    this.failed.clear();
    this.refuse.clear();
  }

  /** Notes a POST as it arrives, before anything decides its answer. */
  receive(headers: UsagePost['headers'], raw: Buffer): void {
    let body: UsagePost['body'] = { UsageType: '', Records: [] };
    try {
      const json = JSON.parse(raw.toString('utf8')) as unknown;
      if (isRecord(json))
        body = {
          UsageType: String(json.UsageType ?? ''),
          Records: Array.isArray(json.Records) ? json.Records.filter(isRecord) : [],
        };
    } catch {
      /* kept as empty: post() answers it */
    }
    this.received.push({ headers, bytes: raw.length, body });
  }

  /** `POST usage/`: loads what passes the checks, reports the rest per record. */
  post(raw: Buffer): UsageAnswer {
    if (raw.length > USAGE_BODY_LIMIT) {
      return {
        status: 413,
        body: {
          error: `request body of ${raw.length} bytes is larger than the 1024 KiB the Usage API accepts: send smaller batches`,
        },
      };
    }
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      return { status: 400, body: { error: `malformed JSON: ${(err as Error).message}` } };
    }
    const o = isRecord(json) ? json : {};
    const records = Array.isArray(o.Records) ? (o.Records as unknown[]) : undefined;
    const usageType = String(o.UsageType ?? '').toLowerCase() as UsageType;
    if (!USAGE_TYPES.includes(usageType)) {
      return {
        status: 400,
        body: { error: `UsageType ${JSON.stringify(o.UsageType ?? null)} is not one of compute, storage, adjustment` },
      };
    }
    if (!records) return { status: 400, body: { error: 'Records must be an array of usage records' } };

    const failures: Array<Record<string, unknown>> = [];
    for (const [i, item] of records.entries()) {
      if (!isRecord(item)) {
        failures.push({ UsageType: capitalize(usageType), Error: `Records[${i}] is not an object` });
        continue;
      }
      const error = this.refuse.get(String(item.LocalRecordID)) ?? this.check(usageType, item);
      const key = `${String(item.Resource)}\u0000${String(item.LocalRecordID)}`;
      if (error) {
        const failed: FailedRecord = { id: this.#nextFailedRecordId++, usageType, record: item, error };
        this.failed.set(key, failed);
        failures.push(failedRecordJson(failed));
      } else {
        this.failed.delete(key);
        this.loaded.delete(key); // a resent record replaces the first
        this.loaded.set(key, { usageType, record: item });
      }
    }
    return {
      status: 200,
      body: {
        Message: `${records.length - failures.length} of ${records.length} ${usageType} record(s) loaded`,
        ValidationFailedRecords: failures,
      },
    };
  }

  /** `GET usage/failed`: under both keys, since amieclient reads one and writes the other. */
  failedRecords(): UsageAnswer {
    const records = [...this.failed.values()].map(failedRecordJson);
    return {
      status: 200,
      body: {
        Message: `${records.length} record(s) failed to load`,
        ValidationFailedRecords: records,
        FailedRecords: records,
      },
    };
  }

  /** `DELETE usage/failed/{ids}`: ids comma-separated, as amieclient's clear_failed_records sends them. */
  clearFailed(idList: string): UsageAnswer {
    const ids = idList
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (ids.length === 0)
      return {
        status: 400,
        body: { error: 'name the failed records to clear: DELETE usage/failed/{FailedRecordID,...}' },
      };
    const bad = ids.filter((id) => !/^\d{1,12}$/.test(id));
    if (bad.length > 0)
      return {
        status: 400,
        body: { error: `${bad.map((b) => JSON.stringify(b)).join(', ')} is not a FailedRecordID` },
      };
    const byId = new Map([...this.failed].map(([key, f]) => [f.id, key]));
    const cleared: number[] = [];
    const unknown: string[] = [];
    for (const id of new Set(ids.map(Number))) {
      const key = byId.get(id);
      if (key === undefined) unknown.push(String(id));
      else {
        this.failed.delete(key);
        cleared.push(id);
      }
    }
    if (cleared.length === 0)
      return { status: 404, body: { error: `no failed record with FailedRecordID ${unknown.join(', ')}` } };
    const rest = unknown.length > 0 ? `; no failed record with FailedRecordID ${unknown.join(', ')}` : '';
    return { status: 200, body: { Message: `${cleared.length} failed record(s) cleared${rest}` } };
  }

  /** `GET usage/status`: per resource, what was loaded and what failed. */
  status(): UsageAnswer {
    type Group = { Error: string; UsageType: string; Records: Array<Record<string, unknown>> };
    const byResource = new Map<
      string,
      { LoadedRecordCount: number; FailedJobCount: number; TotalCharge: number; errors: Map<string, Group> }
    >();
    const entry = (resource: unknown) => {
      const name = String(resource);
      let e = byResource.get(name);
      if (!e)
        byResource.set(name, (e = { LoadedRecordCount: 0, FailedJobCount: 0, TotalCharge: 0, errors: new Map() }));
      return e;
    };
    for (const r of this.resources) entry(r);
    for (const { record } of this.loaded.values()) {
      const e = entry(record.Resource);
      e.LoadedRecordCount++;
      e.TotalCharge += Number(record.Charge);
    }
    // Failures grouped by error, each group a usage message with its records (amieclient's UsageMessageError).
    for (const f of this.failed.values()) {
      const e = entry(f.record.Resource);
      e.FailedJobCount++;
      const group = `${f.usageType}\u0000${f.error}`;
      let g = e.errors.get(group);
      if (!g) e.errors.set(group, (g = { Error: f.error, UsageType: capitalize(f.usageType), Records: [] }));
      g.Records.push({ ...f.record, UsageType: capitalize(f.usageType), FailedRecordID: f.id });
    }
    return {
      status: 200,
      body: [...byResource].map(([Resource, { errors, ...e }]) => ({
        Resource,
        ...e,
        TotalCharge: round(e.TotalCharge),
        Errors: [...errors.values()],
      })),
    };
  }

  /** Why the real service would refuse the record, or undefined. */
  private check(usageType: UsageType, r: Record<string, unknown>): string | undefined {
    const problems: string[] = [];
    for (const field of REQUIRED[usageType]) {
      const v = r[field];
      if (v === undefined || v === null || (typeof v === 'string' && v.trim() === ''))
        problems.push(`${field} is required`);
    }
    for (const field of TIMES) {
      const v = r[field];
      if (typeof v === 'string' && v.trim() !== '' && !isIsoDateTime(v))
        problems.push(`${field} ${JSON.stringify(v)} is not an ISO 8601 time`);
    }
    if (r.Charge !== undefined && r.Charge !== null && !Number.isFinite(Number(r.Charge))) {
      problems.push(`Charge ${JSON.stringify(r.Charge)} is not a number`);
    }
    if (
      typeof r.Resource === 'string' &&
      r.Resource !== '' &&
      this.resources.length > 0 &&
      !this.resources.includes(r.Resource)
    ) {
      problems.push(
        `Resource ${JSON.stringify(r.Resource)} is not a resource of this site (${this.resources.join(', ')})`,
      );
    }
    if (r.Attributes !== undefined && !isRecord(r.Attributes)) problems.push('Attributes must be an object');
    return problems.length > 0 ? problems.join('; ') : undefined;
  }
}

interface FailedRecord {
  /** FailedRecordID: what DELETE usage/failed/{ids} names. */
  id: number;
  usageType: UsageType;
  record: Record<string, unknown>;
  error: string;
}

/** A failed record as amieclient's UsageRecordError reads it: the record with UsageType, Error and FailedRecordID. */
function failedRecordJson(f: FailedRecord): Record<string, unknown> {
  return { ...f.record, UsageType: capitalize(f.usageType), FailedRecordID: f.id, Error: f.error };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
