import type { Logger as SlackLogger, LogLevel as SlackLogLevel } from '@slack/web-api';
import type { RunSummary } from '../dispatch/summary.js';
import type { Logger } from '../log.js';
import { FAILURE_OUTCOMES, type SlackConfig } from './config.js';
import {
  DEFAULT_TEMPLATES,
  inQuietHours,
  packetValues,
  renderTemplate,
  summaryValues,
  templateFor,
  type TemplateName,
} from './templates.js';

export const DEFAULT_SLACK_API_URL = 'https://slack.com/api/';

export interface SlackNotifierOptions {
  /** The bot token (xoxb-...), already read from the environment. */
  token: string;
  /** The `notify.slack` section. */
  config: SlackConfig;
  /** The site name, for the messages. */
  site: string;
  log: Logger;
  /** Dry runs post nothing: the messages that would have been posted are logged at debug level. */
  dryRun?: boolean;
  /** The clock quiet hours are read from (tests set it). */
  now?: () => Date;
}

/** What one pass's notifications came to; also logged. */
export interface NotifyOutcome {
  /** Messages Slack accepted. */
  sent: number;
  /** Messages not posted because Slack failed, refused or ran out of time. */
  dropped: number;
  /** Why the rest were dropped, for the log. */
  error?: string;
}

/**
 * Posts what `amie process` did to a Slack channel: a message per packet whose outcome the
 * configuration asks for, and a summary of the pass.
 *
 * Best effort, never in the way of processing: Slack gets at most `timeoutMs` per pass in all,
 * the client neither retries nor waits out rate limits, and the first failure (Slack down,
 * hanging, refusing the token or the channel) drops the pass's remaining messages, because the
 * next would fail the same way. A failure is one warning in the log and nothing else: it is
 * never thrown and never changes the exit code.
 */
export class SlackNotifier {
  private readonly cfg: SlackConfig;
  private readonly log: Logger;
  private readonly now: () => Date;
  /** Deferrals already posted by this process, so that `--watch` does not repeat one every pass. */
  private postedDeferrals = new Set<string>();

  constructor(private readonly opts: SlackNotifierOptions) {
    this.cfg = opts.config;
    this.log = opts.log.child({ notify: 'slack', channel: opts.config.channel });
    this.now = opts.now ?? (() => new Date());
  }

  /** The texts a pass produces, in posting order, after the filters and quiet hours. */
  messagesFor(summary: RunSummary): string[] {
    const quiet =
      this.cfg.quietHours && inQuietHours(this.now(), this.cfg.quietHours) ? this.cfg.quietHours.send : undefined;
    // Only this pass's deferrals are remembered: a packet answered since is forgotten.
    const deferrals = new Set<string>();
    const wanted = summary.results.filter((r) => {
      if (!this.cfg.outcomes.includes(r.outcome)) return false;
      if (quiet === 'nothing' || (quiet === 'failures' && !FAILURE_OUTCOMES.has(r.outcome))) return false;
      if (r.outcome === 'defer') {
        const key = `${r.packetRecId}\n${r.reason ?? ''}`;
        deferrals.add(key);
        if (this.postedDeferrals.has(key)) return false;
      }
      return true;
    });
    this.postedDeferrals = deferrals;
    const shown = wanted.slice(0, this.cfg.maxPacketMessages);
    const messages = shown.map((r) =>
      renderTemplate(this.template(templateFor(r.outcome)), packetValues(r, this.opts.site, summary.runId)),
    );

    const failures = summary.results.some((r) => FAILURE_OUTCOMES.has(r.outcome));
    const summaryWanted =
      this.cfg.summary === 'always' || (this.cfg.summary === 'when-something-happened' && summary.taken > 0);
    if (summaryWanted && (quiet === undefined || (quiet === 'failures' && failures))) {
      let text = renderTemplate(this.template('summary'), summaryValues(summary, this.opts.site));
      const left = wanted.length - shown.length;
      if (left > 0)
        text += `\n_${left} more packet message(s) not posted (notify.slack.maxPacketMessages is ${this.cfg.maxPacketMessages}); see \`amie packets list\`_`;
      messages.push(text);
    }
    return messages.map(clip);
  }

  /** Posts a pass's messages. Never throws; resolves within about `timeoutMs`. */
  async notifyRun(summary: RunSummary): Promise<NotifyOutcome> {
    let messages: string[];
    try {
      messages = this.messagesFor(summary);
    } catch (err) {
      this.log.warn(
        { run_id: summary.runId, err: errorText(err) },
        'Slack messages could not be built; nothing posted',
      );
      return { sent: 0, dropped: 0, error: errorText(err) };
    }
    if (messages.length === 0) return { sent: 0, dropped: 0 };
    if (this.opts.dryRun || summary.dryRun) {
      for (const text of messages) this.log.debug({ run_id: summary.runId, text }, 'dry run: Slack message not posted');
      return { sent: 0, dropped: 0 };
    }
    const result = await this.postMessages(messages);
    if (result.error) {
      this.log.warn(
        { run_id: summary.runId, sent: result.sent, dropped: result.dropped, err: result.error },
        `Slack notification failed; ${result.dropped} message(s) not posted`,
      );
    } else {
      this.log.debug({ run_id: summary.runId, sent: result.sent }, 'Slack messages posted');
    }
    return result;
  }

  /**
   * Posts texts in order, one at a time (Slack shows a channel in arrival order and allows about
   * one message a second anyway), all within one deadline; what was not posted is counted in
   * `dropped`. Never throws. A fresh connection pool per call is destroyed at the end, so an
   * abandoned request cannot keep the process alive after the run. Texts are posted as given:
   * outside text in them must already be made inert (renderTemplate does).
   */
  async postMessages(texts: readonly string[]): Promise<NotifyOutcome> {
    const messages = texts.map(clip);
    // The deadline counts from here, loading the client included: Slack costs a pass at most timeoutMs.
    const deadline = Date.now() + this.cfg.timeoutMs;
    // Loaded only when there is something to post: the Slack client is large, and a run that
    // posts nothing (most runs) should not pay for loading it.
    const { WebClient, LogLevel } = await import('@slack/web-api');
    const apiUrl = this.cfg.apiUrl ?? DEFAULT_SLACK_API_URL;
    // node:http(s) too: the Slack client needs them anyway, and a run without messages does not.
    const { Agent } = apiUrl.startsWith('https:') ? await import('node:https') : await import('node:http');
    const agent = new Agent({ keepAlive: true });
    const client = new WebClient(this.opts.token, {
      slackApiUrl: apiUrl,
      timeout: this.cfg.timeoutMs,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      agent,
      logger: slackLogger(this.log, LogLevel.DEBUG),
    });
    let sent = 0;
    try {
      for (const text of messages) {
        const left = deadline - Date.now();
        if (left <= 0)
          return {
            sent,
            dropped: messages.length - sent,
            error: `Slack did not answer within notify.slack.timeoutMs (${this.cfg.timeoutMs} ms)`,
          };
        try {
          await withDeadline(
            client.chat.postMessage({ channel: this.cfg.channel, text, unfurl_links: false, unfurl_media: false }),
            left,
            `Slack did not answer within notify.slack.timeoutMs (${this.cfg.timeoutMs} ms)`,
          );
          sent++;
        } catch (err) {
          return { sent, dropped: messages.length - sent, error: slackErrorText(err, apiUrl, this.cfg.channel) };
        }
      }
      return { sent, dropped: 0 };
    } finally {
      agent.destroy();
    }
  }

  private template(name: TemplateName): string {
    return this.cfg.templates[name] ?? DEFAULT_TEMPLATES[name];
  }
}

/**
 * Slack refuses very long texts (msg_too_long) and folds long ones anyway; packet text (a
 * reason listing every problem, a hostile name) can be long, and one refusal would drop the
 * rest of the pass.
 */
const MAX_TEXT = 3000;
function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT - 1)}…`;
}

/** Rejects after `ms`; the abandoned promise's own rejection is swallowed so that it cannot crash the process. */
function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  p.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A line saying what went wrong and what to check. Built from codes and messages only: the
 * client's error objects carry the request, whose headers hold the token, so they are never logged.
 */
function slackErrorText(err: unknown, apiUrl: string, channel: string): string {
  const e = err as {
    code?: string;
    data?: { error?: string };
    retryAfter?: number;
    original?: { code?: string; message?: string };
    message?: string;
  };
  switch (e.code) {
    case 'slack_webapi_platform_error': {
      const what = e.data?.error ?? 'unknown_error';
      const hint: Record<string, string> = {
        invalid_auth: ': the token in notify.slack.tokenEnv is not valid',
        not_authed: ': no token was sent',
        account_inactive: ': the token belongs to a deactivated bot or user',
        token_revoked: ': the token in notify.slack.tokenEnv was revoked',
        channel_not_found: `: no channel "${channel}" visible to the bot (notify.slack.channel)`,
        not_in_channel: `: invite the bot to ${channel}`,
        is_archived: `: channel ${channel} is archived`,
        missing_scope: ': the bot token needs the chat:write scope',
      };
      return `Slack refused chat.postMessage: ${what}${Object.hasOwn(hint, what) ? hint[what] : ''}`;
    }
    case 'slack_webapi_rate_limited_error':
      return `Slack rate limit reached (retry after ${e.retryAfter ?? '?'} s); the remaining messages are dropped`;
    case 'slack_webapi_request_error': {
      const cause = e.original?.code ?? e.original?.message ?? 'request failed';
      return `cannot reach Slack at ${apiUrl}: ${cause}`;
    }
    case 'slack_webapi_http_error':
      return `Slack answered with an HTTP error: ${e.message ?? ''}`;
    default:
      return errorText(err);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The client's own log lines go to debug: the warning that matters is the notifier's own. */
function slackLogger(log: Logger, level: SlackLogLevel): SlackLogger {
  const debug = (...msg: unknown[]) => log.debug({ slack_client: msg.map(String).join(' ') }, 'Slack client');
  return {
    debug,
    info: debug,
    warn: debug,
    error: debug,
    setLevel: () => {},
    getLevel: () => level,
    setName: () => {},
  };
}
