/**
 * Shared by the reliability suite (test/reliability): a seeded random workload of RPCs and RACs in
 * which people come back again and again, bulk seeding of it into the AMIE tables, `amie process`
 * run as a child process, and the consistency check every scenario ends with.
 */
import { randomInt } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { expect } from 'vitest';
import { join } from 'node:path';
import type { Database } from '../../src/db/index.js';
import { LOGIN_PATTERN } from '../../src/registry/index.js';
import { PACKET_TYPE_IDS, PacketBody, type TagValue } from '../../src/protocol/index.js';
import { SITE, rpcTags } from './amie.js';

// ------------------------------------------------------------------ seeded randomness

export interface Rng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
}

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(next() * items.length)]!,
    chance: (p) => next() < p,
  };
}

/**
 * The scenario's random generator: seeded from AMIE_TEST_SEED when set, else at random. The seed
 * is printed so that a failure can be replayed exactly.
 */
export function scenarioRng(scenario: string): Rng {
  const fromEnv = process.env.AMIE_TEST_SEED;
  const seed = fromEnv && /^\d+$/.test(fromEnv) ? Number(fromEnv) : randomInt(2 ** 31);
  console.log(`[reliability] ${scenario}: seed ${seed} (replay with AMIE_TEST_SEED=${seed})`);
  return makeRng(seed);
}

// ------------------------------------------------------------------ the workload

/** Someone central sends packets about, always under the same identifiers. */
export interface Person {
  /** The test's own name for the person: what every reply about them must agree on. */
  key: string;
  first: string;
  last: string;
  globalId?: string;
  /** A SitePersonId entry (Site X-PORTAL). */
  portalId?: string;
  requestedLogin?: string;
  dn?: string;
}

export interface WorkItem {
  transactionId: number;
  type: 'request_project_create' | 'request_account_create';
  tags: Record<string, TagValue>;
  /** Person.key of the PI (RPC) or the user (RAC). */
  person: string;
  grantNumber: string;
  /** RPC: its RecordID; a repeat carries the RecordID of an earlier RPC, word for word. */
  recordId?: string;
  /** RPC: the transactionId of the RPC this one repeats. */
  repeatOf?: number;
}

export interface WorkloadOptions {
  transactions: number;
  /** Share of new (non-repeat) RPCs among the transactions; the rest are RACs. */
  rpcShare: number;
  /** How many distinct people the packets are about (one-shot anonymous users come on top). */
  people: number;
  /** Grants of projects that exist before the workload; RACs may name them. */
  existingGrants?: readonly string[];
  /** Whether RACs may name projects created by RPCs of this workload (those come earlier). */
  racsOnNewProjects: boolean;
  /**
   * The first this-many transactions are RPCs whose projects RACs may name, whatever
   * racsOnNewProjects says: a scenario answers them before seeding the rest.
   */
  setupRpcs?: number;
  firstTransactionId?: number;
  /** Prefix of the workload's GrantNumbers and RecordIDs, so that two workloads never collide. */
  prefix?: string;
}

// Names chosen so that derived logins collide (few first initials × few last names) and carry
// what real names carry: apostrophes, accents, spaces, hyphens, letters outside ASCII.
const FIRST_NAMES = ['Ann', 'José', 'Zoë', 'Li', 'Mary-Jane', "D'Arcy", 'Ólafur', 'Andrew', 'Jean Luc', 'Łucja'];
const LAST_NAMES = ["O'Neil", 'Müller', 'van der Berg', 'Smith', 'Nguyễn', 'Doe', 'Smith-Jones', 'Øster'];
// Popular, reserved and malformed requested logins: only the first asker of a free, acceptable one gets it.
const REQUESTED_LOGINS = [
  'jdoe',
  'asmith',
  'root',
  'alice',
  'bob',
  'admin',
  'Bad Login!',
  'x'.repeat(40),
  'aoneil',
  'zmuller',
];

function makePeople(rng: Rng, count: number, prefix: string): Person[] {
  const people: Person[] = [];
  for (let i = 0; i < count; i++) {
    const roll = rng.next();
    const person: Person = {
      key: `${prefix}person-${i}`,
      first: rng.pick(FIRST_NAMES),
      last: rng.pick(LAST_NAMES),
      // Mostly a GlobalID; some only a portal id; some both.
      ...(roll < 0.9 ? { globalId: `${prefix}${7_000_000 + i}` } : {}),
      ...(roll >= 0.8 ? { portalId: `${prefix}portal${i}` } : {}),
    };
    if (rng.chance(0.4)) person.requestedLogin = rng.pick(REQUESTED_LOGINS);
    if (rng.chance(0.5)) person.dn = `/C=US/O=Example University/CN=${person.first} ${person.last} ${i}`;
    people.push(person);
  }
  return people;
}

function personTags(p: Person, prefix: 'Pi' | 'User'): Record<string, TagValue> {
  return {
    [`${prefix}FirstName`]: p.first,
    [`${prefix}LastName`]: p.last,
    [`${prefix}Organization`]: 'Example University',
    [`${prefix}OrgCode`]: '0012345',
    [`${prefix}Email`]: `${p.key}@example.edu`,
    [`${prefix}RequestedLoginList`]: [p.requestedLogin ?? ''],
    ...(p.globalId ? { [`${prefix}GlobalID`]: p.globalId } : {}),
    ...(p.portalId ? { SitePersonId: [{ Site: 'X-PORTAL', PersonID: p.portalId }] } : {}),
    ...(p.dn ? { [`${prefix}DnList`]: [p.dn] } : {}),
  };
}

/**
 * A random stream of pending transactions: RPCs creating projects (a few repeating an earlier
 * RecordID) and RACs on projects, the people drawn from a pool so the same GlobalID or portal id
 * comes back many times, as PI and as user. A RAC on a new project always comes after its RPC.
 */
export function buildWorkload(rng: Rng, opts: WorkloadOptions): WorkItem[] {
  const prefix = opts.prefix ?? '';
  const people = makePeople(rng, opts.people, prefix);
  const items: WorkItem[] = [];
  const grants: Array<{ grant: string; projectId?: string }> = (opts.existingGrants ?? []).map((g) => ({ grant: g }));
  const rpcs: WorkItem[] = [];
  let next = opts.firstTransactionId ?? 1;
  let anonymous = 0;
  for (let i = 0; i < opts.transactions; i++) {
    const transactionId = next++;
    const setup = i < (opts.setupRpcs ?? 0);
    if (setup || grants.length === 0 || rng.chance(opts.rpcShare)) {
      if (!setup && rpcs.length > 0 && rng.chance(0.03)) {
        const first = rpcs.filter((r) => r.repeatOf === undefined);
        const original = rng.pick(first);
        items.push({ ...original, transactionId, repeatOf: original.transactionId });
        continue;
      }
      const n = rpcs.length;
      const pi = rng.pick(people);
      const grant = `TG-${prefix.toUpperCase()}REL${String(n).padStart(5, '0')}`;
      const projectId = rng.chance(0.5) ? `p-${prefix}rel${n}` : undefined;
      const recordId = `${prefix}rec-${n}`;
      const item: WorkItem = {
        transactionId,
        type: 'request_project_create',
        person: pi.key,
        grantNumber: grant,
        recordId,
        tags: {
          AllocationType: 'new',
          GrantNumber: grant,
          ...(projectId ? { ProjectID: projectId } : {}),
          PfosNumber: '1234567',
          ...personTags(pi, 'Pi'),
          ProjectTitle: `Reliability project ${n} of ${pi.first} ${pi.last}`,
          StartDate: '2026-07-01',
          EndDate: '2027-06-30',
          ResourceList: [SITE.resource],
          RecordID: recordId,
          ServiceUnitsAllocated: String(rng.int(1, 500) * 100),
        },
      };
      items.push(item);
      rpcs.push(item);
      if (setup || opts.racsOnNewProjects) grants.push({ grant, projectId });
      continue;
    }
    const project = rng.pick(grants);
    let user: Person;
    if (rng.chance(0.05)) {
      // Someone central knows nothing else about: every such request is a new person.
      user = { key: `${prefix}anonymous-${anonymous++}`, first: rng.pick(FIRST_NAMES), last: rng.pick(LAST_NAMES) };
    } else {
      user = rng.pick(people);
    }
    items.push({
      transactionId,
      type: 'request_account_create',
      person: user.key,
      grantNumber: project.grant,
      tags: {
        GrantNumber: project.grant,
        ...(project.projectId && rng.chance(0.7) ? { ProjectID: project.projectId } : {}),
        ResourceList: [SITE.resource],
        ...personTags(user, 'User'),
      },
    });
  }
  return items;
}

/**
 * Puts the workload into the AMIE tables in one statement, as the transfer daemon would leave it:
 * one in-progress transaction per item with one incoming in-progress packet. packet_rec_ids
 * follow the items' order (checked), since the dispatcher takes work in that order.
 */
export async function seedWorkload(db: Database, items: readonly WorkItem[]): Promise<void> {
  const k: number[] = [];
  const tags: string[] = [];
  const subtags: Array<string | null> = [];
  const seqs: number[] = [];
  const values: Array<string | null> = [];
  items.forEach((item, i) => {
    for (const r of PacketBody.fromTags(item.tags).toRows()) {
      k.push(i);
      tags.push(r.tag);
      subtags.push(r.subtag);
      seqs.push(r.seq);
      values.push(r.value);
    }
  });
  await db.query(
    `WITH x AS (SELECT * FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS x(transaction_id, type_id, k)),
     t AS (
       INSERT INTO transaction_tbl (originating_site_name, transaction_id, local_site_name, remote_site_name, state_id)
       SELECT $3, x.transaction_id, $4, $3, 2 FROM x ORDER BY x.k RETURNING trans_rec_id, transaction_id),
     p AS (
       INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
       SELECT t.trans_rec_id, 1, x.type_id, '1.0', 2, 0 FROM x JOIN t USING (transaction_id) ORDER BY x.k
       RETURNING packet_rec_id, trans_rec_id),
     pk AS (SELECT p.packet_rec_id, x.k - 1 AS i FROM p JOIN t USING (trans_rec_id) JOIN x USING (transaction_id))
     INSERT INTO data_tbl (packet_rec_id, tag, subtag, seq, value)
     SELECT pk.packet_rec_id, d.tag, d.subtag, d.seq, d.value
       FROM unnest($5::int[], $6::text[], $7::text[], $8::int[], $9::text[]) AS d(i, tag, subtag, seq, value)
       JOIN pk USING (i)`,
    [
      items.map((i) => i.transactionId),
      items.map((i) => PACKET_TYPE_IDS[i.type]),
      SITE.remoteSite,
      SITE.name,
      k,
      tags,
      subtags,
      seqs,
      values,
    ],
  );
  const { rows } = await db.query<{ out_of_order: number }>(
    `SELECT count(*)::int AS out_of_order FROM (
       SELECT t.transaction_id, lag(t.transaction_id) OVER (ORDER BY p.packet_rec_id) AS before
         FROM packet_tbl p JOIN transaction_tbl t USING (trans_rec_id) WHERE p.outgoing_flag = 0) s
      WHERE s.transaction_id < s.before`,
  );
  if (rows[0]!.out_of_order > 0) throw new Error('seedWorkload: packet_rec_ids do not follow the workload order');
}

/** A good RPC among hostile packets: Jane Doe (GlobalID 5550001) asks 1000 units for `grant` as `projectId`. */
export function scenarioRpc(grant: string, projectId: string, recordId: string): Record<string, TagValue> {
  return rpcTags({
    GrantNumber: grant,
    ProjectID: projectId,
    PiGlobalID: '5550001',
    RecordID: recordId,
    ServiceUnitsAllocated: '1000',
  });
}

/** A good RAC among hostile packets: Ann `last` (GlobalID `globalId`) asks for an account on `grant`. */
export function scenarioRac(
  grant: string,
  projectId: string,
  last: string,
  globalId: string,
): Record<string, TagValue> {
  return {
    GrantNumber: grant,
    ProjectID: projectId,
    ResourceList: [SITE.resource],
    UserFirstName: 'Ann',
    UserLastName: last,
    UserOrganization: 'Example University',
    UserOrgCode: '0012345',
    UserGlobalID: globalId,
  };
}

/** The backlog the crash scenarios start from: 1,000 transactions about 250 people, RACs on new projects too. */
export const CRASH_BACKLOG: WorkloadOptions = {
  transactions: 1000,
  rpcShare: 0.15,
  people: 250,
  racsOnNewProjects: true,
};

/** The workload of `opts` (see buildWorkload) seeded into `db` as pending transactions; returns its items. */
export async function seedBacklog(db: Database, rng: Rng, opts: WorkloadOptions): Promise<WorkItem[]> {
  const items = buildWorkload(rng, opts);
  await seedWorkload(db, items);
  return items;
}

// ------------------------------------------------------------------ amie process as a child process

export { CLI, runAmie, type AmieRun } from './cli.js';

/** A configuration file for `amie process` against `url`, written into `dir`; returns its path. */
export function writeAmieConfig(
  dir: string,
  url: string,
  /** `resources`: the configuration's scope when it is not the test resource alone (it must hold it). */
  opts: { handler?: string; batchSize?: number; logLevel?: string; resources?: string[] } = {},
): string {
  const path = join(dir, 'amie.yaml');
  const resources = opts.resources ? `, resources: [${opts.resources.join(', ')}]` : '';
  writeFileSync(
    path,
    [
      `site: { name: ${SITE.name}, resource: ${SITE.resource}${resources} }`,
      `database: { url: "${url}" }`,
      `handler: ${opts.handler ?? 'registry'}`,
      `process: { batchSize: ${opts.batchSize ?? 50} }`,
      `log: { level: ${opts.logLevel ?? 'warn'} }`,
    ].join('\n'),
  );
  return path;
}

/** Lines of stderr that are not the JSON log: what a person reading the cron mail sees. */
export function plainLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));
}

export async function countOutgoing(db: Database): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM packet_tbl WHERE outgoing_flag = 1');
  return rows[0]!.n;
}

export async function countCompleted(db: Database): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 1',
  );
  return rows[0]!.n;
}

export async function countPending(db: Database): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 2',
  );
  return rows[0]!.n;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Writes the lock file at `path` as a live process holds it (this run's parent, which outlives the
 * test) and removes it after `ms`: a waiter sees a living holder, then a free lock. Resolves once removed.
 */
export function holdLockFileFor(path: string, ms: number): Promise<void> {
  writeFileSync(path, `${process.ppid} ${hostname()} ${new Date().toISOString()} 0123456789abcdef\n`);
  return sleep(ms).then(() => rmSync(path, { force: true }));
}

// ------------------------------------------------------------------ the consistency check

/** How every scenario ends: nothing left pending, and no problem found by consistencyProblems. */
export async function expectConsistentEnd(db: Database, items: readonly WorkItem[], rng: Rng): Promise<void> {
  expect(await countPending(db)).toBe(0);
  expect(await consistencyProblems(db, items), `seed ${rng.seed}`).toEqual([]);
}

interface Conversation {
  packet_rec_id: number;
  transaction_id: string;
  state_id: string;
  replies: Array<{ type: string; body: Record<string, TagValue> }>;
  final_outcomes: number;
}

/** Outcomes that end a packet's life; one per packet, whatever happened to runs before. */
const FINAL_OUTCOMES = ['reply', 'fail', 'invalid', 'ignore', 'closed'];

/**
 * Everything that must hold once every packet of `items` has been worked, as a list of problems
 * (empty when all is well), each naming the packet, person or login concerned:
 * - every packet completed, exactly one reply in its transaction (NPC for RPC, NAC for RAC) and
 *   exactly one final outcome in the audit;
 * - one PersonID per person of the workload and one person per PersonID; no GlobalID on two
 *   people; one person row per person of the workload;
 * - every reply's PersonID and login are the registry's, no login (or uid) given to two people;
 * - the accounts are exactly the (person, project) pairs the replies announced;
 * - one project per RecordID, its PI the one the NPC named; a repeated RecordID got the first answer.
 */
export async function consistencyProblems(db: Database, items: readonly WorkItem[]): Promise<string[]> {
  const problems: string[] = [];
  const byTransaction = new Map(items.map((i) => [String(i.transactionId), i]));
  const { rows: conversations } = await db.query<Conversation>(
    `SELECT p.packet_rec_id, t.transaction_id::text, p.state_id::text,
            coalesce((SELECT json_agg(json_build_object('type', td.type_name, 'body',
                        (SELECT coalesce(json_agg(json_build_array(d.tag, d.subtag, d.seq, d.value)), '[]'::json)
                           FROM data_tbl d WHERE d.packet_rec_id = r.packet_rec_id)) ORDER BY r.packet_rec_id)
                        FROM packet_tbl r JOIN type_des td ON td.type_id = r.type_id
                       WHERE r.trans_rec_id = p.trans_rec_id AND r.outgoing_flag = 1), '[]'::json) AS replies,
            (SELECT count(*)::int FROM amie_toolkit.audit a WHERE a.packet_rec_id = p.packet_rec_id AND a.outcome = ANY($1::text[])) AS final_outcomes
       FROM packet_tbl p JOIN transaction_tbl t USING (trans_rec_id)
      WHERE p.outgoing_flag = 0 ORDER BY p.packet_rec_id`,
    [FINAL_OUTCOMES],
  );
  if (conversations.length !== items.length)
    problems.push(`${conversations.length} incoming packets in the tables, ${items.length} seeded`);

  const personIdsOf = new Map<string, Set<string>>(); // workload person -> PersonIDs replies gave them
  const peopleOf = new Map<string, Set<string>>(); // PersonID -> workload people
  const loginsOf = new Map<string, Set<string>>(); // PersonID -> logins replies gave them
  const holdersOf = new Map<string, Set<string>>(); // login -> PersonIDs
  const announced = new Set<string>(); // person|project pairs the replies announced
  const npcOf = new Map<number, { projectId: string; pi: string }>();
  const add = (m: Map<string, Set<string>>, k: string, v: string) => (m.get(k) ?? m.set(k, new Set()).get(k)!).add(v);

  for (const c of conversations) {
    const item = byTransaction.get(c.transaction_id);
    const what = `packet ${c.packet_rec_id} (transaction ${c.transaction_id}, ${item?.type ?? 'not seeded'})`;
    if (!item) {
      problems.push(`${what}: not part of the workload`);
      continue;
    }
    if (c.state_id !== '1') problems.push(`${what}: state ${c.state_id}, expected 1 (completed)`);
    if (c.final_outcomes !== 1)
      problems.push(`${what}: ${c.final_outcomes} final outcomes in amie_toolkit.audit, expected 1`);
    if (c.replies.length !== 1) {
      problems.push(
        `${what}: ${c.replies.length} replies (${c.replies.map((r) => r.type).join(', ') || 'none'}), expected exactly 1`,
      );
      if (c.replies.length === 0) continue;
    }
    const reply = c.replies[0]!;
    const body = PacketBody.fromRows(
      (reply.body as unknown as Array<[string, string | null, number, string | null]>).map(
        ([tag, subtag, seq, value]) => ({ tag, subtag, seq, value }),
      ),
    );
    const expected = item.type === 'request_project_create' ? 'notify_project_create' : 'notify_account_create';
    if (reply.type !== expected) {
      problems.push(
        `${what}: answered with ${reply.type}${body.get('Message') ? ` ("${body.get('Message')}")` : ''}, expected ${expected}`,
      );
      continue;
    }
    const personId = body.get(item.type === 'request_project_create' ? 'PiPersonID' : 'UserPersonID') ?? '';
    const login = body.get(item.type === 'request_project_create' ? 'PiRemoteSiteLogin' : 'UserRemoteSiteLogin') ?? '';
    const projectId = body.get('ProjectID') ?? '';
    add(personIdsOf, item.person, personId);
    add(peopleOf, personId, item.person);
    add(loginsOf, personId, login);
    add(holdersOf, login, personId);
    announced.add(`${personId}|${projectId}`);
    if (!LOGIN_PATTERN.test(login))
      problems.push(`${what}: login ${JSON.stringify(login)} does not match ${LOGIN_PATTERN}`);
    if (item.type === 'request_project_create') npcOf.set(item.transactionId, { projectId, pi: personId });
  }

  for (const [person, ids] of personIdsOf)
    if (ids.size > 1) problems.push(`${person} was created more than once: PersonIDs ${[...ids].join(', ')}`);
  for (const [id, people] of peopleOf)
    if (people.size > 1) problems.push(`PersonID ${id} was given to different people: ${[...people].join(', ')}`);
  for (const [id, logins] of loginsOf)
    if (logins.size > 1) problems.push(`PersonID ${id} was announced with different logins: ${[...logins].join(', ')}`);
  for (const [login, ids] of holdersOf)
    if (ids.size > 1) problems.push(`login ${login} was given to more than one person: ${[...ids].join(', ')}`);

  // The registry's books against the replies.
  const { rows: people } = await db.query<{
    person_id: string;
    global_id: string | null;
    login: string | null;
    uid: number | null;
  }>(
    `SELECT p.person_id, p.global_id, l.login, l.uid FROM amie_toolkit.people p LEFT JOIN amie_toolkit.logins l USING (person_id)`,
  );
  if (people.length !== personIdsOf.size)
    problems.push(`the registry has ${people.length} people, the workload ${personIdsOf.size} distinct people`);
  const registryLogin = new Map(people.map((p) => [p.person_id, p.login]));
  for (const [id, logins] of loginsOf) {
    if (!registryLogin.has(id)) problems.push(`PersonID ${id} is in a reply but not in the registry`);
    else if (!logins.has(registryLogin.get(id) ?? ''))
      problems.push(
        `PersonID ${id}: replies say login ${[...logins].join(', ')}, the registry ${registryLogin.get(id)}`,
      );
  }
  const globalIds = people.filter((p) => p.global_id !== null).map((p) => p.global_id);
  if (new Set(globalIds).size !== globalIds.length)
    problems.push('a GlobalID is held by more than one person in the registry');
  const uids = people.filter((p) => p.uid !== null).map((p) => p.uid);
  if (new Set(uids).size !== uids.length) problems.push('a uid was given to more than one login');
  const { rows: loginCount } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM amie_toolkit.logins');
  if (loginCount[0]!.n !== people.length)
    problems.push(`the registry has ${loginCount[0]!.n} logins for ${people.length} people`);

  const { rows: accounts } = await db.query<{ k: string; active: boolean }>(
    `SELECT person_id || '|' || project_id AS k, active FROM amie_toolkit.accounts`,
  );
  const inRegistry = new Set(accounts.map((a) => a.k));
  for (const a of accounts) {
    if (!announced.has(a.k)) problems.push(`account ${a.k} is in the registry but no reply announced it`);
    if (!a.active) problems.push(`account ${a.k} is inactive`);
  }
  for (const k of announced)
    if (!inRegistry.has(k)) problems.push(`account ${k} was announced in a reply but is not in the registry`);

  const { rows: projects } = await db.query<{ project_id: string; pi_person_id: string }>(
    'SELECT project_id, pi_person_id FROM amie_toolkit.projects',
  );
  const recordIds = new Set(items.filter((i) => i.recordId).map((i) => i.recordId));
  if (projects.length !== recordIds.size)
    problems.push(`the registry has ${projects.length} projects for ${recordIds.size} distinct RecordIDs`);
  const piOf = new Map(projects.map((p) => [p.project_id, p.pi_person_id]));
  for (const item of items) {
    const npc = npcOf.get(item.transactionId);
    if (!npc) continue;
    if (item.repeatOf !== undefined) {
      const first = npcOf.get(item.repeatOf);
      if (first && (first.projectId !== npc.projectId || first.pi !== npc.pi)) {
        problems.push(
          `transaction ${item.transactionId} repeats RecordID ${item.recordId} but got ${JSON.stringify(npc)}, the first answer was ${JSON.stringify(first)}`,
        );
      }
    } else if (piOf.get(npc.projectId) !== npc.pi) {
      problems.push(
        `project ${npc.projectId}: the NPC named PI ${npc.pi}, the registry has ${piOf.get(npc.projectId) ?? 'no such project'}`,
      );
    }
  }
  return problems;
}
