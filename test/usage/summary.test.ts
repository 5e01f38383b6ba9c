import { describe, it, expect, beforeEach, beforeAll, afterAll } from 'vitest';
import { Dispatcher } from '../../src/dispatch/index.js';
import type { TagValue } from '../../src/protocol/index.js';
import { RegistryHandler } from '../../handlers/registry.js';
import { ConfigError, parseConfig } from '../../src/config/index.js';
import { NotifyConfigSchema } from '../../src/notify/index.js';
import { dueAlerts, sendUsageAlerts, usageAlertText } from '../../src/usage/alerts.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { usageByDay, usageSummary, type ProjectUsage } from '../../src/usage/summary.js';
import { SITE, quietLog, rpcTags, seedIncoming } from '../helpers/amie.js';
import { sacctRecords } from '../helpers/sacct-lines.js';
import { databaseEachTest, driverCases } from '../helpers/db.js';
import { FakeSlack, SLACK_TOKEN } from '../notify/slack-server.js';

const HOUR = 3_600_000;

/** One finished job as sacct prints it: `gpus` GPUs for `hours`, ending at `end` (UTC). */
function job(id: string, account: string, gpus: number, hours: number, end: string): string {
  const endMs = Date.parse(`${end}Z`);
  const t = (ms: number) => new Date(ms).toISOString().slice(0, 19);
  const elapsed = Math.round(hours * 3600);
  return [
    id,
    id,
    'delta',
    'alice',
    account,
    'gpu',
    'COMPLETED',
    t(endMs - hours * HOUR - 60_000),
    t(endMs - hours * HOUR),
    t(endMs),
    '00:00:00',
    String(elapsed),
    '1',
    '4',
    `billing=4,cpu=4,gres/gpu=${gpus},mem=8G,node=1`,
  ].join('|');
}

const USAGE = UsageConfigSchema.parse({ projects: { abc123: 'TG-ABC123', evil: 'TG-EVIL' }, alerts: [60, 80, 100] });
const NOW = new Date('2026-09-01T00:00:00Z');

// Before the period (not charged to it), in the period, and in the last 30 days.
const FIRST_JOBS = [
  job('1', 'abc123', 4, 10, '2026-06-30T12:00:00'), // 40, before the period
  job('2', 'abc123', 8, 50, '2026-07-15T00:00:00'), // 400
  job('3', 'abc123', 4, 50, '2026-08-10T00:00:00'), // 200, last 30 days
  job('4', 'abc123', 4, 25, '2026-08-20T06:00:00'), // 100, last 30 days
];

describe.each(driverCases())('usage against allocations on $name', (driver) => {
  const t = databaseEachTest(driver);
  let slack: FakeSlack;
  beforeAll(async () => {
    slack = await new FakeSlack().start();
  });
  afterAll(async () => {
    await slack?.stop();
  });
  beforeEach(async () => {
    if (!driver.available) return;
    slack.requests.length = 0;
    slack.mode = { kind: 'ok' };
  });
  const run = it.skipIf(!driver.available);

  /** An RPC through the registry handler, as `amie process` applies it. */
  async function rpc(tags: Record<string, TagValue>) {
    await seedIncoming(
      t.db,
      'request_project_create',
      rpcTags({
        PiEmail: 'jane@example.edu',
        PiGlobalID: '70001',
        ServiceUnitsAllocated: '1000',
        ProjectTitle: 'Turbulence at small scales',
        ...tags,
      }),
    );
    const handler = new RegistryHandler({ db: t.db, log: quietLog, site: SITE, options: {}, dryRun: false });
    const s = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(s.answered, JSON.stringify(s.results.map((r) => r.reason))).toBe(1);
  }

  /** Jobs through the reporter, as `amie report-usage` records them. */
  async function report(lines: string[]) {
    const records = await sacctRecords(lines);
    const s = await reportUsage(t.db, {
      site: SITE,
      usage: USAGE,
      since: new Date('2026-01-01T00:00:00Z'),
      until: new Date('2027-01-01T00:00:00Z'),
      records,
      log: quietLog,
    });
    expect(s.reported).toBe(lines.length);
  }

  const config = () => ({
    site: { ...SITE, resources: [SITE.resource] } as never,
    notify: NotifyConfigSchema.parse({ slack: { channel: '#amie-ops', apiUrl: slack.url, timeoutMs: 2000 } }),
  });
  const alerts = (usage: ProjectUsage[], now = NOW) =>
    sendUsageAlerts(t.db, usage, {
      config: config(),
      thresholds: USAGE.alerts,
      log: quietLog,
      env: { SLACK_BOT_TOKEN: SLACK_TOKEN },
      now: () => now,
    });

  run('allocation, charged in the period, remaining, percent, 30-day rate and exhaustion date', async () => {
    await rpc({});
    await rpc({ AllocationType: 'supplement', RecordID: 'rec-2', ServiceUnitsAllocated: '200' });
    await report(FIRST_JOBS);
    const [u] = await usageSummary(t.db, { unit: 'gpu-hours', now: NOW });
    expect(u).toMatchObject({
      projectId: 'TG-ABC123',
      grantNumber: 'TG-ABC123',
      unit: 'gpu-hours',
      allocated: 1200,
      startDate: '2026-07-01',
      endDate: '2027-06-30',
      charged: 700,
      remaining: 500,
      percentUsed: 58.33,
      chargedLast30Days: 300,
      ratePerDay: 10,
      // 500 left at 10 a day: 50 days after 2026-09-01.
      projectedExhaustion: '2026-10-21',
      projection: 'projected',
    });
    expect(u!.periodActions.map((a) => [a.allocationType, a.serviceUnits])).toEqual([
      ['new', 1000],
      ['supplement', 200],
    ]);

    // No usage in the last 30 days: no date, and says why.
    const later = await usageSummary(t.db, { unit: 'gpu-hours', now: new Date('2026-11-01T00:00:00Z') });
    expect(later[0]).toMatchObject({ ratePerDay: 0, projectedExhaustion: null, projection: 'no-recent-usage' });
    // Other units are not mixed in.
    expect((await usageSummary(t.db, { unit: 'cpu-hours', now: NOW }))[0]).toMatchObject({ charged: 0 });

    expect(await usageByDay(t.db, { project: 'TG-ABC123' })).toEqual([
      { project: 'TG-ABC123', day: '2026-06-30', charged: 40 },
      { project: 'TG-ABC123', day: '2026-07-15', charged: 400 },
      { project: 'TG-ABC123', day: '2026-08-10', charged: 200 },
      { project: 'TG-ABC123', day: '2026-08-20', charged: 100 },
    ]);
    expect(
      await usageByDay(t.db, { since: new Date('2026-08-01T00:00:00Z'), until: new Date('2026-08-15T00:00:00Z') }),
    ).toEqual([{ project: 'TG-ABC123', day: '2026-08-10', charged: 200 }]);
  });

  run('--project picks one project by ProjectID or GrantNumber', async () => {
    await rpc({});
    await rpc({ GrantNumber: 'TG-XYZ789', RecordID: 'rec-x', ServiceUnitsAllocated: '0' });
    await report([job('7', 'abc123', 1, 3, '2026-08-25T00:00:00')]);
    const all = await usageSummary(t.db, { unit: 'gpu-hours', now: NOW });
    // 997 left at 0.1 a day lasts past the end date: no date, and says why.
    expect(all.map((u) => [u.projectId, u.percentUsed, u.projection, u.projectedExhaustion])).toEqual([
      ['TG-ABC123', 0.3, 'after-end-date', null],
      ['TG-XYZ789', null, 'no-allocation', null],
    ]);
    expect((await usageSummary(t.db, { unit: 'gpu-hours', project: 'TG-XYZ789' })).map((u) => u.projectId)).toEqual([
      'TG-XYZ789',
    ]);
    expect(await usageSummary(t.db, { unit: 'gpu-hours', project: 'TG-NOPE' })).toEqual([]);
  });

  run('a threshold crossed alerts once per period; a rerun repeats nothing; a renewal alerts again', async () => {
    await rpc({});
    await report(FIRST_JOBS); // 700 of 1000
    const first = await alerts(await usageSummary(t.db, { unit: 'gpu-hours', now: NOW }));
    expect(first.sent.map((a) => a.threshold)).toEqual([60]);
    expect(slack.texts).toHaveLength(1);
    expect(slack.texts[0]).toContain('project *TG-ABC123* (Turbulence at small scales) has used 70% of its allocation');
    expect(slack.texts[0]).toContain('(700 of 1000 gpu-hours, 2026-07-01 to 2027-06-30) and passed the 60% alert');
    expect(slack.requests[0]!.body.channel).toBe('#amie-ops');

    const again = await alerts(await usageSummary(t.db, { unit: 'gpu-hours', now: NOW }));
    expect(again).toMatchObject({ sent: [], failed: [], waiting: [] });
    expect(slack.texts).toHaveLength(1);

    await report([job('5', 'abc123', 10, 32, '2026-08-25T00:00:00')]); // +320: 102%
    const over = await alerts(await usageSummary(t.db, { unit: 'gpu-hours', now: NOW }));
    expect(over.sent.map((a) => a.threshold)).toEqual([80, 100]);
    expect(slack.texts[2]).toMatch(/^:rotating_light: .*has used 102% .*passed the 100% alert; used up\.$/);

    // A renewal opens a new period: its usage starts from nothing and alerts come again.
    await rpc({
      AllocationType: 'renewal',
      RecordID: 'rec-r',
      ServiceUnitsAllocated: '500',
      StartDate: '2026-09-01',
      EndDate: '2027-08-31',
    });
    const renewedAt = new Date('2026-09-20T00:00:00Z');
    expect((await usageSummary(t.db, { unit: 'gpu-hours', now: renewedAt }))[0]).toMatchObject({
      allocated: 500,
      charged: 0,
    });
    await report([job('6', 'abc123', 10, 35, '2026-09-10T00:00:00')]); // 350 of 500: 70%
    const renewed = await alerts(await usageSummary(t.db, { unit: 'gpu-hours', now: renewedAt }));
    expect(renewed.sent.map((a) => a.threshold)).toEqual([60]);
    const { rows } = await t.db.query<{ threshold: string; period_start: string }>(
      `SELECT threshold::text AS threshold, period_start::text AS period_start
         FROM amie_toolkit.usage_alerts ORDER BY sent_at, threshold`,
    );
    expect(rows.map((r) => [Number(r.threshold), r.period_start])).toEqual([
      [60, '2026-07-01'],
      [80, '2026-07-01'],
      [100, '2026-07-01'],
      [60, '2026-09-01'],
    ]);
  });

  run('a Slack failure records nothing, does not stop the other projects, and is posted by the next run', async () => {
    await rpc({});
    await rpc({
      GrantNumber: 'TG-EVIL',
      RecordID: 'rec-e',
      ServiceUnitsAllocated: '100',
      ProjectTitle: '<!channel> *urgent* see https://evil.example',
    });
    await report([...FIRST_JOBS, job('9', 'evil', 1, 70, '2026-08-30T00:00:00')]);
    slack.mode = { kind: 'refuse', error: 'channel_not_found' };
    const failed = await alerts(await usageSummary(t.db, { unit: 'gpu-hours', now: NOW }));
    expect(failed.sent).toEqual([]);
    // Both projects were tried, each alert on its own.
    expect(failed.failed.map((a) => [a.projectId, a.threshold])).toEqual([
      ['TG-ABC123', 60],
      ['TG-EVIL', 60],
    ]);
    expect(failed.failed[0]!.error).toContain('channel_not_found');
    const { rows } = await t.db.query('SELECT 1 FROM amie_toolkit.usage_alerts');
    expect(rows).toHaveLength(0);

    slack.mode = { kind: 'ok' };
    slack.requests.length = 0;
    const retried = await alerts(await usageSummary(t.db, { unit: 'gpu-hours', now: NOW }));
    expect(retried.sent.map((a) => [a.projectId, a.threshold])).toEqual([
      ['TG-ABC123', 60],
      ['TG-EVIL', 60],
    ]);
    expect(slack.texts).toHaveLength(2);
    // The title came from a packet: it reaches Slack inert.
    expect(slack.texts[1]).toContain('(&lt;!channel&gt; ∗urgent∗ see https꞉//evil․example)');
    expect(slack.texts[1]).not.toMatch(/<!channel>|\*urgent\*|https:\/\//);
  });

  run('two runs at the same time post an alert once', async () => {
    await rpc({});
    await report(FIRST_JOBS);
    const usage = await usageSummary(t.db, { unit: 'gpu-hours', now: NOW });
    const [a, b] = await Promise.all([alerts(usage), alerts(usage)]);
    expect([...a.sent, ...b.sent].map((x) => x.threshold)).toEqual([60]);
    expect([...a.failed, ...b.failed]).toEqual([]);
    expect(slack.texts).toHaveLength(1);
  });

  run('quiet hours hold alerts back without recording them', async () => {
    await rpc({});
    await report(FIRST_JOBS);
    const cfg = config();
    cfg.notify.slack!.quietHours = { from: '22:00', to: '06:00', timezone: 'UTC', send: 'failures' };
    const usage = await usageSummary(t.db, { unit: 'gpu-hours', now: NOW });
    const opts = { config: cfg, thresholds: USAGE.alerts, log: quietLog, env: { SLACK_BOT_TOKEN: SLACK_TOKEN } };
    const night = await sendUsageAlerts(t.db, usage, { ...opts, now: () => new Date('2026-09-01T23:00:00Z') });
    expect(night.waiting.map((a) => a.threshold)).toEqual([60]);
    expect(slack.texts).toHaveLength(0);
    const day = await sendUsageAlerts(t.db, usage, { ...opts, now: () => new Date('2026-09-02T09:00:00Z') });
    expect(day.sent.map((a) => a.threshold)).toEqual([60]);
  });
});

describe('the usage alert text', () => {
  it('makes hostile project ids and titles inert as Slack text', () => {
    const u = {
      projectId: 'TG-<!channel>*x*',
      title: '<https://evil.example|click here> _now_ @here',
      unit: 'gpu-hours',
      allocated: 100,
      charged: 85,
      remaining: 15,
      percentUsed: 85,
      startDate: '2026-07-01',
      endDate: '2027-06-30',
      projectedExhaustion: '2026-09-03',
      projection: 'projected',
    } as ProjectUsage;
    const text = usageAlertText('EXAMPLE', u, 80);
    expect(text).not.toMatch(/<!channel>|<https|https:\/\/|evil\.example|\*x\*|_now_/);
    expect(text).toContain('&lt;!channel&gt;');
    expect(text).toMatch(
      /^:warning: EXAMPLE: project \*TG-&lt;!channel&gt;∗x∗\* \(&lt;https꞉\/\/evil․example\|click here&gt; ＿now＿ @here\)/,
    );
    expect(text).toContain('runs out on 2026-09-03');
  });
});

describe('usage.alerts in the configuration', () => {
  const SITE_YAML = 'site:\n  name: EXAMPLE\n  resource: cluster.example.org\n';
  const SLACK_YAML = "notify:\n  slack: { channel: '#amie-ops' }\n";
  const problems = (text: string) => {
    try {
      parseConfig(SITE_YAML + text, 'amie.yaml', {});
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems;
    }
    return [];
  };

  it('takes ascending percentages from 1 to 1000, none by default', () => {
    expect(parseConfig(`${SITE_YAML}usage:\n  alerts: [80, 100, 150]\n${SLACK_YAML}`, 'x', {}).usage?.alerts).toEqual([
      80, 100, 150,
    ]);
    expect(parseConfig(`${SITE_YAML}usage: {}\n`, 'x', {}).usage?.alerts).toEqual([]);
  });

  it('a bad value names the key and what is expected', () => {
    expect(problems(`usage:\n  alerts: [100, 80]\n${SLACK_YAML}`)).toEqual([
      'amie.yaml: usage.alerts: expected thresholds in ascending order without repeats, e.g. [80, 100]',
    ]);
    expect(problems(`usage:\n  alerts: [0, 2000]\n${SLACK_YAML}`)).toEqual([
      'amie.yaml: usage.alerts.0: expected at least 1, got number 0',
      'amie.yaml: usage.alerts.1: expected at most 1000, got number 2000',
    ]);
    expect(problems('usage:\n  alerts: [80]\n')).toEqual([
      'amie.yaml: usage.alerts: usage alerts are posted to Slack: expected a notify.slack section (channel, tokenEnv), or no usage.alerts',
    ]);
  });
});

describe('which alerts are due', () => {
  const usage = (projectId: string, charged: number, projection: ProjectUsage['projection']) =>
    ({
      projectId,
      allocated: 100,
      charged,
      percentUsed: charged,
      period: `p-${projectId}`,
      projection,
    }) as ProjectUsage;

  it('counts a current period, never one that has ended (turning alerts on does not post about history)', () => {
    const due = dueAlerts([usage('now', 85, 'projected'), usage('old', 120, 'period-ended')], [80, 100]);
    expect(due.map((a) => [a.projectId, a.threshold])).toEqual([['now', 80]]);
  });
});
