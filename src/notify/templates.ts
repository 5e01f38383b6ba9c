import type { PacketResult, RunSummary } from '../dispatch/summary.js';

/**
 * The texts of the Slack messages: a template per kind of message, with {placeholders} filled
 * from the packet's result or the pass's summary. No I/O here.
 */

export type TemplateName = 'packet' | 'failure' | 'deferral' | 'summary';

const PACKET_FIELDS = [
  'site',
  'type',
  'transactionId',
  'packetRecId',
  'outcome',
  'reason',
  'replyType',
  'keys',
  'result',
  'durationMs',
  'runId',
] as const;

const SUMMARY_FIELDS = [
  'site',
  'runId',
  'taken',
  'answered',
  'failed',
  'invalid',
  'deferred',
  'errors',
  'ignored',
  'closed',
  'unhandled',
  'unhandledTypes',
  'durationMs',
  'duration',
] as const;

/** The placeholders each template may use (packet templates also any key tag, e.g. {ProjectID}). */
export const TEMPLATE_FIELDS: Record<TemplateName, readonly string[]> = {
  packet: PACKET_FIELDS,
  failure: PACKET_FIELDS,
  deferral: PACKET_FIELDS,
  summary: SUMMARY_FIELDS,
};

/** Slack mrkdwn: `*bold*`; `{result}` says in words what happened, so one template reads right for every outcome. */
export const DEFAULT_TEMPLATES: Record<TemplateName, string> = {
  packet: ':white_check_mark: {site}: *{type}* transaction {transactionId} ({keys}): {result}',
  failure: ':x: {site}: *{type}* transaction {transactionId} ({keys}): {result}',
  deferral: ':hourglass_flowing_sand: {site}: *{type}* transaction {transactionId} ({keys}): {result}',
  summary:
    ':bar_chart: {site}: {taken} packet(s) in {duration}: {answered} answered, {failed} failed ({invalid} invalid), ' +
    '{deferred} deferred ({errors} by handler errors), {ignored} ignored, {closed} closed, unhandled types: {unhandledTypes}',
};

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9]*)\}/g;

/** The placeholder names a template uses, in order. */
export function placeholdersOf(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

/**
 * Fills a template. Values come from packets (hostile text), so they are made inert as Slack
 * text (see escapeMrkdwn). The template's own text is the site's and is left as written.
 */
export function renderTemplate(template: string, values: Record<string, string | number | undefined>): string {
  return template.replace(PLACEHOLDER, (_, name: string) =>
    escapeMrkdwn(String((Object.hasOwn(values, name) ? values[name] : undefined) ?? '')),
  );
}

/**
 * Look-alikes for the mrkdwn markers, which Slack lets nothing escape: shown almost the same,
 * never paired into bold, italics, strike-through or code.
 */
const MARKER_LOOKALIKES: ReadonlyMap<string, string> = new Map([
  ['*', '\u2217'], // ASTERISK OPERATOR
  ['_', '\uff3f'], // FULLWIDTH LOW LINE
  ['~', '\u223c'], // TILDE OPERATOR
  ['`', '\u02cb'], // MODIFIER LETTER GRAVE ACCENT
]);
/** A marker Slack could pair: one not inside a word (`request_project_create` keeps its underscores). */
const MARKER = /(?<![\p{L}\p{N}])[*_~`]|[*_~`](?![\p{L}\p{N}])/gu;
/** The dot of a host name (`evil.example`, `www.x.org`, `a@b.com`) and a scheme's `://`, which Slack turns into links. */
const LINK_DOT = /(?<=[\p{L}\p{N}-])\.(?=\p{L})/gu;
const SCHEME = /:(?=\/\/)/g;

/**
 * Packet text as Slack mrkdwn that shows it and does nothing else: `&`, `<` and `>` escaped as
 * Slack requires (no `<!channel>` ping, no forged `<url|label>` link), formatting markers outside
 * words replaced by look-alikes, and host names and URLs broken with look-alike dots and colons
 * (U+2024, U+A789) so that Slack does not turn them into links.
 */
export function escapeMrkdwn(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(MARKER, (m) => MARKER_LOOKALIKES.get(m)!)
    .replace(LINK_DOT, '\u2024')
    .replace(SCHEME, '\ua789');
}

/** Which template a packet's outcome uses. */
export function templateFor(outcome: PacketResult['outcome']): TemplateName {
  switch (outcome) {
    case 'fail':
    case 'invalid':
    case 'error':
    case 'unhandled':
      return 'failure';
    case 'defer':
      return 'deferral';
    default:
      return 'packet';
  }
}

/** What happened to the packet, in words; the reason or error is part of it. */
export function describeResult(r: Pick<PacketResult, 'outcome' | 'reason' | 'replyType'>): string {
  const why = r.reason ? `: ${r.reason}` : '';
  switch (r.outcome) {
    case 'reply':
      return `answered with ${r.replyType ?? 'a reply'}`;
    case 'fail':
      return `answered with a failure inform_transaction_complete${why}`;
    case 'invalid':
      return `invalid packet, answered with a failure inform_transaction_complete${why}`;
    case 'defer':
      return `deferred, offered again next run${why}`;
    case 'error':
      // The dispatcher's reason already starts with "handler error (attempt n of m)": say it once.
      return r.reason?.startsWith('handler error')
        ? `deferred, offered again next run${why}`
        : `handler error, deferred${why}`;
    case 'ignore':
      return `ignored${why}`;
    case 'unhandled':
      return `the handler does not implement this packet type; left pending${why}`;
    case 'closed':
      return 'transaction closed by the central site';
    default:
      return `${String(r.outcome)}${why}`;
  }
}

export function packetValues(
  r: PacketResult,
  site: string,
  runId: string,
): Record<string, string | number | undefined> {
  return {
    ...r.tags,
    ...r.keys,
    site,
    type: r.type,
    transactionId: r.transactionId,
    packetRecId: r.packetRecId,
    outcome: r.outcome,
    reason: r.reason,
    replyType: r.replyType,
    keys: Object.entries(r.keys)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
    result: describeResult(r),
    durationMs: r.durationMs,
    runId,
  };
}

export function summaryValues(s: RunSummary, site: string): Record<string, string | number | undefined> {
  const unhandledTypes = Object.entries(s.unhandled).map(([t, n]) => `${t} ×${n}`);
  return {
    site,
    runId: s.runId,
    taken: s.taken,
    answered: s.answered,
    // Counted as `amie process` prints them: failed includes the invalid, deferred those deferred by handler errors.
    failed: s.failed + s.invalid,
    invalid: s.invalid,
    deferred: s.deferred + s.errors,
    errors: s.errors,
    ignored: s.ignored,
    closed: s.closed,
    unhandled: Object.values(s.unhandled).reduce((a, b) => a + b, 0),
    unhandledTypes: unhandledTypes.join(', ') || 'none',
    durationMs: s.durationMs,
    duration: formatDuration(s.durationMs),
  };
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Whether `now` falls in the window [from, to) read on the clock of `timezone` (default: the machine's). */
export function inQuietHours(now: Date, window: { from: string; to: string; timezone?: string }): boolean {
  const minutes = minutesOfDay(now, window.timezone);
  const from = toMinutes(window.from);
  const to = toMinutes(window.to);
  return from < to ? minutes >= from && minutes < to : minutes >= from || minutes < to;
}

function minutesOfDay(now: Date, timeZone?: string): number {
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone,
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(now);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return get('hour') * 60 + get('minute');
}

function toMinutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return h! * 60 + m!;
}
