/**
 * Checks a body against its packet type and reports every problem at once, each naming its tag,
 * so that one failure reply tells the other side all that must be fixed.
 */
import type { PacketTypeName } from './ids.js';
import type { PacketBody, Problem } from './body.js';
import { DATE_TAGS, DURATION_TAGS, NUMERIC_TAGS, TIME_TAGS, specOf } from './spec.js';
import { escapeControls } from '../text.js';

/** data_tbl column widths: a longer tag or subtag cannot be stored. */
const MAX_TAG_LENGTH = 32;
const MAX_SUBTAG_LENGTH = 128;

/**
 * Values end up in site scripts' arguments, passwd comment fields, Slurm and mail, so a value no
 * real packet carries is refused: a one-line value (a name, a login, a DN) holds no control or
 * bidirectional-override characters and at most MAX_LINE_LENGTH characters; free text (an
 * abstract, a title, a message) may also hold tabs and line breaks, up to MAX_TEXT_LENGTH.
 */
const MAX_LINE_LENGTH = 1024;
const MAX_TEXT_LENGTH = 64 * 1024;
const FREE_TEXT_TAGS: ReadonlySet<string> = new Set(['Abstract', 'ProjectTitle', 'Message', 'Comment']);
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const TEXT_CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

const ACTION_TYPES = ['add', 'delete', 'replace'] as const;
const STATUS_CODES = ['Success', 'Failure'] as const;
const DETAIL_CODES = ['1', '2'] as const;

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?(?:Z|[+-](\d{2})(?::?(\d{2}))?)?$/;
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const DURATION =
  /^P(?=\d|T\d)(?:\d+(?:[.,]\d+)?Y)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?W)?(?:\d+(?:[.,]\d+)?D)?(?:T(?=\d)(?:\d+(?:[.,]\d+)?H)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?S)?)?$/;

function validDay(year: number, month: number, day: number): boolean {
  // Year 0 does not exist in the calendar PostgreSQL stores.
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** ISO 8601 calendar date, or a date and time with optional fraction and zone. */
export function isIsoDateTime(text: string): boolean {
  const date = DATE.exec(text);
  if (date) return validDay(Number(date[1]), Number(date[2]), Number(date[3]));
  const ts = TIMESTAMP.exec(text);
  if (!ts) return false;
  const [, y, mo, d, h, mi, s, oh, om] = ts;
  if (!validDay(Number(y), Number(mo), Number(d))) return false;
  if (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 60)) return false;
  return (oh === undefined || Number(oh) <= 14) && (om === undefined || Number(om) <= 59);
}

function codePoint(char: string): string {
  return `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

function isBlank(value: string | null): boolean {
  return value === null || value.trim() === '';
}

function quote(value: string): string {
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
}

export function validateBody(type: PacketTypeName, body: PacketBody): Problem[] {
  const spec = specOf(type);
  const problems: Problem[] = [...body.problems];
  const add = (tag: string, message: string) => problems.push({ tag, message: `${tag}: ${message}` });
  const rows = body.toRows();
  const rowsOf = (tag: string) => rows.filter((r) => r.tag === tag);

  for (const tag of spec.required) {
    const own = rowsOf(tag);
    if (own.length === 0) add(tag, 'required tag is missing');
    else if (own.every((r) => r.value === null)) add(tag, 'required tag has no value (null)');
    else if (own.every((r) => isBlank(r.value))) add(tag, 'required tag is empty');
  }

  const known = new Set([...spec.required, ...spec.allowed]);
  if (known.has('ResourceList') && rowsOf('ResourceList').length > 0) {
    const resources = body.getList('ResourceList');
    if (resources.length !== 1) {
      add(
        'ResourceList',
        `expected exactly one resource, got ${resources.length}${resources.length > 0 ? ` (${resources.join(', ')})` : ''}`,
      );
    }
  }

  if (type === 'request_user_modify' || type === 'notify_user_modify') {
    const action = body.get('ActionType');
    if (!isBlank(action ?? null) && !(ACTION_TYPES as readonly string[]).includes(action!)) {
      add('ActionType', `${quote(action!)} is not one of ${ACTION_TYPES.join(', ')}`);
    }
  }

  if (type === 'inform_transaction_complete') {
    const status = body.get('StatusCode');
    if (!isBlank(status ?? null) && !(STATUS_CODES as readonly string[]).includes(status!)) {
      add('StatusCode', `${quote(status!)} is not one of ${STATUS_CODES.join(', ')}`);
    }
    const detail = body.get('DetailCode');
    if (!isBlank(detail ?? null) && !(DETAIL_CODES as readonly string[]).includes(detail!.trim())) {
      add('DetailCode', `${quote(detail!)} is not one of ${DETAIL_CODES.join(', ')} (1 success, 2 failure)`);
    }
  }

  if (type === 'notify_person_duplicate') {
    for (const n of ['1', '2']) {
      if (!body.has(`GlobalID${n}`) && !body.has(`PersonID${n}`)) {
        add(`PersonID${n}`, `either GlobalID${n} or PersonID${n} is required`);
      }
    }
  }

  // Names are printed in logs, terminals and replies like values are: no real packet has a control in one.
  for (const tag of body.tags()) {
    const control = CONTROL.exec(tag);
    if (control) add(tag, `the tag name contains the control character ${codePoint(control[0])}`);
  }

  for (const row of rows) {
    const name = row.subtag === null ? row.tag : `${row.tag}/${row.subtag}`;
    const subtagControl = row.subtag === null ? null : CONTROL.exec(row.subtag);
    if (subtagControl)
      add(
        row.tag,
        `subtag ${quote(row.subtag!)} at seq ${row.seq} contains the control character ${codePoint(subtagControl[0])}`,
      );
    if (row.tag.length > MAX_TAG_LENGTH) add(row.tag, `tag name is longer than ${MAX_TAG_LENGTH} characters`);
    if (row.subtag !== null && row.subtag.length > MAX_SUBTAG_LENGTH) {
      add(row.tag, `subtag ${quote(row.subtag)} is longer than ${MAX_SUBTAG_LENGTH} characters`);
    }
    if (row.value === null) continue;
    if (row.value.includes('\u0000') || name.includes('\u0000')) {
      add(
        row.tag,
        `${row.subtag === null ? 'value' : `subtag ${row.subtag}`} at seq ${row.seq} contains a NUL character`,
      );
      continue;
    }
    // Blank optional values carry nothing to check; blank required ones are reported above.
    const value = row.value.trim();
    if (value === '') continue;
    const freeText = FREE_TEXT_TAGS.has(row.tag);
    const at = row.subtag ? ` (subtag ${row.subtag})` : '';
    if (value.length > (freeText ? MAX_TEXT_LENGTH : MAX_LINE_LENGTH)) {
      add(
        row.tag,
        `value${at} is ${value.length} characters long, more than the ${freeText ? MAX_TEXT_LENGTH : MAX_LINE_LENGTH} allowed`,
      );
      continue;
    }
    const control = (freeText ? TEXT_CONTROL : CONTROL).exec(value);
    if (control) {
      add(
        row.tag,
        `${quote(row.value)}${at} contains the control character ${codePoint(control[0])}${freeText ? '' : ' (a one-line value may hold none)'}`,
      );
      continue;
    }
    const isDate = DATE_TAGS.has(name);
    if ((isDate || TIME_TAGS.has(name)) && !isIsoDateTime(value)) {
      add(
        row.tag,
        `${quote(row.value)}${row.subtag ? ` (subtag ${row.subtag})` : ''} is not an ISO 8601 ${isDate ? 'date' : 'time'}, e.g. ${isDate ? '2024-07-01' : '2024-07-01T12:00:00Z'}`,
      );
    } else if (NUMERIC_TAGS.has(name) && !NUMBER.test(value)) {
      add(row.tag, `${quote(row.value)} is not a number`);
    } else if (DURATION_TAGS.has(name) && !DURATION.test(value)) {
      add(row.tag, `${quote(row.value)} is not an ISO 8601 duration, e.g. PT3600S`);
    }
  }

  return problems;
}

/** Tags the packet type does not name; a type the reference gives no tags for has none. */
export function unexpectedTags(type: PacketTypeName, body: PacketBody): string[] {
  const spec = specOf(type);
  if (spec.lenient) return [];
  const known = new Set([...spec.required, ...spec.allowed]);
  return body.tags().filter((tag) => !known.has(tag));
}

/** One line for logs and ITC messages; packet text quoted in it has its control characters escaped. */
export function formatProblems(problems: readonly Problem[]): string {
  return escapeControls(problems.map((p) => p.message).join('; '));
}
