import { readSecretEnv } from '../config/load.js';
import type { AmieConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { notifyConfigSchema, slackConfigSchema } from './config.js';
import { SlackNotifier } from './slack.js';

export {
  notifyConfigSchema,
  slackConfigSchema,
  OUTCOME_KINDS,
  FAILURE_OUTCOMES,
  DEFAULT_NOTIFY_OUTCOMES,
  SUMMARY_MODES,
  type NotifyConfig,
  type SlackConfig,
  type QuietHours,
  type SummaryMode,
} from './config.js';
export {
  DEFAULT_TEMPLATES,
  TEMPLATE_FIELDS,
  describeResult,
  escapeMrkdwn,
  inQuietHours,
  placeholdersOf,
  renderTemplate,
  type TemplateName,
} from './templates.js';
/** The `notify:` section's schema. (The configuration builds it only when a file has the section.) */
export const NotifyConfigSchema = notifyConfigSchema();
export const SlackConfigSchema = slackConfigSchema();
export { SlackNotifier, DEFAULT_SLACK_API_URL, type NotifyOutcome, type SlackNotifierOptions } from './slack.js';

/**
 * The notifier `notify.slack` asks for, or undefined without one. Reads the bot token from the
 * environment variable `notify.slack.tokenEnv` names: unset, it is a ConfigError naming both,
 * raised before any packet is touched.
 */
export function createNotifier(
  config: Pick<AmieConfig, 'site' | 'notify'>,
  log: Logger,
  opts: { dryRun?: boolean; env?: NodeJS.ProcessEnv; now?: () => Date } = {},
): SlackNotifier | undefined {
  const slack = config.notify?.slack;
  if (!slack) return undefined;
  const token = readSecretEnv('notify.slack.tokenEnv', slack.tokenEnv, opts.env ?? process.env);
  return new SlackNotifier({ token, config: slack, site: config.site.name, log, dryRun: opts.dryRun, now: opts.now });
}
