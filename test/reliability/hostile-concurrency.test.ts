/**
 * Races that hostile timing can cause: overlapping `amie process` runs answering packets out of
 * order ([12.7]); two processes holding the embedded database's or the grid-mapfile's lock at once
 * ([12.9]).
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import type { TagValue } from '../../src/protocol/index.js';
import { SITE, seedIncoming } from '../helpers/amie.js';
import { freshPgDatabase } from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import { consistencyProblems, countPending, plainLines, runAmie, seedWorkload, writeAmieConfig, type WorkItem } from '../helpers/reliability.js';

const FIRST = ['Ann', 'Bob', 'Cyd', 'Dee', 'Eve', 'Fay', 'Gus'];
const LAST = ['Doe', 'Smith', 'Miller', 'Nguyen', 'Berg'];

function person(prefix: 'Pi' | 'User', key: string, n: number): Record<string, TagValue> {
  return {
    [`${prefix}FirstName`]: FIRST[n % FIRST.length]!,
    [`${prefix}LastName`]: LAST[Math.floor(n / FIRST.length) % LAST.length]!,
    [`${prefix}Organization`]: 'Example University',
    [`${prefix}OrgCode`]: '0012345',
    [`${prefix}Email`]: `${key}@example.edu`,
    [`${prefix}RequestedLoginList`]: [''],
    [`${prefix}GlobalID`]: `8${String(n).padStart(6, '0')}${prefix === 'Pi' ? 1 : 2}`,
  };
}

/** `n` transactions opening a project, each followed at once by one asking for an account on it. */
function rpcRacPairs(n: number): WorkItem[] {
  const items: WorkItem[] = [];
  for (let k = 0; k < n; k++) {
    const grantNumber = `TG-ORD${String(k).padStart(5, '0')}`;
    const projectId = `p-ord${k}`;
    items.push({
      transactionId: 500_000 + 2 * k + 1,
      type: 'request_project_create',
      person: `pi-${k}`,
      grantNumber,
      recordId: `ord-rec-${k}`,
      tags: {
        AllocationType: 'new',
        GrantNumber: grantNumber,
        ProjectID: projectId,
        PfosNumber: '1234567',
        ...person('Pi', `pi-${k}`, k),
        ProjectTitle: `Ordering project ${k}`,
        StartDate: '2026-07-01',
        EndDate: '2027-06-30',
        ResourceList: [SITE.resource],
        RecordID: `ord-rec-${k}`,
        ServiceUnitsAllocated: '1000',
      },
    });
    items.push({
      transactionId: 500_000 + 2 * k + 2,
      type: 'request_account_create',
      person: `user-${k}`,
      grantNumber,
      tags: { GrantNumber: grantNumber, ProjectID: projectId, ResourceList: [SITE.resource], ...person('User', `user-${k}`, k + 1) },
    });
  }
  return items;
}

/** Four `amie process` runs started together, one packet per batch so that their claims interleave. */
async function fourRuns(dir: string, url: string): Promise<void> {
  const runs = [1, 2, 3, 4].map((n) => {
    const own = join(dir, `run${n}`);
    mkdirSync(own, { recursive: true });
    return runAmie(['-c', writeAmieConfig(own, url, { batchSize: 1 }), 'process']);
  });
  const results = await Promise.all(runs.map((r) => r.done));
  // Exit code 1 means a failure reply: the checks below say which; anything else is a crash.
  for (const [i, r] of results.entries()) expect([0, 1], `run ${i + 1}: ${plainLines(r.stderr).join(' | ')}`).toContain(r.code);
}

async function oneRun(dir: string, url: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const r = await runAmie(['-c', writeAmieConfig(dir, url, { batchSize: 50 }), 'process']).done;
  expect(r.code, plainLines(r.stderr).join(' | ')).toBe(0);
}

/** Packets about one project whose final outcomes in the audit are not in packet_rec_id order. */
async function answeredOutOfOrder(db: Database, packetsOf: Map<string, number[]>): Promise<string[]> {
  const { rows } = await db.query<{ packet_rec_id: number }>(
    `SELECT packet_rec_id FROM amie_toolkit.audit WHERE outcome IN ('reply', 'fail', 'invalid', 'ignore', 'closed') ORDER BY audit_id`,
  );
  const position = new Map(rows.map((r, i) => [r.packet_rec_id, i]));
  const problems: string[] = [];
  for (const [project, ids] of packetsOf) {
    const order = ids.map((id) => position.get(id) ?? -1);
    if (order.some((p, i) => p < 0 || (i > 0 && p < order[i - 1]!))) problems.push(`${project}: packets ${ids.join(', ')} answered in audit order ${order.join(', ')}`);
  }
  return problems;
}

describe.skipIf(!hasPostgres())(`overlapping runs answer in the order packets came${pgSkipNote}`, () => {
  it('[12.7] four overlapping runs, one packet per batch, answer 300 RPC/RAC pairs with no RAC before its project', async () => {
    const t = await freshPgDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'amie-order-'));
    try {
      await initDatabase(t.db);
      const items = rpcRacPairs(300);
      await seedWorkload(t.db, items);
      await fourRuns(dir, t.url!);
      expect(await countPending(t.db)).toBe(0);
      // Every RAC answered with a NAC (not "this site has no project"), every RPC with an NPC, registry whole.
      expect(await consistencyProblems(t.db, items)).toEqual([]);
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it('[12.7] four overlapping runs apply inactivations and reactivations of a project in the order they came', async () => {
    const t = await freshPgDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'amie-order-'));
    try {
      await initDatabase(t.db);
      const PROJECTS = 50;
      await seedWorkload(t.db, rpcRacPairs(PROJECTS));
      await oneRun(join(dir, 'setup'), t.url!);

      // Each project is inactivated and reactivated in turn, 5 or 6 times, its packets one after
      // another: the project ends inactive after an odd count, active after an even one.
      const packetsOf = new Map<string, number[]>();
      const expectActive = new Map<string, boolean>();
      for (let k = 0; k < PROJECTS; k++) {
        const projectId = `p-ord${k}`;
        const count = 5 + (k % 2);
        const ids: number[] = [];
        for (let i = 0; i < count; i++) {
          const type = i % 2 === 0 ? 'request_project_inactivate' : 'request_project_reactivate';
          ids.push((await seedIncoming(t.db, type, { ProjectID: projectId, ResourceList: [SITE.resource] })).packetRecId);
        }
        packetsOf.set(projectId, ids);
        expectActive.set(projectId, count % 2 === 0);
      }
      await fourRuns(dir, t.url!);

      expect(await countPending(t.db)).toBe(0);
      const { rows: wrong } = await t.db.query<{ packet_rec_id: number; outcome: string; reason: string | null }>(
        `SELECT packet_rec_id, outcome, reason FROM amie_toolkit.audit WHERE packet_type LIKE 'request_project_%activate' AND outcome <> 'reply'`,
      );
      expect(wrong).toEqual([]);
      expect(await answeredOutOfOrder(t.db, packetsOf)).toEqual([]);
      // Reactivation brings back the PI's account only; the user's stays inactive after the first inactivation.
      const { rows } = await t.db.query<{ project_id: string; active: boolean; pi_active: boolean; users_active: boolean }>(
        `SELECT p.project_id, p.active, bool_or(a.active) FILTER (WHERE a.person_id = p.pi_person_id) AS pi_active,
                bool_or(a.active) FILTER (WHERE a.person_id <> p.pi_person_id) AS users_active
           FROM amie_toolkit.projects p JOIN amie_toolkit.accounts a USING (project_id) GROUP BY p.project_id, p.active`,
      );
      const states = rows.filter((r) => r.active !== expectActive.get(r.project_id) || r.pi_active !== r.active || r.users_active);
      expect(states, 'projects (or their accounts) left in the state of an earlier packet').toEqual([]);
      expect(rows).toHaveLength(PROJECTS);
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

// ------------------------------------------------------------------ [12.9] lock files

const CONTENDER = resolve('test/fixtures/lock-contender.mjs');

/** Two contender processes released at the same moment; returns the record they left and their exits. */
async function lockRound(kind: 'datadir' | 'gridmap', target: string, record: string) {
  const kids = [0, 1].map(() => {
    const child = spawn(process.execPath, [CONTENDER, kind, target, record], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const ready = new Promise<void>((res) => child.stdout.once('data', () => res()));
    const done = new Promise<string>((res) => child.on('close', (code) => res(code === 0 ? '' : `exit ${code}: ${stderr.trim()}`)));
    return { child, ready, done };
  });
  await Promise.all(kids.map((k) => k.ready));
  for (const k of kids) k.child.stdin.end('go\n');
  const failures = (await Promise.all(kids.map((k) => k.done))).filter(Boolean);
  return { failures, lines: readFileSync(record, 'utf8').trim().split('\n') };
}

/** Where the record shows two holders at once, or a contender not taking and leaving the lock once. */
function overlaps(lines: string[]): string[] {
  const problems: string[] = [];
  const holding = new Set<string>();
  for (const line of lines) {
    const [pid, what] = line.split(' ');
    if (what === 'in') {
      if (holding.size > 0) problems.push(`${pid} took the lock while ${[...holding].join(', ')} held it`);
      holding.add(pid!);
    } else holding.delete(pid!);
  }
  if (lines.length !== 4) problems.push(`record has ${lines.length} lines, expected 4: ${lines.join(' | ')}`);
  return problems;
}

describe('lock files: never two holders', () => {
  const ROUNDS = 100;
  // Rounds run in a few lanes at once, each in a directory of its own, to keep the test short.
  const LANES = 4;
  for (const kind of ['datadir', 'gridmap'] as const) {
    const what = kind === 'datadir' ? 'the embedded database directory lock' : 'the grid-mapfile lock';
    it(`[12.9] ${ROUNDS} rounds of two processes racing for ${what}, free, stale (dead holder) or half-written: never two holders`, async () => {
      const root = mkdtempSync(join(tmpdir(), 'amie-lock-'));
      const dead = spawn('true');
      await new Promise((r) => dead.on('exit', r));
      const scenarios = ['free', 'dead', 'empty'];
      const lane = async (n: number): Promise<string[]> => {
        const dir = join(root, `lane${n}`);
        mkdirSync(dir);
        const problems: string[] = [];
        for (let round = n; round < ROUNDS; round += LANES) {
          const target = join(dir, kind === 'datadir' ? 'db' : 'grid-mapfile');
          const lock = `${target}.lock`;
          const record = join(dir, 'record');
          writeFileSync(record, '');
          // A lock left by a process that died; or one an older version created but died before
          // writing its pid into (empty, a minute old).
          const scenario = scenarios[round % scenarios.length];
          if (scenario === 'dead') writeFileSync(lock, `${dead.pid} ${hostname()} 2020-01-01T00:00:00Z\n`);
          if (scenario === 'empty') {
            writeFileSync(lock, '');
            const old = new Date(Date.now() - 60_000);
            utimesSync(lock, old, old);
          }
          const { failures, lines } = await lockRound(kind, target, record);
          problems.push(...failures.map((f) => `round ${round}: ${f}`), ...overlaps(lines).map((p) => `round ${round}: ${p}`));
          // Released, and nothing left behind: no lock, no temporary file, no takeover guard.
          const left = readdirSync(dir).filter((f) => f !== 'record');
          if (left.length > 0) problems.push(`round ${round}: left behind ${left.join(', ')}`);
          for (const f of left) rmSync(join(dir, f), { recursive: true, force: true });
        }
        return problems;
      };
      try {
        const problems = (await Promise.all(Array.from({ length: LANES }, (_, n) => lane(n)))).flat();
        expect(problems).toEqual([]);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    }, 300_000);
  }
});
