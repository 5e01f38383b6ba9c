import { z } from 'zod';
import { once } from '../config/lazy-section.js';
import type { OutcomeKind } from '../dispatch/summary.js';
import { nearest } from '../config/nearest.js';
import { PACKET_SPECS } from '../protocol/spec.js';
import { TEMPLATE_FIELDS, placeholdersOf, type TemplateName } from './templates.js';

/**
 * The `notify:` section of the configuration. Kept here, beside the notifier that reads it;
 * the config schema only mounts it (and this file cannot borrow helpers from
 * src/config/schema.ts, which imports it).
 */

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Every outcome the dispatcher reports for a packet, in the order the README lists them. */
export const OUTCOME_KINDS = [
  'reply',
  'fail',
  'invalid',
  'defer',
  'error',
  'ignore',
  'unhandled',
  'closed',
] as const satisfies readonly OutcomeKind[];

/** Outcomes that need a person: the packet was answered with a failure, or is stuck until someone acts. */
export const FAILURE_OUTCOMES: ReadonlySet<OutcomeKind> = new Set<OutcomeKind>([
  'fail',
  'invalid',
  'error',
  'unhandled',
]);

/**
 * By default every outcome except the routine ones without a reply: an ignored packet (the
 * handler chose so, with its reason in the audit) and the incoming ITC that closes each transaction.
 */
export const DEFAULT_NOTIFY_OUTCOMES: OutcomeKind[] = ['reply', 'fail', 'invalid', 'defer', 'error', 'unhandled'];

export const SUMMARY_MODES = ['always', 'when-something-happened', 'never'] as const;
export type SummaryMode = (typeof SUMMARY_MODES)[number];

/** Every tag some AMIE packet type carries: what a packet template may name besides its fields. */
const PACKET_TAGS: ReadonlySet<string> = new Set(
  Object.values(PACKET_SPECS).flatMap((spec) => [...spec.required, ...spec.allowed]),
);

/**
 * The section's schemas, built on first use: a configuration without `notify:` never builds them
 * (see lazySection), and cron pays for every schema built at start-up.
 */
function buildSchemas() {
  const clock = z
    .string()
    .regex(/^([01]\d|2[0-3]):[0-5]\d$/, { error: 'expected a time of day as HH:MM (24-hour clock), e.g. "22:00"' });

  const timezone = z
    .string()
    .refine(isTimeZone, { error: 'expected an IANA time zone name, e.g. "America/Chicago" or "UTC"' });

  const quietHours = z
    .strictObject({
      /** Start of the quiet window, HH:MM. */
      from: clock,
      /** End of the quiet window, HH:MM; may be earlier than `from` (the window spans midnight). */
      to: clock,
      /** The zone `from` and `to` are in; default the zone of the machine running `amie`. */
      timezone: timezone.optional(),
      /** What is still posted during quiet hours: failures only (the default), or nothing. */
      send: z.enum(['failures', 'nothing']).default('failures'),
    })
    .refine((q) => q.from !== q.to, {
      error:
        'from and to are the same time: the quiet window would be empty (or the whole day); remove quietHours or widen it',
    });

  function template(name: TemplateName) {
    return z
      .string()
      .min(1)
      .superRefine((text, ctx) => {
        const allowed = TEMPLATE_FIELDS[name];
        for (const field of placeholdersOf(text)) {
          // A packet template may name any tag of a packet type ({ProjectID}); a misspelt one would stay empty forever.
          if (allowed.includes(field) || (name !== 'summary' && PACKET_TAGS.has(field))) continue;
          const near = nearest(field, name === 'summary' ? allowed : [...allowed, ...PACKET_TAGS]);
          ctx.addIssue({
            code: 'custom',
            message:
              `unknown placeholder {${field}}${near ? ` (did you mean {${near}}?)` : ''}: expected one of ${allowed.map((f) => `{${f}}`).join(' ')}` +
              (name === 'summary' ? '' : ' or a tag of the packet such as {ProjectID}'),
          });
        }
      });
  }

  const slack = z.strictObject({
    /** The channel to post to: its ID (C0123ABCD) or its name (#amie-ops); the bot must be a member. */
    channel: z
      .string()
      .min(1)
      .regex(/^\S+$/, { error: 'expected a channel ID (C0123ABCD) or name (#amie-ops) without spaces' }),
    /** The environment variable holding the bot token (xoxb-...); the token never sits in the file. */
    tokenEnv: z
      .string()
      .regex(ENV_NAME, {
        error: 'expected the NAME of an environment variable (letters, digits, "_"), not the token itself',
      })
      .default('SLACK_BOT_TOKEN'),
    /** Base URL of the Slack Web API; only changed for a proxy or a test server. */
    apiUrl: z
      .url({
        protocol: /^https?$/,
        error: 'expected the http(s) base URL of the Slack Web API, e.g. https://slack.com/api/',
      })
      .optional(),
    /** The longest Slack may hold up one pass of `amie process`; what is not posted by then is dropped. */
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** Outcomes that get a message of their own. */
    outcomes: z.array(z.enum(OUTCOME_KINDS)).default(DEFAULT_NOTIFY_OUTCOMES),
    /** At most this many per-packet messages per pass; the summary counts the rest. */
    maxPacketMessages: z.number().int().min(0).max(1000).default(20),
    /** When a pass posts its summary. */
    summary: z.enum(SUMMARY_MODES).default('when-something-happened'),
    quietHours: quietHours.optional(),
    /** Message texts with {placeholders}; each one left out keeps its default. */
    templates: z
      .strictObject({
        packet: template('packet').optional(),
        failure: template('failure').optional(),
        deferral: template('deferral').optional(),
        summary: template('summary').optional(),
      })
      .default({}),
  });

  const notify = z.strictObject({
    slack: slack.optional(),
  });
  return { quietHours, slack, notify };
}

const schemas = once(buildSchemas);

/** The `notify:` section's schema (also exported, built, as NotifyConfigSchema). */
export const notifyConfigSchema = () => schemas().notify;

/** The `notify.slack:` schema (also exported, built, as SlackConfigSchema). */
export const slackConfigSchema = () => schemas().slack;

export type NotifyConfig = z.output<ReturnType<typeof notifyConfigSchema>>;
export type SlackConfig = z.output<ReturnType<typeof slackConfigSchema>>;
export type QuietHours = z.output<ReturnType<typeof schemas>['quietHours']>;

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
