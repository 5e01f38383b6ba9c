/**
 * Races that hostile timing can cause: overlapping `amie process` runs answering packets out of
 * order ([12.7]).
 */
import { describe, it, expect } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
