/**
 * Packet text as an attacker would write it, through the real `amie process` path: tag and
 * subtag names that are Object.prototype's own property names, on both packet sources. One
 * such packet must become that packet's own outcome; every other packet of the run is answered.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openPglite, type Database } from '../../src/db/index.js';
import { PacketBody, compositeSubtags, isPacketTypeName, specOf, validateBody, type DataRow, type PacketTypeName, type TagValue } from '../../src/protocol/index.js';
import { initDatabase, openTransaction, writePacket } from '../../src/store/index.js';
import { SITE } from '../helpers/amie.js';
import { driverCases, type TestDatabase } from '../helpers/db.js';
import { plainLines, runAmie } from '../helpers/reliability.js';
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

const RPC: Tags = {
  AllocationType: 'new',
  GrantNumber: 'TG-HOST01',
  ProjectID: 'p-host01',
  PfosNumber: '1234567',
  PiFirstName: 'Jane',
  PiLastName: 'Doe',
  PiOrganization: 'Example University',
  PiOrgCode: '0012345',
  PiGlobalID: '5550001',
  StartDate: '2026-07-01',
  EndDate: '2027-06-30',
  ResourceList: [SITE.resource],
  RecordID: 'host-rpc-1',
  ServiceUnitsAllocated: '1000',
};

function rac(n: number): Tags {
  return {
    GrantNumber: 'TG-HOST01',
    ProjectID: 'p-host01',
    ResourceList: [SITE.resource],
    UserFirstName: 'Ann',
    UserLastName: `Host${n}`,
    UserOrganization: 'Example University',
    UserOrgCode: '0012345',
    UserGlobalID: String(5551000 + n),
  };
}

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
  const cases: Case[] = [{ name: 'good RPC', type: 'request_project_create', tags: RPC, want: { answer: 'notify_project_create' } }];
  let n = 0;
  for (const name of PROTOTYPE_NAMES) {
    // An extra tag the protocol does not know: the packet is readable, the handler decides.
    cases.push({ name: `RAC with a tag named ${name}`, type: 'request_account_create', tags: withOwn(rac(++n), name, 'x'), want: { answerOrFailure: true } });
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
    cases.push({ name: `good RAC after ${name}`, type: 'request_account_create', tags: rac(++n), want: { answer: 'notify_account_create' } });
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
  if ('failure' in w && !(failure && w.failure.test(r.message ?? ''))) return [`${c.name}: expected a failure ITC matching ${w.failure}, got ${JSON.stringify(r)}`];
  if ('answerOrFailure' in w && !failure && r.type !== 'notify_account_create') return [`${c.name}: expected NAC or a failure ITC, got ${JSON.stringify(r)}`];
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
    Object.defineProperty(row, 'tag', { get: () => { throw new TypeError('boom'); } });
    const body = PacketBody.fromRows([row]);
    expect(body.problems.map((p) => p.message)).toEqual(['the body cannot be read: boom']);
    expect(body.tags()).toEqual([]);
  });
});

describe.each(driverCases())('hostile tag names through amie process, on $name', (driver) => {
  let dir: string;
  let t: TestDatabase | undefined;
  let pglitePath: string | undefined;
  const run = it.skipIf(!driver.available);

  beforeEach(async () => {
    if (!driver.available) return;
    dir = mkdtempSync(join(tmpdir(), 'amie-hostile-'));
    if (driver.name === 'pg') t = await driver.open();
    else pglitePath = join(dir, 'db');
    await withDb((db) => initDatabase(db));
  });
  afterEach(async () => {
    if (!driver.available) return;
    await t?.cleanup();
    t = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function withDb<T>(fn: (db: Database) => Promise<T>): Promise<T> {
    if (t) return fn(t.db);
    const db = await openPglite({ path: pglitePath! });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }

  function config(extra: string[] = []): string {
    const path = join(dir, 'amie.yaml');
    writeFileSync(
      path,
      [
        `site: { name: ${SITE.name}, resource: ${SITE.resource} }`,
        t ? `database: { url: "${t.url}" }` : `database: { path: "${pglitePath}" }`,
        'handler: registry',
        'log: { level: warn }',
        ...extra,
      ].join('\n'),
    );
    return path;
  }

  run(
    '[12.1] AMIE tables: tags and subtags named constructor, __proto__, toString, hasOwnProperty are each their packet’s own outcome; the others are answered',
    async () => {
      const cases = corpus();
      const transRecIds = await withDb((db) =>
        db.transaction(async (tx) => {
          const ids: number[] = [];
          for (const c of cases) {
            const { transRecId } = await openTransaction(tx, { originatingSiteName: SITE.remoteSite, localSiteName: SITE.name, remoteSiteName: SITE.remoteSite });
            await writePacket(tx, { transRecId, packetId: 1, type: c.type, rows: rowsOf(c.tags), outgoing: false });
            ids.push(transRecId);
          }
          return ids;
        }),
      );
      const r = await runAmie(['-c', config(), 'process'], { AMIE_DATABASE_URL: '' }).done;
      expect(plainLines(r.stderr), r.stderr.slice(-2000)).toEqual([]);
      expect(r.stdout).toMatch(new RegExp(`^${cases.length} packet\\(s\\): `));
      const replies = await withDb(async (db) => {
        const { rows } = await db.query<{ trans_rec_id: number; type_name: string; status: string | null; message: string | null }>(
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
        const path = config([`source: { kind: rest, url: "${api.url}", apiKeyEnv: ${KEY_VAR}, timeoutMs: 5000, retries: 1 }`]);
        const r = await runAmie(['-c', path, 'process'], { AMIE_DATABASE_URL: '', [KEY_VAR]: api.apiKey }).done;
        expect(plainLines(r.stderr), r.stderr.slice(-2000)).toEqual([]);
        expect(r.stdout).toMatch(new RegExp(`^${cases.length} packet\\(s\\): `));
        const problems = cases.flatMap((c, i) =>
          misfit(
            c,
            api.repliesTo(ids[i]!).map((p) => ({ type: p.type, statusCode: p.body.StatusCode, message: p.body.Message })),
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
