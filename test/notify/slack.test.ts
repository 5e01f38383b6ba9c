import { Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PacketResult, RunSummary } from '../../src/dispatch/index.js';
import { createLogger } from '../../src/log.js';
import {
  SlackConfigSchema,
  SlackNotifier,
  inQuietHours,
  renderTemplate,
  type SlackConfig,
} from '../../src/notify/index.js';
import { FakeSlack, SLACK_TOKEN, closedPortUrl } from './slack-server.js';

// The real @slack/web-api WebClient against a local server that answers like Slack.

function result(outcome: PacketResult['outcome'], extra: Partial<PacketResult> = {}): PacketResult {
  return {
    packetRecId: 101,
    transRecId: 11,
    transactionId: 900001,
    type: 'request_project_create',
    outcome,
    keys: { ProjectID: 'p-abc123', GrantNumber: 'TG-ABC123', PiLastName: 'Smith' },
    durationMs: 12,
    ...(outcome === 'reply' ? { replyType: 'notify_project_create' as const } : {}),
    ...extra,
  };
}

function summaryOf(results: PacketResult[], extra: Partial<RunSummary> = {}): RunSummary {
  const count = (...o: PacketResult['outcome'][]) => results.filter((r) => o.includes(r.outcome)).length;
  const unhandled: Record<string, number> = {};
  for (const r of results) if (r.outcome === 'unhandled') unhandled[r.type] = (unhandled[r.type] ?? 0) + 1;
  return {
    runId: 'run-1',
    dryRun: false,
    taken: results.length,
    answered: count('reply'),
    failed: count('fail'),
    invalid: count('invalid'),
    deferred: count('defer'),
    errors: count('error'),
    ignored: count('ignore'),
    closed: count('closed'),
    unhandled,
    results,
    durationMs: 1234,
    ...extra,
  };
}

/** The log as parsed JSON lines, with the raw text to search for secrets. */
function capturingLog() {
  let raw = '';
  const destination = new Writable({
    write(chunk, _enc, cb) {
      raw += String(chunk);
      cb();
    },
  });
  const log = createLogger({ level: 'debug', destination, env: {} });
  return {
    log,
    raw: () => raw,
    lines: () =>
      raw
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const slack = new FakeSlack();
beforeAll(() => slack.start());
afterAll(() => slack.stop());
beforeEach(() => {
  slack.requests.length = 0;
  slack.mode = { kind: 'ok' };
});

function notifier(
  cfg: Partial<Record<keyof SlackConfig, unknown>> = {},
  opts: { now?: Date; dryRun?: boolean; log?: ReturnType<typeof capturingLog> } = {},
) {
  const config = SlackConfigSchema.parse({ channel: '#amie-ops', apiUrl: slack.url, ...cfg });
  const log = opts.log ?? capturingLog();
  const n = new SlackNotifier({
    token: SLACK_TOKEN,
    config,
    site: 'EXAMPLE',
    log: log.log,
    dryRun: opts.dryRun,
    now: opts.now ? () => opts.now! : undefined,
  });
  return { n, log };
}

describe('SlackNotifier with the real WebClient', () => {
  it('posts a message per packet and a summary, with the token, channel and key fields', async () => {
    const { n } = notifier();
    const failed = result('fail', { packetRecId: 102, transactionId: 900002, reason: 'no such allocation' });
    const out = await n.notifyRun(summaryOf([result('reply'), failed]));
    expect(out).toEqual({ sent: 3, dropped: 0 });
    expect(slack.requests).toHaveLength(3);
    for (const r of slack.requests) {
      expect(r.method).toBe('POST');
      expect(r.path).toBe('/api/chat.postMessage');
      expect(r.authorization).toBe(`Bearer ${SLACK_TOKEN}`);
      expect(r.contentType).toMatch(/application\/x-www-form-urlencoded/);
      expect(r.body.channel).toBe('#amie-ops');
      expect(r.body.token).toBeUndefined();
    }
    expect(slack.texts[0]).toBe(
      ':white_check_mark: EXAMPLE: *request_project_create* transaction 900001 (ProjectID p-abc123, GrantNumber TG-ABC123, PiLastName Smith): answered with notify_project_create',
    );
    expect(slack.texts[1]).toBe(
      ':x: EXAMPLE: *request_project_create* transaction 900002 (ProjectID p-abc123, GrantNumber TG-ABC123, PiLastName Smith): answered with a failure inform_transaction_complete: no such allocation',
    );
    expect(slack.texts[2]).toBe(
      ':bar_chart: EXAMPLE: 2 packet(s) in 1.2 s: 1 answered, 1 failed (0 invalid), 0 deferred (0 by handler errors), 0 ignored, 0 closed, unhandled types: none',
    );
  });

  it('posts deferrals and handler errors with their reason, and names unhandled types', async () => {
    const { n } = notifier({ summary: 'never' });
    await n.notifyRun(
      summaryOf([
        result('defer', { reason: 'waiting for the allocations office' }),
        result('error', { packetRecId: 103, reason: 'sacctmgr exited with 1: Nothing new added' }),
        result('unhandled', { packetRecId: 104, type: 'request_user_modify' }),
      ]),
    );
    expect(slack.texts).toEqual([
      expect.stringMatching(
        /^:hourglass_flowing_sand: .*deferred, offered again next run: waiting for the allocations office$/,
      ),
      expect.stringMatching(/^:x: .*handler error, deferred: sacctmgr exited with 1: Nothing new added$/),
      expect.stringMatching(
        /^:x: EXAMPLE: \*request_user_modify\* .*does not implement this packet type; left pending$/,
      ),
    ]);
  });

  it('fills custom templates, packet tags included, and escapes packet text', async () => {
    const { n } = notifier({
      templates: {
        packet: '{ProjectID} {outcome} -> {replyType} [{UserLastName}]',
        failure: '<!here> {type} {transactionId} failed: {reason}',
        summary: '{taken} taken, {answered} answered in {durationMs} ms',
      },
    });
    await n.notifyRun(
      summaryOf([result('reply'), result('invalid', { reason: 'UserLastName "<!channel> & co" is <bad>' })]),
    );
    expect(slack.texts).toEqual([
      'p-abc123 reply -> notify_project_create []',
      '<!here> request_project_create 900001 failed: UserLastName "&lt;!channel&gt; &amp; co" is &lt;bad&gt;',
      '2 taken, 1 answered in 1234 ms',
    ]);
  });

  it('posts only the outcomes asked for, and caps per-packet messages with a note in the summary', async () => {
    const { n } = notifier({ outcomes: ['fail', 'invalid'], maxPacketMessages: 2 });
    const results = [
      result('reply'),
      result('fail', { packetRecId: 2, reason: 'a' }),
      result('ignore', { reason: 'duplicate' }),
      result('invalid', { packetRecId: 3, reason: 'b' }),
      result('fail', { packetRecId: 4, reason: 'c' }),
    ];
    await n.notifyRun(summaryOf(results));
    expect(slack.texts).toHaveLength(3);
    expect(slack.texts[0]).toMatch(/failure inform_transaction_complete: a$/);
    expect(slack.texts[1]).toMatch(/invalid packet, answered with a failure inform_transaction_complete: b$/);
    expect(slack.texts[2]).toMatch(/^:bar_chart: EXAMPLE: 5 packet\(s\)/);
    expect(slack.texts[2]).toContain('1 more packet message(s) not posted (notify.slack.maxPacketMessages is 2)');
  });

  it('sends the summary always, when something happened, or never', async () => {
    const empty = summaryOf([]);
    await notifier({ summary: 'when-something-happened' }).n.notifyRun(empty);
    expect(slack.requests).toHaveLength(0);
    await notifier({ summary: 'always' }).n.notifyRun(empty);
    expect(slack.texts).toEqual([expect.stringMatching(/^:bar_chart: EXAMPLE: 0 packet\(s\)/)]);
    slack.requests.length = 0;
    await notifier({ summary: 'never' }).n.notifyRun(summaryOf([result('reply')]));
    expect(slack.texts).toEqual([expect.stringMatching(/answered with notify_project_create$/)]);
  });

  it('in quiet hours posts only failures (and the summary of a pass that had one), or nothing', async () => {
    const night = new Date('2026-03-02T23:30:00Z');
    const quiet = { from: '22:00', to: '07:00', timezone: 'UTC' };
    const mixed = summaryOf([
      result('reply'),
      result('defer', { reason: 'later' }),
      result('fail', { packetRecId: 5, reason: 'refused' }),
    ]);

    await notifier({ quietHours: quiet }, { now: night }).n.notifyRun(mixed);
    expect(slack.texts).toEqual([expect.stringMatching(/: refused$/), expect.stringMatching(/^:bar_chart:/)]);

    slack.requests.length = 0;
    await notifier({ quietHours: quiet }, { now: night }).n.notifyRun(
      summaryOf([result('reply'), result('defer', { reason: 'later' })]),
    );
    expect(slack.requests).toHaveLength(0);

    await notifier({ quietHours: { ...quiet, send: 'nothing' } }, { now: night }).n.notifyRun(mixed);
    expect(slack.requests).toHaveLength(0);

    // Outside the window everything the filters allow is posted.
    await notifier({ quietHours: quiet }, { now: new Date('2026-03-02T12:00:00Z') }).n.notifyRun(mixed);
    expect(slack.requests).toHaveLength(4);
  });

  it('reads quiet hours on the clock of the configured time zone, across midnight', () => {
    const w = { from: '22:00', to: '07:00', timezone: 'America/Chicago' };
    expect(inQuietHours(new Date('2026-07-01T03:30:00Z'), w)).toBe(true); // 22:30 in Chicago (CDT)
    expect(inQuietHours(new Date('2026-07-01T11:59:00Z'), w)).toBe(true); // 06:59 CDT
    expect(inQuietHours(new Date('2026-07-01T12:00:00Z'), w)).toBe(false); // 07:00 CDT: the window has ended
    expect(inQuietHours(new Date('2026-07-01T18:00:00Z'), w)).toBe(false); // 13:00 CDT
    expect(inQuietHours(new Date('2026-07-01T13:00:00Z'), { from: '08:00', to: '09:00', timezone: 'UTC' })).toBe(false);
    expect(inQuietHours(new Date('2026-07-01T08:15:00Z'), { from: '08:00', to: '09:00', timezone: 'UTC' })).toBe(true);
  });

  it('posts a deferral once per process, not on every pass of --watch', async () => {
    const { n } = notifier({ summary: 'never' });
    const waiting = result('defer', { reason: 'waiting for approval' });
    await n.notifyRun(summaryOf([waiting]));
    await n.notifyRun(summaryOf([waiting]));
    await n.notifyRun(summaryOf([{ ...waiting, reason: 'approval refused, retrying' }]));
    expect(slack.texts).toEqual([
      expect.stringMatching(/waiting for approval$/),
      expect.stringMatching(/approval refused, retrying$/),
    ]);
    // Only the last pass's deferrals are remembered.
    await n.notifyRun(summaryOf([result('reply')]));
    await n.notifyRun(summaryOf([waiting]));
    expect(slack.texts).toHaveLength(4);
    expect(slack.texts[3]).toMatch(/waiting for approval$/);
  });

  it('posts nothing in a dry run and logs what it would have posted', async () => {
    const log = capturingLog();
    const { n } = notifier({}, { dryRun: true, log });
    expect(await n.notifyRun(summaryOf([result('reply')], { dryRun: true }))).toEqual({ sent: 0, dropped: 0 });
    expect(slack.requests).toHaveLength(0);
    expect(log.lines().filter((l) => l.msg === 'dry run: Slack message not posted')).toHaveLength(2);
  });

  it('clips a very long message instead of having Slack refuse it', async () => {
    const { n } = notifier({ summary: 'never' });
    await n.notifyRun(summaryOf([result('fail', { reason: 'x'.repeat(50_000) })]));
    expect(slack.texts).toHaveLength(1);
    expect(slack.texts[0]).toHaveLength(3000);
    expect(slack.texts[0]!.endsWith('x…')).toBe(true);
  });

  it('renders a missing value as empty and leaves braces that are not placeholders alone', () => {
    expect(renderTemplate('{a}|{b}|{ c }|{}', { a: 1 })).toBe('1||{ c }|{}');
  });
});

describe('SlackNotifier when Slack is down, hanging or refusing', () => {
  const many = summaryOf(Array.from({ length: 10 }, (_, i) => result('reply', { packetRecId: i + 1 })));

  it('gives up at once when nothing listens, logs one warning without the token', async () => {
    const log = capturingLog();
    const { n } = notifier({ apiUrl: await closedPortUrl(), timeoutMs: 3000 }, { log });
    const started = Date.now();
    const out = await n.notifyRun(many);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(out).toMatchObject({
      sent: 0,
      dropped: 11,
      error: expect.stringMatching(/^cannot reach Slack at http:\/\/127\.0\.0\.1:\d+\/api\/: ECONNREFUSED$/),
    });
    const warnings = log.lines().filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      msg: 'Slack notification failed; 11 message(s) not posted',
      channel: '#amie-ops',
      sent: 0,
      dropped: 11,
    });
    expect(log.raw()).not.toContain(SLACK_TOKEN);
  });

  it('spends at most timeoutMs on a Slack that never answers, for the whole pass', async () => {
    slack.mode = { kind: 'hang' };
    const log = capturingLog();
    const { n } = notifier({ timeoutMs: 700 }, { log });
    const started = Date.now();
    const out = await n.notifyRun(many);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(650);
    expect(took).toBeLessThan(1500);
    expect(out).toEqual({ sent: 0, dropped: 11, error: 'Slack did not answer within notify.slack.timeoutMs (700 ms)' });
    expect(slack.requests).toHaveLength(1);
    expect(log.raw()).not.toContain(SLACK_TOKEN);
  });

  it('stops at the deadline when Slack answers only the first messages', async () => {
    const { n } = notifier({ timeoutMs: 800 });
    const pass = n.notifyRun(many);
    // Two messages through, then Slack stops answering.
    while (slack.requests.length < 2) await new Promise((r) => setTimeout(r, 5));
    slack.mode = { kind: 'hang' };
    const out = await pass;
    expect(out.sent).toBeGreaterThanOrEqual(2);
    expect(out.sent + out.dropped).toBe(11);
    expect(out.error).toMatch(/did not answer within notify\.slack\.timeoutMs \(800 ms\)/);
  });

  it('stops after Slack refuses the first message, naming the reason and what to do', async () => {
    slack.mode = { kind: 'refuse', error: 'not_in_channel' };
    const { n } = notifier();
    const out = await n.notifyRun(many);
    expect(out).toEqual({
      sent: 0,
      dropped: 11,
      error: 'Slack refused chat.postMessage: not_in_channel: invite the bot to #amie-ops',
    });
    expect(slack.requests).toHaveLength(1);
  });

  it('does not wait out a rate limit', async () => {
    slack.mode = { kind: 'rate-limit', retryAfter: 30 };
    const { n } = notifier();
    const started = Date.now();
    const out = await n.notifyRun(many);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(out.error).toBe('Slack rate limit reached (retry after 30 s); the remaining messages are dropped');
    expect(slack.requests).toHaveLength(1);
  });
});
