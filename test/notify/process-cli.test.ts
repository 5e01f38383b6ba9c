import { resolve } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { driverCases } from '../helpers/db.js';
import { amieInProcess, cliSiteEachTest } from '../helpers/cli.js';
import { SITE, racTags, seedIncoming, seedRacs } from '../helpers/amie.js';
import { FakeSlack, SLACK_TOKEN, closedPortUrl } from './slack-server.js';

// `amie process` as cron runs it, with Slack answering, down, hanging, or its token missing.

const HANDLER = resolve('test/fixtures/handlers/account-handler.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** When the process had exited (ms since the epoch). */
  exitedAt: number;
  startedAt: number;
}

async function amie(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const startedAt = Date.now();
  const { code, stdout, stderr } = await amieInProcess(args, { env: { ...process.env, ...env } });
  return { code, stdout, stderr, exitedAt: Date.now(), startedAt };
}

function logLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Milliseconds from the pass's "run finished" log line to the first line with message `msg`, or to the exit. */
function msAfterPass(run: Run, msg?: string): number {
  const lines = logLines(run.stderr);
  const finished = lines.find((l) => l.msg === 'run finished');
  expect(finished, run.stderr).toBeDefined();
  const end = msg === undefined ? run.exitedAt : Date.parse(String(lines.find((l) => l.msg === msg)?.time));
  return end - Date.parse(String(finished!.time));
}

const slack = new FakeSlack();
beforeAll(() => slack.start());
afterAll(() => slack.stop());

describe.each(driverCases())('amie process with Slack notifications on $name', (driver) => {
  const s = cliSiteEachTest(driver, { prefix: 'amie-notify-', init: true });
  beforeEach(() => {
    slack.requests.length = 0;
    slack.mode = { kind: 'ok' };
  });
  const run = it.skipIf(!driver.available);
  const withDb = <T>(fn: (db: Database) => Promise<T>) => s.site.withDb(fn);

  function writeConfig(slackLines: string[]) {
    s.site.writeConfig([
      `handler: { module: "${HANDLER}" }`,
      'log: { level: info }',
      'notify:',
      '  slack:',
      '    channel: C0123ABCD',
      ...slackLines.map((l) => `    ${l}`),
    ]);
  }

  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, SLACK_BOT_TOKEN: SLACK_TOKEN, ...extra };
    delete e.AMIE_CONFIG;
    delete e.AMIE_DATABASE_URL;
    delete e.AMIE_LOG_LEVEL;
    return e;
  };

  /** Incoming packets still pending, and replies written. */
  const counts = () =>
    withDb(async (db) => {
      const { rows } = await db.query<{ pending: number; replies: number }>(
        `SELECT count(*) FILTER (WHERE outgoing_flag = 0 AND state_id = 2)::int AS pending,
                count(*) FILTER (WHERE outgoing_flag = 1)::int AS replies
           FROM packet_tbl`,
      );
      return rows[0]!;
    });

  run('posts a message per packet, the failure with its reason, and the summary; a dry run posts nothing', async () => {
    await withDb(async (db) => {
      await initDatabase(db);
      await seedRacs(db, 3);
      // Two resources in ResourceList: invalid, answered with a failure ITC. The name is hostile text for Slack.
      await seedIncoming(
        db,
        'request_account_create',
        racTags(9, { ResourceList: [SITE.resource, 'other.example.org'], UserLastName: '<!channel> & co' }),
      );
    });
    writeConfig([`apiUrl: ${slack.url}`]);

    const dry = await amie(['-c', s.site.config, 'process', '--dry-run'], env());
    expect(dry.code, dry.stderr).toBe(1);
    expect(slack.requests).toHaveLength(0);

    const real = await amie(['-c', s.site.config, 'process'], env());
    expect(real.code, real.stderr).toBe(1); // the invalid packet, as without Slack
    expect((await counts()).pending, real.stdout + real.stderr).toBe(0);
    expect(
      slack.requests.every((r) => r.authorization === `Bearer ${SLACK_TOKEN}` && r.body.channel === 'C0123ABCD'),
    ).toBe(true);
    const texts = slack.texts;
    expect(texts).toHaveLength(5);
    const answered = texts.filter((x) =>
      x.startsWith(':white_check_mark: EXAMPLE: *request_account_create* transaction 9000'),
    );
    expect(answered).toHaveLength(3);
    for (const x of answered)
      expect(x).toMatch(
        /\(ProjectID p-abc123, GrantNumber TG-ABC123, UserLastName O'Neil\d\): answered with notify_account_create$/,
      );
    const failure = texts.find((x) => x.startsWith(':x:'));
    expect(failure).toMatch(
      /UserLastName &lt;!channel&gt; &amp; co\): invalid packet, answered with a failure inform_transaction_complete: .*ResourceList/,
    );
    expect(failure).not.toContain('<!channel>');
    expect(texts[4]).toMatch(
      /^:bar_chart: EXAMPLE: 4 packet\(s\) in .*: 3 answered, 1 failed \(1 invalid\), 0 deferred/,
    );
    expect(real.stderr).not.toContain(SLACK_TOKEN);
  });

  for (const how of ['down', 'hanging'] as const) {
    run(`with Slack ${how}, answers every packet on time and exits 0`, async () => {
      await withDb(async (db) => {
        await initDatabase(db);
        await seedRacs(db, 5);
      });
      const timeoutMs = 1500;
      if (how === 'hanging') slack.mode = { kind: 'hang' };
      writeConfig([`apiUrl: ${how === 'down' ? await closedPortUrl() : slack.url}`, `timeoutMs: ${timeoutMs}`]);

      const r = await amie(['-c', s.site.config, 'process'], env());
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^5 packet\(s\): 5 answered/m);
      expect(await counts()).toEqual({ pending: 0, replies: 5 });
      // Slack cost the pass at most its timeout, and nothing of it kept the process alive afterwards.
      const slackMs = msAfterPass(r, 'Slack notification failed; 6 message(s) not posted');
      expect(slackMs).toBeLessThan(timeoutMs + 500);
      if (how === 'hanging') expect(slackMs).toBeGreaterThanOrEqual(timeoutMs - 50);
      expect(msAfterPass(r)).toBeLessThan(timeoutMs + 5000);
      expect(r.exitedAt - r.startedAt).toBeLessThan(30_000);
      const warning = logLines(r.stderr).filter((l) => l.level === 40);
      expect(warning).toEqual([
        expect.objectContaining({
          msg: 'Slack notification failed; 6 message(s) not posted',
          err:
            how === 'down'
              ? expect.stringMatching(/^cannot reach Slack at .*: ECONNREFUSED$/)
              : 'Slack did not answer within notify.slack.timeoutMs (1500 ms)',
        }),
      ]);
      if (how === 'hanging') expect(slack.requests).toHaveLength(1);
      expect(r.stderr).not.toContain(SLACK_TOKEN);
    });
  }

  run('without the bot token, stops at start naming the variable, before touching any packet', async () => {
    await withDb(async (db) => {
      await initDatabase(db);
      await seedRacs(db, 2);
    });
    writeConfig([`apiUrl: ${slack.url}`, 'tokenEnv: AMIE_SLACK_TOKEN']);
    const r = await amie(['-c', s.site.config, 'process'], env());
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('amie: notify.slack.tokenEnv: environment variable AMIE_SLACK_TOKEN is not set\n');
    expect(await counts()).toEqual({ pending: 2, replies: 0 });
    expect(slack.requests).toHaveLength(0);
  });
});
