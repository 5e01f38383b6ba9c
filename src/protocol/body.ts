/**
 * A packet's body: the (tag, subtag, seq, value) rows of `data_tbl`, and the same body as the
 * REST API's JSON. Building a body never throws, because bodies come from the other side of the
 * protocol: what does not fit the model is kept as a Problem naming the tag, so the site can
 * answer with a failure that says what was wrong instead of crashing on the packet.
 */
import type { DataRow } from './ids.js';
import { LIST_TAGS, compositeSubtags } from './spec.js';

export type TagValue = string | string[] | Array<Record<string, string>>;
export type JsonBody = Record<string, TagValue>;

export interface Problem {
  /** The tag the problem is about, when there is one. */
  tag?: string;
  /** A readable sentence; it starts with the tag when there is one. */
  message: string;
}

function problem(tag: string | undefined, message: string): Problem {
  return tag === undefined ? { message } : { tag, message: `${tag}: ${message}` };
}

function compareRows(a: DataRow, b: DataRow): number {
  if (a.tag !== b.tag) return a.tag < b.tag ? -1 : 1;
  if (a.seq !== b.seq) return a.seq - b.seq;
  if (a.subtag === b.subtag) return 0;
  if (a.subtag === null) return -1;
  if (b.subtag === null) return 1;
  return a.subtag < b.subtag ? -1 : 1;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Sets an own, enumerable property. Tag and subtag names are packet text: a plain assignment of
 * `__proto__` would replace the object's prototype instead of storing the value.
 */
function setOwn<T>(object: Record<string, T>, key: string, value: NoInfer<T>): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return undefined;
}

export class PacketBody {
  /** Rows per tag, each list sorted by seq then subtag. */
  readonly #rows = new Map<string, DataRow[]>();
  readonly #problems: Problem[] = [];

  private constructor() {}

  /** Structural problems found while reading the body (rows or JSON). */
  get problems(): readonly Problem[] {
    return this.#problems;
  }

  static fromRows(rows: readonly DataRow[]): PacketBody {
    return PacketBody.#reading((body) => body.#readRows(rows));
  }

  static fromJSON(json: unknown): PacketBody {
    return PacketBody.#reading((body) => {
      if (!isPlainObject(json)) {
        body.#problems.push(problem(undefined, `the packet body must be a JSON object of tags, got ${describe(json)}`));
        return;
      }
      body.#readTags(json);
    });
  }

  static fromTags(tags: Record<string, TagValue | undefined | null>): PacketBody {
    return PacketBody.#reading((body) => body.#readTags(tags));
  }

  /**
   * The promise that building a body never throws, kept even against a bug here: whatever
   * escapes becomes a problem of this one body (its packet is answered with a failure) instead
   * of an error that would stop the batch, and with it every other packet of the run.
   */
  static #reading(read: (body: PacketBody) => void): PacketBody {
    const body = new PacketBody();
    try {
      read(body);
    } catch (err) {
      body.#rows.clear();
      body.#problems.push(
        problem(undefined, `the body cannot be read: ${err instanceof Error ? err.message : String(err)}`),
      );
    }
    return body;
  }

  #readRows(rows: readonly DataRow[]): void {
    const seen = new Set<string>();
    for (const [index, raw] of rows.entries()) {
      const tag = raw.tag;
      if (tag === null || tag === undefined || String(tag).trim() === '') {
        this.#problems.push(
          problem(
            undefined,
            `data row ${index + 1} has no tag (subtag ${raw.subtag ?? 'null'}, seq ${raw.seq}, value ${JSON.stringify(raw.value)})`,
          ),
        );
        continue;
      }
      const seq = Number(raw.seq);
      if (!Number.isInteger(seq) || seq < 0) {
        this.#problems.push(problem(tag, `seq ${JSON.stringify(raw.seq)} is not a non-negative integer`));
        continue;
      }
      const subtag = raw.subtag ?? null;
      const key = `${tag}\u0000${seq}\u0000${subtag === null ? '\u0001' : `=${subtag}`}`;
      if (seen.has(key)) {
        this.#problems.push(
          problem(
            tag,
            `duplicate row for seq ${seq}${subtag === null ? '' : ` subtag ${subtag}`}; the first one is kept`,
          ),
        );
        continue;
      }
      seen.add(key);
      const row: DataRow = { tag, subtag, seq, value: raw.value ?? null };
      const list = this.#rows.get(tag);
      if (list) list.push(row);
      else this.#rows.set(tag, [row]);
    }
    for (const list of this.#rows.values()) list.sort(compareRows);
    this.#checkStructure();
  }

  #readTags(tags: Record<string, unknown>): void {
    for (const [tag, value] of Object.entries(tags)) {
      if (value === undefined || value === null) continue;
      if (tag.trim() === '') {
        this.#problems.push(
          problem(undefined, `the body has a tag with an empty name (value ${JSON.stringify(value)})`),
        );
        continue;
      }
      const text = scalarText(value);
      if (text !== undefined) {
        this.#rows.set(tag, [{ tag, subtag: null, seq: 0, value: text }]);
      } else if (Array.isArray(value)) {
        this.#readArray(tag, value);
      } else if (isPlainObject(value)) {
        // A lone object is taken as the only entry of a composite tag.
        this.#readArray(tag, [value]);
      } else {
        this.#problems.push(
          problem(
            tag,
            `unsupported value ${describe(value)}; expected a string, an array of strings or an array of objects`,
          ),
        );
      }
    }
    this.#checkStructure();
  }

  #readArray(tag: string, values: readonly unknown[]): void {
    const rows: DataRow[] = [];
    const objects = values.filter(isPlainObject).length;
    if (objects > 0 && objects < values.length) {
      this.#problems.push(
        problem(
          tag,
          'the array mixes strings and objects; expected all strings (a list) or all objects (composite entries)',
        ),
      );
      return;
    }
    for (const [seq, item] of values.entries()) {
      if (isPlainObject(item)) {
        for (const [subtag, part] of Object.entries(item)) {
          if (part === undefined || part === null) continue;
          const text = scalarText(part);
          if (text === undefined) {
            this.#problems.push(
              problem(tag, `entry ${seq} has ${describe(part)} for subtag ${subtag}; expected a string`),
            );
            continue;
          }
          rows.push({ tag, subtag, seq, value: text });
        }
      } else {
        const text = scalarText(item);
        if (text === undefined) {
          this.#problems.push(problem(tag, `item ${seq} is ${describe(item)}; expected a string`));
          continue;
        }
        rows.push({ tag, subtag: null, seq, value: text });
      }
    }
    if (rows.length > 0) this.#rows.set(tag, rows.sort(compareRows));
  }

  /** Seq gaps, subtags where none belong and composite entries missing a part. */
  #checkStructure(): void {
    for (const [tag, rows] of this.#rows) {
      const seqs = [...new Set(rows.map((r) => r.seq))].sort((a, b) => a - b);
      const gaps = seqGaps(seqs);
      if (gaps.length > 0) {
        const which =
          gaps.length === 1 && !gaps[0]!.includes('-') ? `seq ${gaps[0]} is` : `seqs ${gaps.join(', ')} are`;
        this.#problems.push(problem(tag, `${which} missing (rows have ${abbreviate(seqs)})`));
      }
      const parts = compositeSubtags(tag);
      if (parts) {
        for (const seq of seqs) {
          const entry = rows.filter((r) => r.seq === seq);
          if (entry.some((r) => r.subtag === null)) {
            this.#problems.push(problem(tag, `row at seq ${seq} has no subtag; expected ${parts.join(' and ')}`));
          }
          const absent = parts.filter((p) => !entry.some((r) => r.subtag === p));
          if (absent.length > 0) this.#problems.push(problem(tag, `entry at seq ${seq} has no ${absent.join(' or ')}`));
        }
      } else if (LIST_TAGS.has(tag)) {
        for (const r of rows) {
          if (r.subtag !== null)
            this.#problems.push(problem(tag, `row at seq ${r.seq} has subtag ${r.subtag}, but a list tag has none`));
        }
      }
    }
  }

  /** Rows in a stable order: by tag, then seq, then subtag (null first). */
  toRows(): DataRow[] {
    return this.tags().flatMap((tag) => this.#rows.get(tag)!.map((r) => ({ ...r })));
  }

  /**
   * The REST shape. List tags are always arrays and composite tags always arrays of objects, so
   * a reader never has to guess; a tag the protocol does not describe takes the shape its rows
   * have. Null values have no JSON form and are left out.
   */
  toJSON(): JsonBody {
    const json: JsonBody = {};
    for (const tag of this.tags()) {
      const rows = this.#rows.get(tag)!;
      if (compositeSubtags(tag) || rows.some((r) => r.subtag !== null)) {
        setOwn(json, tag, this.getEntries(tag));
      } else if (LIST_TAGS.has(tag) || rows.length > 1 || rows[0]!.seq > 0) {
        setOwn(json, tag, this.getList(tag));
      } else if (rows[0]!.value !== null) {
        setOwn(json, tag, rows[0]!.value);
      }
    }
    return json;
  }

  /** Tags present in the body, sorted. */
  tags(): string[] {
    return [...this.#rows.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** True when the tag is present with at least one value that is not null, empty or blank. */
  has(tag: string): boolean {
    return (this.#rows.get(tag) ?? []).some((r) => r.value !== null && r.value.trim() !== '');
  }

  /** The tag's single value: its first subtag-less row by seq (for a list, the first item). */
  get(tag: string): string | undefined {
    return this.#rows.get(tag)?.find((r) => r.subtag === null)?.value ?? undefined;
  }

  /** All values by seq; null values are left out, empty strings kept. */
  getList(tag: string): string[] {
    return (this.#rows.get(tag) ?? []).filter((r) => r.subtag === null && r.value !== null).map((r) => r.value!);
  }

  /** Composite entries in seq order, each keyed by subtag. */
  getEntries(tag: string): Array<Record<string, string>> {
    const bySeq = new Map<number, Record<string, string>>();
    for (const r of this.#rows.get(tag) ?? []) {
      if (r.subtag === null || r.value === null) continue;
      let entry = bySeq.get(r.seq);
      if (!entry) bySeq.set(r.seq, (entry = {}));
      setOwn(entry, r.subtag, r.value);
    }
    return [...bySeq.values()];
  }

  /** Sets a single value; undefined deletes the tag. */
  set(tag: string, value: string | undefined): this {
    if (value === undefined) return this.delete(tag);
    this.#rows.set(tag, [{ tag, subtag: null, seq: 0, value }]);
    return this;
  }

  setList(tag: string, values: readonly string[]): this {
    if (values.length === 0) return this.delete(tag);
    this.#rows.set(
      tag,
      values.map((value, seq) => ({ tag, subtag: null, seq, value })),
    );
    return this;
  }

  setEntries(tag: string, entries: ReadonlyArray<Record<string, string>>): this {
    const rows: DataRow[] = [];
    entries.forEach((entry, seq) => {
      for (const [subtag, value] of Object.entries(entry)) {
        if (value !== undefined && value !== null) rows.push({ tag, subtag, seq, value: String(value) });
      }
    });
    if (rows.length === 0) return this.delete(tag);
    this.#rows.set(tag, rows.sort(compareRows));
    return this;
  }

  delete(tag: string): this {
    this.#rows.delete(tag);
    return this;
  }

  clone(): PacketBody {
    const copy = new PacketBody();
    for (const [tag, rows] of this.#rows)
      copy.#rows.set(
        tag,
        rows.map((r) => ({ ...r })),
      );
    copy.#problems.push(...this.#problems.map((p) => ({ ...p })));
    return copy;
  }
}

/** Missing seqs as "2" or "4-9", without enumerating them: seq comes from the other side. */
function seqGaps(sorted: readonly number[]): string[] {
  const gaps: string[] = [];
  let expected = 0;
  for (const seq of sorted) {
    if (seq > expected) gaps.push(seq - 1 === expected ? String(expected) : `${expected}-${seq - 1}`);
    expected = seq + 1;
  }
  return gaps;
}

function abbreviate(seqs: readonly number[]): string {
  return seqs.length <= 12
    ? seqs.join(', ')
    : `${seqs.slice(0, 10).join(', ')}, … ${seqs[seqs.length - 1]} (${seqs.length} in all)`;
}
