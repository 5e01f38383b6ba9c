/**
 * The Usage API's answers about records that failed, read in every shape the service and
 * amieclient use: failed records under `ValidationFailedRecords` (what amieclient reads) or
 * `FailedRecords` (what it writes), each a usage record with `Error` and `FailedRecordID`; the
 * status as a list of resources whose `Errors` are grouped by error (`[{Error, Records}]`), or
 * the older flat `[{LocalRecordID, Error}]`. The answer is outside text: anything that does not
 * fit is refused with a message, never half-believed.
 */

/** A record the Usage API failed to load. */
export interface FailedUsageRecord {
  /** What `DELETE usage/failed/{ids}` names; null when the server gave none. */
  failedRecordId: string | null;
  error: string;
  usageType: string | null;
  resource: string | null;
  localRecordId: string | null;
  localProjectId: string | null;
  username: string | null;
  /** The entry as the server sent it. */
  record: Record<string, unknown>;
}

export interface UsageStatusError {
  error: string;
  /** The failed records with this error, as the server sent them. */
  records: Array<Record<string, unknown>>;
}

export interface UsageStatusResource {
  resource: string;
  loadedRecordCount: number | null;
  failedJobCount: number | null;
  totalCharge: number | null;
  errors: UsageStatusError[];
}

/** An answer that does not have the shape the Usage API documents. */
export class UsageAnswerError extends Error {
  override name = 'UsageAnswerError';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An own field of a parsed answer (never one inherited from Object.prototype). */
function field(o: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(o, name) ? o[name] : undefined;
}

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

function count(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (isObject(v)) return `an object with keys ${Object.keys(v).slice(0, 10).join(', ') || 'none'}`;
  return v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 80);
}

/** The reason of a failed-record entry: `Error`, or what an older server called it. */
function reasonOf(o: Record<string, unknown>): string {
  for (const k of ['Error', 'error', 'Errors', 'ValidationError', 'Message', 'message']) {
    const v = field(o, k);
    if (v === undefined || v === null) continue;
    if (typeof v === 'string') return v;
    if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('; ');
    return JSON.stringify(v);
  }
  return 'no reason given';
}

function failedRecordOf(entry: unknown, where: string): FailedUsageRecord {
  if (!isObject(entry))
    throw new UsageAnswerError(`${where}: expected a failed usage record (an object), got ${describe(entry)}`);
  return {
    failedRecordId: text(field(entry, 'FailedRecordID')),
    error: reasonOf(entry),
    usageType: text(field(entry, 'UsageType')),
    resource: text(field(entry, 'Resource')),
    localRecordId: text(field(entry, 'LocalRecordID')),
    localProjectId: text(field(entry, 'LocalProjectID')),
    username: text(field(entry, 'Username')),
    record: entry,
  };
}

/** The failed records of a `GET usage/failed` (or `POST usage/`) answer. */
export function readFailedRecords(body: unknown, what = 'GET usage/failed'): FailedUsageRecord[] {
  let list: unknown = body;
  if (isObject(body)) {
    list = field(body, 'ValidationFailedRecords') ?? field(body, 'FailedRecords');
    // An answer that names neither key lists no failures (a POST that loaded everything).
    if (list === undefined && !Object.hasOwn(body, 'ValidationFailedRecords') && !Object.hasOwn(body, 'FailedRecords'))
      list = [];
  }
  if (!Array.isArray(list)) {
    throw new UsageAnswerError(
      `${what}: expected {"ValidationFailedRecords": [...]} or {"FailedRecords": [...]}, got ${describe(body)}`,
    );
  }
  return list.map((e, i) => failedRecordOf(e, `${what}: failed record ${i}`));
}

/** The per-resource status of a `GET usage/status` answer. */
export function readUsageStatus(body: unknown, what = 'GET usage/status'): UsageStatusResource[] {
  const list = isObject(body) && Array.isArray(field(body, 'result')) ? field(body, 'result') : body;
  if (!Array.isArray(list)) throw new UsageAnswerError(`${what}: expected a list of resources, got ${describe(body)}`);
  return list.map((r, i) => {
    if (!isObject(r)) throw new UsageAnswerError(`${what}: resource ${i}: expected an object, got ${describe(r)}`);
    const resource = text(field(r, 'Resource'));
    if (resource === null)
      throw new UsageAnswerError(
        `${what}: resource ${i}: Resource: expected a name, got ${describe(field(r, 'Resource'))}`,
      );
    const errors = field(r, 'Errors') ?? [];
    if (!Array.isArray(errors))
      throw new UsageAnswerError(`${what}: ${resource}: Errors: expected a list, got ${describe(errors)}`);
    return {
      resource,
      loadedRecordCount: count(field(r, 'LoadedRecordCount')),
      failedJobCount: count(field(r, 'FailedJobCount')),
      totalCharge: count(field(r, 'TotalCharge')),
      errors: groupErrors(errors, `${what}: ${resource}`),
    };
  });
}

/** `[{Error, Records: [...]}]` as it comes, or the flat `[{LocalRecordID, Error}]` grouped by error. */
function groupErrors(entries: unknown[], where: string): UsageStatusError[] {
  const groups = new Map<string, UsageStatusError>();
  for (const [i, e] of entries.entries()) {
    if (!isObject(e)) throw new UsageAnswerError(`${where}: Errors[${i}]: expected an object, got ${describe(e)}`);
    const error = reasonOf(e);
    const records = field(e, 'Records');
    let group = groups.get(error);
    if (!group) groups.set(error, (group = { error, records: [] }));
    if (records === undefined) {
      const { Error: _error, ...record } = e;
      group.records.push(record);
    } else if (Array.isArray(records)) {
      for (const [j, r] of records.entries()) {
        if (!isObject(r))
          throw new UsageAnswerError(
            `${where}: Errors[${i}].Records[${j}]: expected a usage record, got ${describe(r)}`,
          );
        group.records.push(r);
      }
    } else {
      throw new UsageAnswerError(`${where}: Errors[${i}].Records: expected a list, got ${describe(records)}`);
    }
  }
  return [...groups.values()];
}
