import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/index.js';
import { DEFAULT_NOTIFY_OUTCOMES, createNotifier } from '../../src/notify/index.js';

const MINIMAL = 'site:\n  name: EXAMPLE\n  resource: cluster.example.org\n';

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'config/amie.yaml', {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const slack = (lines: string) => `${MINIMAL}notify:\n  slack:\n    channel: "#amie-ops"\n${lines}`;

describe('notify.slack configuration', () => {
  it('needs only a channel and fills sensible defaults', () => {
    const cfg = parseConfig(slack(''), 'config/amie.yaml', {});
    expect(cfg.notify?.slack).toEqual({
      channel: '#amie-ops',
      tokenEnv: 'SLACK_BOT_TOKEN',
      timeoutMs: 5000,
      outcomes: DEFAULT_NOTIFY_OUTCOMES,
      maxPacketMessages: 20,
      summary: 'when-something-happened',
      templates: {},
    });
    expect(parseConfig(MINIMAL, 'config/amie.yaml', {}).notify).toBeUndefined();
  });

  it('names the key of every mistake', () => {
    expect(
      problemsOf(
        slack(
          [
            '    chanel: x',
            '    apiUrl: slack.com/api',
            '    timeoutMs: 10',
            '    outcomes: [reply, failed]',
            '    summary: sometimes',
            '    tokenEnv: xoxb-123-abc',
            '',
          ].join('\n'),
        ),
      ),
    ).toEqual([
      'config/amie.yaml: notify.slack.tokenEnv: expected the NAME of an environment variable (letters, digits, "_"), not the token itself',
      'config/amie.yaml: notify.slack.apiUrl: expected the http(s) base URL of the Slack Web API, e.g. https://slack.com/api/',
      'config/amie.yaml: notify.slack.timeoutMs: expected at least 100, got number 10',
      'config/amie.yaml: notify.slack.outcomes.1: expected one of "reply", "fail", "invalid", "defer", "error", "ignore", "unhandled", "closed", got "failed"',
      'config/amie.yaml: notify.slack.summary: expected one of "always", "when-something-happened", "never", got "sometimes"',
      'config/amie.yaml: notify.slack.chanel: unknown key (did you mean "channel"?)',
    ]);
    expect(problemsOf(`${MINIMAL}notify:\n  slak: {channel: x}\n`)).toEqual([
      'config/amie.yaml: notify.slak: unknown key (did you mean "slack"?)',
    ]);
    expect(problemsOf(`${MINIMAL}notify:\n  slack: {}\n`)).toEqual([
      'config/amie.yaml: notify.slack.channel: missing: expected a string',
    ]);
  });

  it('checks quiet hours: clock times, a real time zone, a window that is not empty', () => {
    expect(
      problemsOf(slack('    quietHours: {from: "22:00", to: "7am", timezone: Mars/Olympus, send: some}\n')),
    ).toEqual([
      'config/amie.yaml: notify.slack.quietHours.to: expected a time of day as HH:MM (24-hour clock), e.g. "22:00"',
      'config/amie.yaml: notify.slack.quietHours.timezone: expected an IANA time zone name, e.g. "America/Chicago" or "UTC"',
      'config/amie.yaml: notify.slack.quietHours.send: expected one of "failures", "nothing", got "some"',
    ]);
    expect(problemsOf(slack('    quietHours: {from: "07:00", to: "07:00"}\n'))).toEqual([
      'config/amie.yaml: notify.slack.quietHours: from and to are the same time: the quiet window would be empty (or the whole day); remove quietHours or widen it',
    ]);
    const ok = parseConfig(slack('    quietHours: {from: "22:00", to: "07:00", timezone: Europe/Berlin}\n'), 'x', {});
    expect(ok.notify?.slack?.quietHours).toEqual({
      from: '22:00',
      to: '07:00',
      timezone: 'Europe/Berlin',
      send: 'failures',
    });
  });

  it('refuses a placeholder a template cannot fill', () => {
    expect(
      problemsOf(
        slack(
          '    templates:\n      failure: "{type} {transactionID} {ProjectID}"\n      summary: "{taken} {ProjectID}"\n      packt: x\n',
        ),
      ),
    ).toEqual([
      'config/amie.yaml: notify.slack.templates.failure: unknown placeholder {transactionID} (did you mean {transactionId}?): expected one of {site} {type} {transactionId} {packetRecId} {outcome} {reason} {replyType} {keys} {result} {durationMs} {runId} or a tag of the packet such as {ProjectID}',
      'config/amie.yaml: notify.slack.templates.summary: unknown placeholder {ProjectID}: expected one of {site} {runId} {taken} {answered} {failed} {invalid} {deferred} {errors} {ignored} {closed} {unhandled} {unhandledTypes} {durationMs} {duration}',
      'config/amie.yaml: notify.slack.templates.packt: unknown key (did you mean "packet"?)',
    ]);
  });

  it('reads the token from the variable tokenEnv names, and names both when it is unset', () => {
    const cfg = parseConfig(slack('    tokenEnv: AMIE_SLACK_TOKEN\n'), 'x', {});
    const log = pino({ level: 'silent' });
    expect(() => createNotifier(cfg, log, { env: {} })).toThrow(
      new ConfigError('notify.slack.tokenEnv: environment variable AMIE_SLACK_TOKEN is not set'),
    );
    expect(createNotifier(cfg, log, { env: { AMIE_SLACK_TOKEN: 'xoxb-1' } })).toBeDefined();
    expect(createNotifier(parseConfig(MINIMAL, 'x', {}), log, { env: {} })).toBeUndefined();
  });

  it('the commented notify section of config/amie.yaml is valid once uncommented', () => {
    const text = readFileSync('config/amie.yaml', 'utf8');
    const block = /^# notify:\n(?:#.*\n)+/m.exec(text)?.[0];
    expect(block, 'config/amie.yaml has a commented "# notify:" section').toBeDefined();
    const uncommented = block!
      .split('\n')
      .filter((l) => l.startsWith('# ') || l === '#')
      .map((l) => l.slice(2))
      .filter((l) => !/^\s*#/.test(l))
      .join('\n');
    const cfg = parseConfig(`${MINIMAL}${uncommented}\n`, 'config/amie.yaml', {});
    expect(cfg.notify?.slack?.channel).toBeTruthy();
  });
});
