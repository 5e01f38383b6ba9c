/**
 * Hostile input in the AMIE tables: a corpus of malformed packets, mixed with good ones. Every bad
 * packet gets a failure inform_transaction_complete naming its problem, or is recorded in the
 * audit as unprocessable with the reason; the good ones are answered; nothing crashes; the exit
 * code is the README's; a second run answers nothing twice. What the database itself refuses
 * (NUL bytes, invalid UTF-8, unknown type ids, over-long tag names) is shown to be refused, so it
 * can never reach the toolkit.
 */
import { describe, it, expect } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../../src/db/index.js';
import {
  PACKET_TYPE_IDS,
  PacketBody,
  type DataRow,
  type PacketTypeName,
  type TagValue,
} from '../../src/protocol/index.js';
import { initDatabase } from '../../src/store/index.js';
import { SITE } from '../helpers/amie.js';
import { freshPgDatabase } from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import { plainLines, runAmie, scenarioRac, scenarioRpc, writeAmieConfig } from '../helpers/reliability.js';

const T = PACKET_TYPE_IDS;
const KB100 = 100 * 1024;
/** A type a newer AMIE might define: in type_des, unknown to the toolkit. */
const NEWER_TYPE = { id: 99, name: 'request_quantum_allocation' };
/** type_des names are outside text too: names every object has through its prototype, and an escape sequence. */
const HOSTILE_TYPES = [
  { id: 95, name: 'constructor' },
  { id: 96, name: '__proto__' },
  { id: 97, name: 'toString' },
  { id: 98, name: 'hasOwnProperty\u001b]0;pwned\u0007' },
];
const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty'];

const STATE = { completed: 1, inProgress: 2, failed: 3, onHold: 5, xPending: 6, killed: 7 };

const GOOD_RPC: Record<string, TagValue> = scenarioRpc('TG-MAL001', 'p-mal001', 'mal-rpc-1');

const rac = (n: number, extra: Record<string, TagValue | undefined> = {}): Record<string, TagValue> => {
  const tags = { ...scenarioRac('TG-MAL001', 'p-mal001', `Good${n}`, `555${1000 + n}`), ...extra };
  return Object.fromEntries(Object.entries(tags).filter(([, v]) => v !== undefined)) as Record<string, TagValue>;
};

const rowsOf = (tags: Record<string, TagValue>): DataRow[] => PacketBody.fromTags(tags).toRows();

/**
 * What must become of a packet of the corpus: answered with this reply type; answered with a
 * failure ITC whose Message matches every pattern; left in place and recorded in the audit as
 * unprocessable with a matching reason; or not touched at all (its transaction or packet is in a
 * state the transfer daemon owns).
 */
type Expect =
  | { answer: PacketTypeName }
  | { failure: RegExp[] }
  | { answerOrFailure: { answer: PacketTypeName; failure: RegExp } }
  | { failureOrError: RegExp }
  | { unprocessable: RegExp }
  | { untouched: true };

interface Case {
  name: string;
  typeId: number;
  rows: DataRow[];
  transactionState?: number;
  packetState?: number;
  /** Makes the transaction wait for another one (transaction_depends_tbl), in the given state. */
  dependsOnState?: number;
  expect: Expect;
}

const CORPUS: Case[] = [
  {
    name: 'good RPC creating the project',
    typeId: T.request_project_create,
    rows: rowsOf(GOOD_RPC),
    expect: { answer: 'notify_project_create' },
  },
  {
    name: 'RAC missing required tags',
    typeId: T.request_account_create,
    rows: rowsOf(rac(1, { UserLastName: undefined, UserOrgCode: undefined })),
    expect: { failure: [/UserLastName: required tag is missing/, /UserOrgCode: required tag is missing/] },
  },
  {
    name: 'good RAC 1',
    typeId: T.request_account_create,
    rows: rowsOf(rac(101)),
    expect: { answer: 'notify_account_create' },
  },
  {
    name: 'RAC with a blank required tag',
    typeId: T.request_account_create,
    rows: rowsOf(rac(2, { UserFirstName: '   ' })),
    expect: { failure: [/UserFirstName: required tag is empty/] },
  },
  {
    name: 'RAC with two resources in ResourceList',
    typeId: T.request_account_create,
    rows: rowsOf(rac(3, { ResourceList: [SITE.resource, 'other.example.org'] })),
    expect: { failure: [/ResourceList: expected exactly one resource, got 2/] },
  },
  {
    name: 'request_user_modify with an unknown ActionType',
    typeId: T.request_user_modify,
    rows: rowsOf({ ActionType: 'frobnicate', PersonID: 'jdoe', DnList: ['/CN=x'] }),
    expect: { failure: [/ActionType: "frobnicate" is not one of add, delete, replace/] },
  },
  {
    name: 'RPC with wrong dates',
    typeId: T.request_project_create,
    rows: rowsOf({
      ...GOOD_RPC,
      GrantNumber: 'TG-MAL002',
      ProjectID: 'p-mal002',
      RecordID: 'mal-rpc-2',
      StartDate: '2026-13-45',
      EndDate: 'next summer',
    }),
    expect: {
      failure: [/StartDate: "2026-13-45" is not an ISO 8601 date/, /EndDate: "next summer" is not an ISO 8601 date/],
    },
  },
  {
    name: 'RPC with a number that is not one',
    typeId: T.request_project_create,
    rows: rowsOf({
      ...GOOD_RPC,
      GrantNumber: 'TG-MAL003',
      ProjectID: 'p-mal003',
      RecordID: 'mal-rpc-3',
      ServiceUnitsAllocated: 'lots',
    }),
    expect: { failure: [/ServiceUnitsAllocated: "lots" is not a number/] },
  },
  {
    name: 'RPC with an unknown AllocationType',
    typeId: T.request_project_create,
    rows: rowsOf({
      ...GOOD_RPC,
      GrantNumber: 'TG-MAL004',
      ProjectID: 'p-mal004',
      RecordID: 'mal-rpc-4',
      AllocationType: 'gift',
    }),
    expect: { failure: [/AllocationType "gift" is not one of new, renewal/] },
  },
  {
    name: 'good RAC 2',
    typeId: T.request_account_create,
    rows: rowsOf(rac(102)),
    expect: { answer: 'notify_account_create' },
  },
  {
    // Free text may be long and carry line breaks and tabs; whether 100 KB is too long for an
    // Abstract is the toolkit's call, but it must be one answer either way.
    name: 'RPC with a 100 KB multi-line Abstract',
    typeId: T.request_project_create,
    rows: rowsOf({
      ...GOOD_RPC,
      GrantNumber: 'TG-MAL005',
      ProjectID: 'p-mal005',
      RecordID: 'mal-rpc-5',
      Abstract: 'An abstract.\n\tIndented.\r\n'.repeat(KB100 / 26 + 1),
    }),
    expect: { answerOrFailure: { answer: 'notify_project_create', failure: /Abstract/ } },
  },
  {
    name: 'packet of a type a newer AMIE defines (type_des row unknown to the toolkit)',
    typeId: NEWER_TYPE.id,
    rows: rowsOf({ Anything: 'x' }),
    expect: { unprocessable: new RegExp(`unknown packet type id ${NEWER_TYPE.id}`) },
  },
  {
    name: 'incoming packet of a type only a site sends (notify_project_usage)',
    typeId: T.notify_project_usage,
    rows: rowsOf({ ProjectID: 'p-mal001', UsageType: 'normal' }),
    expect: { unprocessable: /notify_project_usage is not a packet type a site receives/ },
  },
  {
    name: 'RAC with no data rows',
    typeId: T.request_account_create,
    rows: [],
    expect: { failure: [/GrantNumber: required tag is missing/, /UserLastName: required tag is missing/] },
  },
  {
    name: 'RAC with duplicate data rows',
    typeId: T.request_account_create,
    rows: [...rowsOf(rac(6)), { tag: 'UserLastName', subtag: null, seq: 0, value: 'Other' }],
    expect: { failure: [/UserLastName: duplicate row for seq 0/] },
  },
  {
    name: 'RAC with a gap in a list',
    typeId: T.request_account_create,
    rows: [
      ...rowsOf(rac(7)),
      { tag: 'UserRequestedLoginList', subtag: null, seq: 0, value: 'gap0' },
      { tag: 'UserRequestedLoginList', subtag: null, seq: 2, value: 'gap2' },
    ],
    expect: { failure: [/UserRequestedLoginList: seq 1 is missing/] },
  },
  {
    name: 'RAC with a composite tag row without subtag',
    typeId: T.request_account_create,
    rows: [...rowsOf(rac(8)), { tag: 'SitePersonId', subtag: null, seq: 0, value: 'X-PORTAL' }],
    expect: { failure: [/SitePersonId: row at seq 0 has no subtag/] },
  },
  {
    name: 'RAC on a project this site does not have',
    typeId: T.request_account_create,
    rows: rowsOf(rac(9, { GrantNumber: 'TG-NOPE', ProjectID: 'p-nope' })),
    expect: { failure: [/no project with ProjectID p-nope or GrantNumber TG-NOPE/] },
  },
  {
    name: 'data_account_create for a person this site does not know',
    typeId: T.data_account_create,
    rows: rowsOf({ PersonID: 'nobody', ProjectID: 'p-mal001' }),
    expect: { failure: [/PersonID nobody is not known/] },
  },
  {
    name: 'RPC whose StartDate is year 0 (no calendar date; PostgreSQL cannot store it)',
    typeId: T.request_project_create,
    rows: rowsOf({
      ...GOOD_RPC,
      GrantNumber: 'TG-MAL007',
      ProjectID: 'p-mal007',
      RecordID: 'mal-rpc-7',
      StartDate: '0000-01-01',
    }),
    expect: { failure: [/StartDate: "0000-01-01" is not an ISO 8601 date/] },
  },
  {
    name: 'good RAC 3',
    typeId: T.request_account_create,
    rows: rowsOf(rac(103)),
    expect: { answer: 'notify_account_create' },
  },
  // Transactions and packets in states the transfer daemon owns: not the toolkit's to answer.
  {
    name: 'RAC in a failed transaction',
    typeId: T.request_account_create,
    rows: rowsOf(rac(10)),
    transactionState: STATE.failed,
    expect: { untouched: true },
  },
  {
    name: 'RAC in a killed transaction',
    typeId: T.request_account_create,
    rows: rowsOf(rac(11)),
    transactionState: STATE.killed,
    expect: { untouched: true },
  },
  {
    name: 'RAC in an on-hold transaction',
    typeId: T.request_account_create,
    rows: rowsOf(rac(12)),
    transactionState: STATE.onHold,
    expect: { untouched: true },
  },
  {
    name: 'RAC packet itself on hold',
    typeId: T.request_account_create,
    rows: rowsOf(rac(13)),
    packetState: STATE.onHold,
    expect: { untouched: true },
  },
  {
    name: 'RAC packet in state x-pending',
    typeId: T.request_account_create,
    rows: rowsOf(rac(14)),
    packetState: STATE.xPending,
    expect: { untouched: true },
  },
  {
    name: 'RAC waiting for a transaction that failed',
    typeId: T.request_account_create,
    rows: rowsOf(rac(15)),
    dependsOnState: STATE.failed,
    expect: { untouched: true },
  },
  {
    name: 'good RAC 4',
    typeId: T.request_account_create,
    rows: rowsOf(rac(104)),
    expect: { answer: 'notify_account_create' },
  },
  // Names every JavaScript object has through its prototype: plain data, never a lookup hit.
  ...PROTOTYPE_NAMES.flatMap((name, i): Case[] => [
    {
      name: `RAC with a tag named ${name}`,
      typeId: T.request_account_create,
      rows: [...rowsOf(rac(20 + i)), { tag: name, subtag: null, seq: 0, value: 'x' }],
      expect: { answer: 'notify_account_create' },
    },
    {
      name: `RAC with a SitePersonId subtag named ${name}`,
      typeId: T.request_account_create,
      rows: [...rowsOf(rac(30 + i)), { tag: 'SitePersonId', subtag: name, seq: 0, value: 'x' }],
      expect: { failure: [/SitePersonId: entry at seq 0 has no PersonID or Site/] },
    },
  ]),
  ...HOSTILE_TYPES.map((t): Case => ({
    name: `packet of a type_des row named ${JSON.stringify(t.name)}`,
    typeId: t.id,
    rows: rowsOf(rac(40)),
    expect: { unprocessable: new RegExp(`unknown packet type id ${t.id}`) },
  })),
  {
    name: 'RAC with an escape sequence in a tag name and in a subtag name',
    typeId: T.request_account_create,
    rows: [
      ...rowsOf(rac(50)),
      { tag: '\u001b[2J', subtag: null, seq: 0, value: 'x' },
      { tag: 'SitePersonId', subtag: 'Site\u001b[8m', seq: 0, value: 'x' },
    ],
    expect: {
      failure: [
        /\\u001b\[2J: the tag name contains the control character U\+001B/,
        /SitePersonId: subtag "Site\\u001b\[8m" at seq 0 contains the control character U\+001B/,
      ],
    },
  },
  {
    name: 'good RAC 5',
    typeId: T.request_account_create,
    rows: rowsOf(rac(105)),
    expect: { answer: 'notify_account_create' },
  },
];

let nextTransactionId = 1;

/** Puts one case into the AMIE tables exactly as given, bypassing the toolkit's writers. */
async function insertCase(db: Database, c: Case): Promise<number> {
  return db.transaction(async (tx) => {
    const open = async (state: number) =>
      (
        await tx.query<{ trans_rec_id: number }>(
          `INSERT INTO transaction_tbl (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id)
           VALUES ($1, $2, $3, $1, $4) RETURNING trans_rec_id`,
          [SITE.remoteSite, nextTransactionId++, SITE.name, state],
        )
      ).rows[0]!.trans_rec_id;
    const transRecId = await open(c.transactionState ?? STATE.inProgress);
    if (c.dependsOnState !== undefined) {
      const other = await open(c.dependsOnState);
      await tx.query('INSERT INTO transaction_depends_tbl (trans_rec_id, depends_on_trans_rec_id) VALUES ($1, $2)', [
        transRecId,
        other,
      ]);
    }
    const { rows } = await tx.query<{ packet_rec_id: number }>(
      `INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       VALUES ($1, 1, $2, '1.0', $3, 0) RETURNING packet_rec_id`,
      [transRecId, c.typeId, c.packetState ?? STATE.inProgress],
    );
    const packetRecId = rows[0]!.packet_rec_id;
    for (const r of c.rows) {
      await tx.query('INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value) VALUES ($1, $2, $3, $4, $5)', [
        packetRecId,
        r.tag,
        r.subtag,
        r.seq,
        r.value,
      ]);
    }
    return packetRecId;
  });
}

/** The SQLSTATE of the error `sql` raises, or 'ok'. */
async function refusal(db: Database, sql: string, params: unknown[] = []): Promise<string> {
  try {
    await db.transaction((tx) => tx.query(sql, params));
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

interface Fate {
  state: number;
  replies: Array<{ type: string; body: PacketBody }>;
  audit: Array<{ outcome: string; reason: string | null }>;
}

async function fateOf(db: Database, packetRecId: number): Promise<Fate> {
  const { rows } = await db.query<{
    state_id: string;
    replies: Array<{ type: string; rows: Array<[string, string | null, number, string | null]> }>;
  }>(
    `SELECT p.state_id::text,
            coalesce((SELECT json_agg(json_build_object('type', td.type_name, 'rows',
                        (SELECT coalesce(json_agg(json_build_array(d.tag, d.subtag, d.seq, d.value)), '[]'::json) FROM data_tbl d WHERE d.packet_rec_id = r.packet_rec_id)))
                        FROM packet_tbl r JOIN type_des td ON td.type_id = r.type_id
                       WHERE r.trans_rec_id = p.trans_rec_id AND r.outgoing_flag = 1), '[]'::json) AS replies
       FROM packet_tbl p WHERE p.packet_rec_id = $1`,
    [packetRecId],
  );
  const { rows: audit } = await db.query<{ outcome: string; reason: string | null }>(
    'SELECT outcome, reason FROM amie_toolkit.audit WHERE packet_rec_id = $1 ORDER BY audit_id',
    [packetRecId],
  );
  return {
    state: Number(rows[0]!.state_id),
    replies: rows[0]!.replies.map((r) => ({
      type: r.type,
      body: PacketBody.fromRows(r.rows.map(([tag, subtag, seq, value]) => ({ tag, subtag, seq, value }))),
    })),
    audit,
  };
}

/** The problems with what became of one packet, given what must become of it. */
function misfit(c: Case, f: Fate, runs: number): string[] {
  const out: string[] = [];
  const say = (m: string) => out.push(`${c.name}: ${m}`);
  const e = c.expect;
  const final = f.audit.filter((a) => ['reply', 'fail', 'invalid'].includes(a.outcome));
  const reply = f.replies[0];
  const isFailure = (r: { type: string; body: PacketBody }) =>
    r.type === 'inform_transaction_complete' &&
    r.body.get('StatusCode') === 'Failure' &&
    r.body.get('DetailCode') === '2';
  if ('untouched' in e) {
    if (f.replies.length > 0 || f.audit.length > 0 || f.state !== (c.packetState ?? STATE.inProgress)) {
      say(
        `expected to be left alone, got state ${f.state}, ${f.replies.length} replies, audit ${JSON.stringify(f.audit)}`,
      );
    }
    return out;
  }
  if ('unprocessable' in e) {
    if (f.replies.length > 0) say(`expected no reply, got ${f.replies.map((r) => r.type).join(', ')}`);
    if (f.state !== STATE.inProgress) say(`expected to stay in progress, got state ${f.state}`);
    const unhandled = f.audit.filter((a) => a.outcome === 'unhandled');
    if (unhandled.length !== runs || !unhandled.every((a) => e.unprocessable.test(a.reason ?? ''))) {
      say(`expected ${runs} audit row(s) 'unhandled' matching ${e.unprocessable}, got ${JSON.stringify(f.audit)}`);
    }
    return out;
  }
  if ('failureOrError' in e && f.replies.length === 0) {
    // The handler failed on it: deferred with the error recorded, offered again next run (and
    // answered with a failure after process.maxErrorDeferrals).
    const errors = f.audit.filter((a) => a.outcome === 'error');
    if (
      f.state !== STATE.inProgress ||
      errors.length !== runs ||
      !errors.every((a) => e.failureOrError.test(a.reason ?? ''))
    ) {
      say(
        `expected a failure reply, or ${runs} audit row(s) 'error' matching ${e.failureOrError} and the packet in progress; got state ${f.state}, audit ${JSON.stringify(f.audit)}`,
      );
    }
    return out;
  }
  if (f.state !== STATE.completed) say(`expected completed, got state ${f.state}`);
  if (f.replies.length !== 1 || !reply) {
    say(`expected exactly one reply, got ${f.replies.length}`);
    return out;
  }
  if (final.length !== 1) say(`expected one final outcome in the audit, got ${JSON.stringify(f.audit)}`);
  const message = reply.body.get('Message') ?? '';
  if ('answer' in e && reply.type !== e.answer)
    say(`expected ${e.answer}, got ${reply.type} ${JSON.stringify(message)}`);
  const failure = 'failure' in e ? e.failure : 'failureOrError' in e ? [e.failureOrError] : undefined;
  if (failure) {
    if (!isFailure(reply))
      say(
        `expected a failure inform_transaction_complete, got ${reply.type} ${JSON.stringify(reply.body.toJSON()).slice(0, 300)}`,
      );
    for (const pattern of failure) {
      if (!pattern.test(message)) say(`failure Message ${JSON.stringify(message)} does not match ${pattern}`);
      if (!pattern.test(final[0]?.reason ?? ''))
        say(`audit reason ${JSON.stringify(final[0]?.reason)} does not match ${pattern}`);
    }
  }
  if (
    'answerOrFailure' in e &&
    reply.type !== e.answerOrFailure.answer &&
    !(isFailure(reply) && e.answerOrFailure.failure.test(message))
  ) {
    say(
      `expected ${e.answerOrFailure.answer} or a failure matching ${e.answerOrFailure.failure}, got ${reply.type} ${JSON.stringify(message)}`,
    );
  }
  return out;
}

describe.skipIf(!hasPostgres())(`malformed packets in the AMIE tables${pgSkipNote}`, () => {
  it('the database itself refuses NUL bytes, invalid UTF-8, unknown type ids and over-long tags, so they never reach the toolkit', async () => {
    const t = await freshPgDatabase();
    try {
      await initDatabase(t.db);
      const packet = await insertCase(t.db, {
        name: 'carrier',
        typeId: T.request_account_create,
        rows: [],
        expect: { untouched: true },
      });
      const insertRow = 'INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value) VALUES ($1, $2, $3, $4, $5)';
      // 22021 character_not_in_repertoire / invalid byte sequence for encoding "UTF8"
      expect(await refusal(t.db, insertRow, [packet, 'UserLastName', null, 0, 'Doe\u0000; rm -rf /'])).toBe('22021');
      expect(await refusal(t.db, insertRow, [packet, 'UserLast\u0000Name', null, 0, 'Doe'])).toBe('22021');
      expect(
        await refusal(
          t.db,
          `INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value) SELECT $1, 'UserLastName', NULL, 0, convert_from('\\x446fc328ff'::bytea, 'UTF8')`,
          [packet],
        ),
      ).toBe('22021');
      // 22001 string_data_right_truncation: tag is varchar(32), subtag varchar(128)
      expect(await refusal(t.db, insertRow, [packet, 'T'.repeat(33), null, 0, 'x'])).toBe('22001');
      expect(await refusal(t.db, insertRow, [packet, 'SitePersonId', 'S'.repeat(129), 0, 'x'])).toBe('22001');
      // 23503 foreign_key_violation: type_id must be in type_des
      expect(
        await refusal(
          t.db,
          `INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag) SELECT trans_rec_id, 2, 250, '1.0', 2, 0 FROM packet_tbl WHERE packet_rec_id = $1`,
          [packet],
        ),
      ).toBe('23503');
      // 23505 unique_violation: a composite row twice (a null subtag escapes this constraint: see the corpus)
      expect(await refusal(t.db, insertRow, [packet, 'SitePersonId', 'Site', 0, 'X-PORTAL'])).toBe('ok');
      expect(await refusal(t.db, insertRow, [packet, 'SitePersonId', 'Site', 0, 'Y-PORTAL'])).toBe('23505');
    } finally {
      await t.cleanup();
    }
  });

  // Names end up in site scripts (useradd's comment field, sacctmgr, mail headers), so a name
  // that no person has must be refused like any other malformed tag, not stored and echoed back.
  it('a 100 KB name and names with control characters get a failure naming the tag', async () => {
    const t = await freshPgDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'amie-names-'));
    try {
      await initDatabase(t.db);
      const cases: Case[] = [
        {
          name: 'good RPC creating the project',
          typeId: T.request_project_create,
          rows: rowsOf(GOOD_RPC),
          expect: { answer: 'notify_project_create' },
        },
        {
          name: 'RAC whose last name is 100 KB',
          typeId: T.request_account_create,
          rows: rowsOf(rac(1, { UserLastName: 'L'.repeat(KB100) })),
          expect: { failure: [/UserLastName/] },
        },
        {
          name: 'RAC with control characters in the names',
          typeId: T.request_account_create,
          rows: rowsOf(
            rac(2, { UserFirstName: '\u0001\u001b[31mAnn\u0007', UserLastName: 'Evil\r\nroot:x:0:0:\u202e' }),
          ),
          expect: { failure: [/UserFirstName/, /UserLastName/] },
        },
        {
          name: 'good RAC',
          typeId: T.request_account_create,
          rows: rowsOf(rac(101)),
          expect: { answer: 'notify_account_create' },
        },
      ];
      const ids: number[] = [];
      for (const c of cases) ids.push(await insertCase(t.db, c));
      const r = await runAmie(['-c', writeAmieConfig(dir, t.url!), 'process']).done;
      expect(plainLines(r.stderr)).toEqual([]);
      const fates = await Promise.all(ids.map((id) => fateOf(t.db, id)));
      expect(cases.flatMap((c, i) => misfit(c, fates[i]!, 1))).toEqual([]);
      expect(r.code).toBe(1);
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it(`${CORPUS.length} packets, good and malformed: each malformed one refused with its reason, the good ones answered, exit 1, nothing crashes, a rerun answers nothing twice`, async () => {
    const t = await freshPgDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'amie-malformed-'));
    try {
      await initDatabase(t.db);
      // As a newer AMIE would have it: a type the toolkit has never heard of.
      for (const type of [NEWER_TYPE, ...HOSTILE_TYPES])
        await t.db.query('INSERT INTO type_des (type_id, type_name) VALUES ($1, $2)', [type.id, type.name]);
      const ids: number[] = [];
      for (const c of CORPUS) ids.push(await insertCase(t.db, c));
      const config = writeAmieConfig(dir, t.url!);

      for (const run of [1, 2]) {
        const r = await runAmie(['-c', config, 'process']).done;
        // README: exit 1 for failure replies (invalid packets included) and unhandled types.
        expect(r.code, r.stderr.slice(-3000)).toBe(1);
        // Nothing crashed: no "unexpected error" line, only the JSON log.
        expect(plainLines(r.stderr), `run ${run}`).toEqual([]);
        const fates = await Promise.all(ids.map((id) => fateOf(t.db, id)));
        expect(
          CORPUS.flatMap((c, i) => misfit(c, fates[i]!, run)),
          `after run ${run}`,
        ).toEqual([]);
        // The second run takes only what was left in place, and answers none of it.
        if (run === 2) expect(r.stdout).toMatch(/^\d+ packet\(s\): 0 answered, 0 failed /);
      }
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
