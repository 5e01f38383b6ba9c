import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPglite } from '../../src/db/index.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { RegistryHandler } from '../../handlers/registry.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { SITE, quietLog, rpcTags, seedIncoming } from '../helpers/amie.js';
import { fakeSacct, sacctRecords } from '../helpers/sacct-lines.js';
import { FakeSlack, SLACK_TOKEN } from '../notify/slack-server.js';
import { amieInProcess, cleanEnv } from '../helpers/cli.js';
import { initialisedPgliteDir } from '../helpers/db.js';

const DAY = 86_400_000;
const day = (offset: number) => new Date(Date.now() + offset * DAY).toISOString().slice(0, 10);
const time = (offset: number) => new Date(Date.now() + offset * DAY).toISOString().slice(0, 19);

/** A finished job of `gpus` GPUs for `hours`, ending `endOffset` days from now, as sacct prints it. */
function job(id: string, gpus: number, hours: number, endOffset: number): string {
  const start = endOffset - hours / 24;
  return `${id}|${id}|delta|alice|abc123|gpu|COMPLETED|${time(start)}|${time(start)}|${time(endOffset)}|00:00:00|${hours * 3600}|1|4|cpu=4,gres/gpu=${gpus},node=1`;
}

describe('amie usage summary on the command line', () => {
  let dir: string;
  let config: string;
  let slack: FakeSlack;
  const amie = (...args: string[]) =>
    amieInProcess(['-c', config, ...args], {
      cwd: dir,
      env: cleanEnv({ AMIE_LOG_LEVEL: 'warn', SLACK_BOT_TOKEN: SLACK_TOKEN }),
      trimmed: true,
    });

  beforeAll(async () => {
    slack = await new FakeSlack().start();
    dir = mkdtempSync(join(tmpdir(), 'amie-usage-summary-'));
    // What report-usage will find: 150 more GPU-hours, ended yesterday.
    const sacct = fakeSacct(dir, [job('2001', 10, 15, -1)]);
    config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\n` +
        `usage:\n  sacctPath: ${sacct}\n  projects: { abc123: TG-ABC123 }\n  alerts: [80, 100]\n` +
        `notify:\n  slack: { channel: '#amie-ops', apiUrl: '${slack.url}' }\nlog: { level: warn }\n`,
    );
    await initialisedPgliteDir(join(dir, 'db'));

    // The registry and the usage as `amie process` and `amie report-usage` leave them.
    const db = await openPglite({ path: join(dir, 'db') });
    try {
      await seedIncoming(
        db,
        'request_project_create',
        rpcTags({
          PiEmail: 'jane@example.edu',
          StartDate: day(-60),
          EndDate: day(300),
          ServiceUnitsAllocated: '1000',
          ProjectTitle: 'Turbulence at small scales',
        }),
      );
      const handler = new RegistryHandler({ db, log: quietLog, site: SITE, options: {}, dryRun: false });
      expect((await new Dispatcher(db, handler, quietLog).runOnce()).answered).toBe(1);
      // 400 GPU-hours 45 days ago, 300 five days ago: 700 in the period, 10 a day over the last 30 days.
      const records = await sacctRecords([job('1001', 8, 50, -45), job('1002', 10, 30, -5)]);
      const s = await reportUsage(db, {
        site: SITE,
        usage: UsageConfigSchema.parse({ projects: { abc123: 'TG-ABC123' } }),
        since: new Date(Date.now() - 90 * DAY),
        until: new Date(Date.now() - 2 * DAY),
        records,
        log: quietLog,
      });
      expect(s.reported).toBe(2);
    } finally {
      await db.close();
    }
  }, 120_000);
  afterAll(async () => {
    await slack?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('--json: per project the allocation, charged, remaining, percent used and projected exhaustion', async () => {
    const r = await amie('usage', 'summary', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { unit: string; projects: Array<Record<string, unknown>>; alerts: unknown };
    expect(out.unit).toBe('gpu-hours');
    expect(out.projects).toHaveLength(1);
    expect(out.projects[0]).toMatchObject({
      projectId: 'TG-ABC123',
      grantNumber: 'TG-ABC123',
      title: 'Turbulence at small scales',
      active: true,
      unit: 'gpu-hours',
      allocated: 1000,
      startDate: day(-60),
      endDate: day(300),
      charged: 700,
      remaining: 300,
      percentUsed: 70,
      chargedLast30Days: 300,
      ratePerDay: 10,
      projectedExhaustion: day(30),
      projection: 'projected',
      periodActions: [{ allocationType: 'new', serviceUnits: 1000, startDate: day(-60), endDate: day(300) }],
    });
    // 70% is under every threshold: nothing due.
    expect(out.alerts).toEqual({ thresholds: [80, 100], sent: [], failed: [], waiting: [] });
    expect(slack.texts).toEqual([]);
  });

  it('a table for people; --project narrows it, and an unknown project is an error (exit 2)', async () => {
    const r = await amie('usage', 'summary');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`usage against allocations, in gpu-hours ("per day": the last 30 days' average)`);
    expect(lines[1]).toMatch(
      /^project\s+period\s+allocation\s+allocated\s+charged\s+remaining\s+used\s+per day\s+runs out$/,
    );
    expect(lines[3]).toMatch(
      new RegExp(`^TG-ABC123\\s+${day(-60)}\\.\\.${day(300)}\\s+new\\s+1000\\s+700\\s+300\\s+70%\\s+10\\s+${day(30)}$`),
    );
    const one = await amie('usage', 'summary', '--project', 'TG-ABC123', '--json', '--no-alerts');
    expect(JSON.parse(one.stdout)).toMatchObject({ projects: [{ projectId: 'TG-ABC123' }], alerts: null });
    const none = await amie('usage', 'summary', '--project', 'TG-NOPE');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--project: no project "TG-NOPE" in the registry');
  });

  it('an alert due without the bot token is an error (exit 2) after the table, and nothing is posted', async () => {
    // 50% is passed already (70% used); the usual configuration alerts only from 80%.
    const lowered = join(dir, 'alerts-from-50.yaml');
    writeFileSync(lowered, readFileSync(config, 'utf8').replace('alerts: [80, 100]', 'alerts: [50]'));
    const r = await amieInProcess(['-c', lowered, 'usage', 'summary'], {
      cwd: dir,
      env: cleanEnv({ AMIE_LOG_LEVEL: 'warn', SLACK_BOT_TOKEN: '' }),
      trimmed: true,
    });
    expect(r.code).toBe(2);
    expect(r.stdout, r.stderr).toMatch(/^TG-ABC123\s.*\s70%\s/m);
    expect(r.stderr).toContain('SLACK_BOT_TOKEN');
    expect(slack.texts).toEqual([]);
  });

  it('report-usage posts the alert a threshold crossed, once; summary reruns do not repeat it', async () => {
    const r = await amie('report-usage', '--since', day(-3), '--until', time(0));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('alert posted to Slack: TG-ABC123 passed 80% (85% used)');
    expect(slack.texts).toHaveLength(1);
    expect(slack.texts[0]).toContain('has used 85% of its allocation (850 of 1000 gpu-hours');
    const again = await amie('usage', 'summary');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).not.toContain('alert');
    expect(slack.texts).toHaveLength(1);
  });
});
