/**
 * Usage alerts: when a project's charged usage reaches a threshold of `usage.alerts` in its
 * current allocation period, one Slack message (notify.slack) per project, threshold and period.
 *
 * Each alert is recorded in `amie_toolkit.usage_alerts` in the transaction that posts it: the
 * row is written first (a concurrent run then waits for it and skips the alert), the message
 * is posted, and a message Slack did not take rolls the row back, so the next run posts it
 * again. One alert failing never stops the others. Slack's client is loaded only when there
 * is an alert to post.
 */
import type { AmieConfig } from '../config/schema.js';
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import { inQuietHours, renderTemplate } from '../notify/templates.js';
import { claimUsageAlert, sentUsageAlerts, usageAlertKey, type UsageAlertRow } from '../store/usage.js';
import { describeProjection, formatAmount, type ProjectUsage } from './summary.js';

export interface UsageAlert {
  projectId: string;
  threshold: number;
  percentUsed: number;
  /** The allocation period it belongs to (see ProjectUsage.period). */
  period: string;
}

export interface UsageAlertsOutcome {
  /** The thresholds configured (`usage.alerts`). */
  thresholds: number[];
  /** Posted now. */
  sent: UsageAlert[];
  /** Due but not posted (Slack failed or refused): posted by the next run. */
  failed: Array<UsageAlert & { error: string }>;
  /** Due but held back by notify.slack.quietHours: posted by the first run after them. */
  waiting: UsageAlert[];
}

/** The message; the site's name and every registry value in it are made inert as Slack text. */
const TEMPLATE =
  '{site}: project *{project}*{title} has used {percent}% of its allocation ({charged} of {allocated} {unit}, ' +
  '{start} to {end}) and passed the {threshold}% alert; {projection}.';

export function usageAlertText(site: string, u: ProjectUsage, threshold: number): string {
  const values = {
    site,
    project: u.projectId,
    title: u.title ? ` (${u.title})` : '',
    percent: u.percentUsed ?? 0,
    charged: formatAmount(u.charged),
    allocated: formatAmount(u.allocated),
    unit: u.unit,
    start: u.startDate ?? 'its start',
    end: u.endDate ?? 'open end',
    threshold,
    projection: describeProjection(u),
  };
  const icon = threshold >= 100 ? ':rotating_light:' : ':warning:';
  return `${icon} ${renderTemplate(TEMPLATE, values)}`;
}

/** The alerts `usage` says are due, whether or not already posted. */
export function dueAlerts(usage: readonly ProjectUsage[], thresholds: readonly number[]): UsageAlert[] {
  const out: UsageAlert[] = [];
  for (const u of usage) {
    // A period that has ended is history: turning alerts on must not post about it.
    if (u.percentUsed === null || u.projection === 'period-ended') continue;
    for (const t of thresholds) {
      // Compared on the amounts, not the rounded percentage: 79.996% has not reached 80%.
      if (u.charged >= (u.allocated * t) / 100)
        out.push({ projectId: u.projectId, threshold: t, percentUsed: u.percentUsed, period: u.period });
    }
  }
  return out;
}

export interface UsageAlertsOptions {
  config: Pick<AmieConfig, 'site' | 'notify'>;
  thresholds: readonly number[];
  log: Logger;
  /** Where the Slack token variable is read (default process.env). */
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
}

/**
 * Posts the alerts due for `usage` that were not posted before in the same allocation period.
 * Never throws for Slack (a failure is in `failed` and in the log); a missing Slack token is a
 * ConfigError, raised only when there is something to post.
 */
export async function sendUsageAlerts(
  db: Database,
  usage: readonly ProjectUsage[],
  opts: UsageAlertsOptions,
): Promise<UsageAlertsOutcome> {
  const outcome: UsageAlertsOutcome = { thresholds: [...opts.thresholds], sent: [], failed: [], waiting: [] };
  const slack = opts.config.notify?.slack;
  if (opts.thresholds.length === 0 || !slack) return outcome;
  const due = dueAlerts(usage, opts.thresholds);
  if (due.length === 0) return outcome;
  const done = await sentUsageAlerts(db, [...new Set(due.map((a) => a.projectId))]);
  const pending = due.filter((a) => !done.has(usageAlertKey(a.projectId, a.period, a.threshold)));
  if (pending.length === 0) return outcome;
  const now = opts.now?.() ?? new Date();
  if (slack.quietHours && inQuietHours(now, slack.quietHours)) {
    outcome.waiting = pending;
    opts.log.info({ alerts: pending.length }, 'usage alerts held back by notify.slack.quietHours');
    return outcome;
  }

  const { createNotifier } = await import('../notify/index.js');
  const notifier = createNotifier(opts.config, opts.log, { env: opts.env ?? process.env })!;
  const byProject = new Map(usage.map((u) => [u.projectId, u]));
  let slackDown: string | null = null;
  for (const alert of pending) {
    if (slackDown !== null) {
      // One failed post is enough to know: the others wait for the next run rather than each
      // waiting out notify.slack.timeoutMs.
      outcome.failed.push({ ...alert, error: `not tried: ${slackDown}` });
      continue;
    }
    const u = byProject.get(alert.projectId)!;
    const row: UsageAlertRow = {
      projectId: u.projectId,
      period: u.period,
      threshold: alert.threshold,
      periodStart: u.startDate,
      periodEnd: u.endDate,
      percentUsed: alert.percentUsed,
      charged: u.charged,
      allocated: u.allocated,
      unit: u.unit,
    };
    try {
      const posted = await db.transaction(async (tx) => {
        if (!(await claimUsageAlert(tx, row))) return false;
        const r = await notifier.postMessages([usageAlertText(opts.config.site.name, u, alert.threshold)]);
        // Thrown so that the claim is rolled back and the next run posts it.
        if (r.sent !== 1) throw new UsageAlertNotPosted(r.error ?? 'Slack did not take the message');
        return true;
      });
      if (posted) outcome.sent.push(alert);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      outcome.failed.push({ ...alert, error });
      if (err instanceof UsageAlertNotPosted) slackDown = error;
      opts.log.warn(
        { project: alert.projectId, threshold: alert.threshold, err: error },
        'usage alert not posted; the next run tries again',
      );
    }
  }
  if (outcome.sent.length > 0) opts.log.info({ sent: outcome.sent.length }, 'usage alerts posted');
  return outcome;
}

class UsageAlertNotPosted extends Error {
  override name = 'UsageAlertNotPosted';
}

/** Lines for people about what the alerts did. */
export function formatAlertsOutcome(o: UsageAlertsOutcome): string[] {
  const lines: string[] = [];
  for (const a of o.sent)
    lines.push(`alert posted to Slack: ${a.projectId} passed ${a.threshold}% (${a.percentUsed}% used)`);
  for (const a of o.failed)
    lines.push(`alert NOT posted (tried again next run): ${a.projectId} passed ${a.threshold}%: ${a.error}`);
  for (const a of o.waiting)
    lines.push(`alert held back by notify.slack.quietHours: ${a.projectId} passed ${a.threshold}%`);
  return lines;
}
