/**
 * Packet text as an attacker would write it, through the real `amie process` path: tag and
 * subtag names that are Object.prototype's own property names, on both packet sources. One
 * such packet must become that packet's own outcome; every other packet of the run is answered.
 */
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PacketResult, RunSummary } from '../../src/dispatch/index.js';
import { SlackConfigSchema, SlackNotifier } from '../../src/notify/index.js';
import { type Database } from '../../src/db/index.js';
import {
  PacketBody,
  compositeSubtags,
  isPacketTypeName,
  specOf,
  validateBody,
  type DataRow,
  type PacketTypeName,
  type TagValue,
} from '../../src/protocol/index.js';
import { openTransaction, writePacket } from '../../src/store/index.js';
import { SITE } from '../helpers/amie.js';
import { driverCases, preferredDriver, type DriverCase } from '../helpers/db.js';
import { CliSite } from '../helpers/cli.js';
import { amieInProcess } from '../helpers/cli.js';
import { plainLines, scenarioRac, scenarioRpc } from '../helpers/reliability.js';
import { FakeSlack, SLACK_TOKEN } from '../notify/slack-server.js';
import { FakeAmieRest } from '../sources/fake-amie-rest.js';

/** Names every plain object answers to through its prototype. */
const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty'] as const;

const KEY_VAR = 'AMIE_TEST_HOSTILE_KEY';

type Tags = Record<string, TagValue>;

/** An object with `name` as an own key whatever it is (a literal `__proto__:` would set the prototype). */
function withOwn(tags: Tags, name: string, value: TagValue): Tags {
  const out = { ...tags };
  Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  return out;
}

function entry(name: string, value: string): Record<string, string> {
  return withOwn({}, name, value) as Record<string, string>;
}

const RPC: Tags = scenarioRpc('TG-HOST01', 'p-host01', 'host-rpc-1');

const rac = (n: number): Tags => scenarioRac('TG-HOST01', 'p-host01', `Host${n}`, String(5551000 + n));

/** What the run must do with one packet. */
type Want = { answer: string } | { failure: RegExp } | { answerOrFailure: true };

interface Case {
  name: string;
  type: 'request_project_create' | 'request_account_create';
  tags: Tags;
  want: Want;
}

/** Good packets around hostile ones: the good ones must be answered in the same run. */
function corpus(): Case[] {
  const cases: Case[] = [
    { name: 'good RPC', type: 'request_project_create', tags: RPC, want: { answer: 'notify_project_create' } },
  ];
  let n = 0;
  for (const name of PROTOTYPE_NAMES) {
    // An extra tag the protocol does not know: the packet is readable, the handler decides.
    cases.push({
      name: `RAC with a tag named ${name}`,
      type: 'request_account_create',
      tags: withOwn(rac(++n), name, 'x'),
      want: { answerOrFailure: true },
    });
    cases.push({
      name: `RAC with a composite tag named ${name}`,
      type: 'request_account_create',
      tags: withOwn(rac(++n), name, [entry(name, 'x'), { Site: 'X' }]),
      want: { answerOrFailure: true },
    });
    // A composite entry whose only subtag is a prototype name: it has neither PersonID nor Site.
    cases.push({
      name: `RAC with a SitePersonId subtag named ${name}`,
      type: 'request_account_create',
      tags: { ...rac(++n), SitePersonId: [entry(name, 'x')] },
      want: { failure: /SitePersonId: entry at seq 0 has no PersonID or Site/ },
    });
    cases.push({
      name: `good RAC after ${name}`,
      type: 'request_account_create',
      tags: rac(++n),
      want: { answer: 'notify_account_create' },
    });
  }
  return cases;
}

/** data_tbl rows of a body, written out by hand (the code under test must not build them). */
function rowsOf(tags: Tags): DataRow[] {
  const rows: DataRow[] = [];
  for (const [tag, value] of Object.entries(tags)) {
    if (typeof value === 'string') rows.push({ tag, subtag: null, seq: 0, value });
    else
      value.forEach((item, seq) => {
        if (typeof item === 'string') rows.push({ tag, subtag: null, seq, value: item });
        else for (const [subtag, v] of Object.entries(item)) rows.push({ tag, subtag, seq, value: v });
      });
  }
  return rows;
}

interface Reply {
  type: string;
  statusCode?: string;
  message?: string;
}

/** The problems with the replies a case got. */
function misfit(c: Case, replies: Reply[]): string[] {
  if (replies.length !== 1) return [`${c.name}: expected exactly one reply, got ${JSON.stringify(replies)}`];
  const [r] = replies as [Reply];
  const failure = r.type === 'inform_transaction_complete' && r.statusCode === 'Failure';
  const w = c.want;
  if ('answer' in w && r.type !== w.answer) return [`${c.name}: expected ${w.answer}, got ${JSON.stringify(r)}`];
  if ('failure' in w && !(failure && w.failure.test(r.message ?? '')))
    return [`${c.name}: expected a failure ITC matching ${w.failure}, got ${JSON.stringify(r)}`];
  if ('answerOrFailure' in w && !failure && r.type !== 'notify_account_create')
    return [`${c.name}: expected NAC or a failure ITC, got ${JSON.stringify(r)}`];
  return [];
}

describe('prototype names in the protocol model', () => {
  it('[12.1] a tag, subtag or type named like a prototype property is plain data, kept as given', () => {
    for (const name of PROTOTYPE_NAMES) {
      expect(compositeSubtags(name)).toBeUndefined();
      expect(isPacketTypeName(name)).toBe(false);
      expect(() => specOf(name as PacketTypeName)).toThrow(/unknown AMIE packet type/);
      const fromRows = PacketBody.fromRows([
        { tag: name, subtag: null, seq: 0, value: 'x' },
        { tag: 'SitePersonId', subtag: name, seq: 0, value: 'y' },
      ]);
      const fromJson = PacketBody.fromJSON(JSON.parse(`{"${name}": "x", "SitePersonId": [{"${name}": "y"}]}`));
      for (const body of [fromRows, fromJson]) {
        const json = body.toJSON();
        expect(Object.getPrototypeOf(json)).toBe(Object.prototype);
        expect(Object.getOwnPropertyDescriptor(json, name)?.value).toBe('x');
        const [entry] = body.getEntries('SitePersonId');
        expect(Object.getOwnPropertyDescriptor(entry, name)?.value).toBe('y');
        expect(body.problems.map((p) => p.message)).toEqual(['SitePersonId: entry at seq 0 has no PersonID or Site']);
        expect(validateBody('request_account_create', body).length).toBeGreaterThan(0);
      }
    }
  });

  it('[12.1] whatever goes wrong reading a body becomes that body’s problem, never an exception', () => {
    const row = { subtag: null, seq: 0, value: 'x' } as unknown as DataRow;
    Object.defineProperty(row, 'tag', {
      get: () => {
        throw new TypeError('boom');
      },
    });
    const body = PacketBody.fromRows([row]);
    expect(body.problems.map((p) => p.message)).toEqual(['the body cannot be read: boom']);
    expect(body.tags()).toEqual([]);
  });
});

/** A site for `amie process`: a fresh, initialised database (PostgreSQL, or an embedded one in a directory) and its config file. */
class TestSite {
  private constructor(private readonly site: CliSite) {}

  static async open(driver: DriverCase): Promise<TestSite> {
    return new TestSite(await CliSite.open(driver, { prefix: 'amie-hostile-', init: true }));
  }

  get dir(): string {
    return this.site.dir;
  }

  close(): Promise<void> {
    return this.site.close();
  }

  withDb<T>(fn: (db: Database) => Promise<T>): Promise<T> {
    return this.site.withDb(fn);
  }

  config(extra: string[] = []): string {
    return this.site.writeConfig(['handler: registry', 'log: { level: warn }', ...extra]);
  }

  amie(args: string[], env: NodeJS.ProcessEnv = {}) {
    return amieInProcess(['-c', this.config(), ...args], { env: { ...process.env, AMIE_DATABASE_URL: '', ...env } });
  }

  /** Puts incoming packets into the AMIE tables as the transfer daemon would, each in a transaction of its own. */
  seed(
    packets: Array<{ type: PacketTypeName; rows: DataRow[] }>,
  ): Promise<Array<{ transRecId: number; packetRecId: number }>> {
    return this.withDb((db) =>
      db.transaction(async (tx) => {
        const out = [];
        for (const p of packets) {
          const { transRecId } = await openTransaction(tx, {
            originatingSiteName: SITE.remoteSite,
            localSiteName: SITE.name,
            remoteSiteName: SITE.remoteSite,
          });
          const { packetRecId } = await writePacket(tx, {
            transRecId,
            packetId: 1,
            type: p.type,
            rows: p.rows,
            outgoing: false,
          });
          out.push({ transRecId, packetRecId });
        }
        return out;
      }),
    );
  }
}

describe.each(driverCases())('hostile tag names through amie process, on $name', (driver) => {
  let site: TestSite;
  const run = it.skipIf(!driver.available);
  beforeEach(async () => {
    if (driver.available) site = await TestSite.open(driver);
  });
  afterEach(async () => {
    if (driver.available) await site.close();
  });

  run(
    '[12.1] AMIE tables: tags and subtags named constructor, __proto__, toString, hasOwnProperty are each their packet’s own outcome; the others are answered',
    async () => {
      const cases = corpus();
      const transRecIds = (await site.seed(cases.map((c) => ({ type: c.type, rows: rowsOf(c.tags) })))).map(
        (x) => x.transRecId,
      );
      const r = await site.amie(['process']);
      expect(plainLines(r.stderr), r.stderr.slice(-2000)).toEqual([]);
      expect(r.stdout).toMatch(new RegExp(`^${cases.length} packet\\(s\\): `));
      const replies = await site.withDb(async (db) => {
        const { rows } = await db.query<{
          trans_rec_id: number;
          type_name: string;
          status: string | null;
          message: string | null;
        }>(
          `SELECT p.trans_rec_id, td.type_name,
                  (SELECT value FROM data_tbl d WHERE d.packet_rec_id = p.packet_rec_id AND d.tag = 'StatusCode') AS status,
                  (SELECT value FROM data_tbl d WHERE d.packet_rec_id = p.packet_rec_id AND d.tag = 'Message') AS message
             FROM packet_tbl p JOIN type_des td ON td.type_id = p.type_id WHERE p.outgoing_flag = 1`,
        );
        return rows;
      });
      const problems = cases.flatMap((c, i) =>
        misfit(
          c,
          replies
            .filter((x) => Number(x.trans_rec_id) === transRecIds[i])
            .map((x) => ({ type: x.type_name, statusCode: x.status ?? undefined, message: x.message ?? undefined })),
        ),
      );
      expect(problems).toEqual([]);
    },
    60_000,
  );

  run(
    '[12.1] REST API: tags and subtags named constructor, __proto__, toString, hasOwnProperty are each their packet’s own outcome; the others are answered',
    async () => {
      const api = await FakeAmieRest.start();
      try {
        const cases = corpus();
        const ids = cases.map((c) => api.addIncoming(c.type, c.tags).packetRecId);
        // On the REST API the type name is outside text too. With its type_id, a packet is that type
        // whatever its name says; with no type_id there is nothing to answer (it is logged and left);
        // with a type_id the toolkit does not know it is left in place as unhandled.
        let n = 100;
        const typed = (type: string, typeId: number | undefined) => {
          const { packetRecId } = api.addIncoming('request_account_create', rac(n++));
          const p = api.packets.get(packetRecId)!;
          p.type = type;
          if (typeId === undefined) delete p.type_id;
          else p.type_id = typeId;
          return packetRecId;
        };
        const asRac = typed('__proto__', 16);
        const nameless = typed('constructor', undefined);
        const unknown = typed('toString', 99);
        const path = site.config([
          `source: { kind: rest, url: "${api.url}", apiKeyEnv: ${KEY_VAR}, timeoutMs: 5000, retries: 1 }`,
        ]);
        const r = await amieInProcess(['-c', path, 'process'], {
          env: { ...process.env, AMIE_DATABASE_URL: '', [KEY_VAR]: api.apiKey },
        });
        expect(plainLines(r.stderr), r.stderr.slice(-2000)).toEqual([]);
        expect(r.stdout).toMatch(new RegExp(`^${cases.length + 2} packet\\(s\\): .*unhandled types: type_id 99 ×1`));
        expect(r.stderr).toContain(
          `AMIE REST packet ${nameless} (constructor): type: expected an AMIE packet type name (no type_id was given)`,
        );
        expect(
          misfit(
            {
              name: 'RAC typed __proto__',
              type: 'request_account_create',
              tags: {},
              want: { answer: 'notify_account_create' },
            },
            api.repliesTo(asRac).map((p) => ({ type: p.type })),
          ),
          'RAC typed __proto__',
        ).toEqual([]);
        expect(api.repliesTo(nameless)).toEqual([]);
        expect(api.repliesTo(unknown)).toEqual([]);
        const problems = cases.flatMap((c, i) =>
          misfit(
            c,
            api
              .repliesTo(ids[i]!)
              .map((p) => ({ type: p.type, statusCode: p.body.StatusCode, message: p.body.Message })),
          ),
        );
        expect(problems).toEqual([]);
      } finally {
        await api.close();
      }
    },
    60_000,
  );
});

/** One database is enough for what is printed: PostgreSQL when there is one, else the embedded one. */
const PRINT_DRIVER = preferredDriver();

/** What a terminal would act on: C0 controls but line breaks and tabs, DEL, C1 (CSI as U+009B), bidi overrides. */
const TERMINAL_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Escape sequences a packet could carry: retitle the window, clear the screen, C1 CSI, a bidi override, a hyperlink. */
const EVIL_NAME = 'Evil\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202egnp.exe\u001b]8;;https://evil.example/\u001b\\link';
const EVIL_TAG = '\u001b[31mRed';

describe(`packet text in logs and on the terminal, on ${PRINT_DRIVER.name}`, () => {
  let site: TestSite;
  beforeEach(async () => {
    site = await TestSite.open(PRINT_DRIVER);
  });
  afterEach(async () => {
    await site.close();
  });

  it('[12.12] tags named level, packet_rec_id or msg cannot forge those fields of a JSON log line', async () => {
    const [p] = await site.seed([
      {
        type: 'notify_person_duplicate',
        rows: rowsOf({
          PersonID1: 'dup-a',
          PersonID2: 'dup-b',
          level: '10',
          packet_rec_id: '999999',
          msg: 'all is well',
          time: '0',
        }),
      },
    ]);
    const r = await site.amie(['process']);
    expect(plainLines(r.stderr)).toEqual([]);
    const lines = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = lines.find((l) => String(l.msg).includes('duplicate person'));
    expect(line, r.stderr).toBeDefined();
    expect(line).toMatchObject({
      level: 40,
      packet_rec_id: p!.packetRecId,
      msg: expect.stringContaining('duplicate person'),
    });
    expect(line!.time).not.toBe('0');
    expect(line!.tags).toMatchObject({ level: '10', packet_rec_id: '999999', msg: 'all is well' });
  }, 60_000);

  it('[12.12] packets show and list print escape sequences of packet text escaped, --json keeps them exact', async () => {
    const [p] = await site.seed([
      { type: 'request_account_create', rows: rowsOf({ ...rac(1), UserLastName: EVIL_NAME, [EVIL_TAG]: EVIL_NAME }) },
    ]);
    // The packet is refused for its control characters; the reason is printed too (the audit).
    const processed = await site.amie(['process']);
    expect(plainLines(processed.stderr)).toEqual([]);
    expect(processed.stdout).toMatch(/^1 packet\(s\): 0 answered, 1 failed \(1 invalid\)/);

    const show = await site.amie(['packets', 'show', String(p!.packetRecId)]);
    expect(show.code).toBe(0);
    expect(show.stdout).not.toMatch(TERMINAL_CONTROL);
    expect(show.stdout).toContain('  UserLastName: Evil\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u202egnp.exe');
    expect(show.stdout).toContain('  \\u001b[31mRed: Evil\\u001b]0;pwned');
    expect(show.stdout).toContain(
      'invalid: invalid request_account_create: \\u001b[31mRed: the tag name contains the control character U+001B',
    );
    const message = await site.withDb(async (db) => {
      const { rows } = await db.query<{ value: string }>(
        `SELECT d.value FROM data_tbl d JOIN packet_tbl r ON r.packet_rec_id = d.packet_rec_id
          WHERE r.trans_rec_id = $1 AND r.outgoing_flag = 1 AND d.tag = 'Message'`,
        [p!.transRecId],
      );
      return rows[0]?.value ?? '';
    });
    // The failure sent to central names both problems, its quotes of packet text escaped too.
    expect(message).toContain('\\u001b[31mRed: the tag name contains the control character U+001B');
    expect(message).toMatch(/UserLastName: "Evil\\u001b\]0;pwned\\u0007/);
    expect(message).not.toMatch(TERMINAL_CONTROL);

    const list = await site.amie(['packets', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toMatch(TERMINAL_CONTROL);

    const json = await site.amie(['packets', 'show', String(p!.packetRecId), '--json']);
    expect(json.stdout).not.toMatch(TERMINAL_CONTROL);
    const shown = JSON.parse(json.stdout) as { body: Record<string, unknown> };
    expect(shown.body.UserLastName).toBe(EVIL_NAME);
    expect(shown.body[EVIL_TAG]).toBe(EVIL_NAME);
  }, 60_000);
});

describe('packet text in Slack, through the real @slack/web-api client', () => {
  const slack = new FakeSlack();
  beforeAll(() => slack.start());
  afterAll(() => slack.stop());

  it('[12.17] names and reasons cannot format (*, _, ~, `) or link (URLs, host names, addresses); the template keeps its own formatting', async () => {
    const result: PacketResult = {
      packetRecId: 7,
      transRecId: 3,
      transactionId: 900007,
      type: 'request_account_create',
      outcome: 'fail',
      reason:
        'see https://evil.example/login, www.evil.example, evil.example or mail help@evil.example; ~urgent~ `rm -rf`',
      keys: { ProjectID: 'p_abc_123', UserLastName: '*Admin* _approved_ ~x~', PiLastName: 'http://10.0.0.1:8080/' },
      durationMs: 5,
    };
    const summary: RunSummary = {
      runId: 'run-17',
      dryRun: false,
      taken: 1,
      answered: 0,
      failed: 1,
      invalid: 0,
      deferred: 0,
      errors: 0,
      ignored: 0,
      closed: 0,
      unhandled: {},
      results: [result],
      durationMs: 10,
    };
    const config = SlackConfigSchema.parse({ channel: '#amie-ops', apiUrl: slack.url, summary: 'never' });
    const notifier = new SlackNotifier({ token: SLACK_TOKEN, config, site: 'EXAMPLE', log: pino({ level: 'silent' }) });
    expect(await notifier.notifyRun(summary)).toEqual({ sent: 1, dropped: 0 });
    const [text] = slack.texts;
    // The template's own bold stays; inside words underscores stay (p_abc_123, request_account_create).
    expect(text).toMatch(/^:x: EXAMPLE: \*request_account_create\* transaction 900007 \(ProjectID p_abc_123, /);
    const values = text!.replace(/^:x: EXAMPLE: \*request_account_create\* /, '');
    // No marker that Slack could pair, nothing it would link.
    expect(values).not.toMatch(/[*~`]/);
    expect(values).not.toMatch(/(?<![\p{L}\p{N}])_|_(?![\p{L}\p{N}])/u);
    expect(values).not.toMatch(/:\/\/|\b[a-z0-9-]+\.[a-z]/i);
    expect(values).toContain('UserLastName \u2217Admin\u2217 \uff3fapproved\uff3f \u223cx\u223c');
    expect(values).toContain(
      'https\ua789//evil\u2024example/login, www\u2024evil\u2024example, evil\u2024example or mail help@evil\u2024example',
    );
    expect(values).toContain('\u02cbrm -rf\u02cb');
  });
});
