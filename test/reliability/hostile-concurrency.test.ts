/**
 * Races that hostile timing can cause: overlapping `amie process` runs answering packets out of
 * order ([12.7]); two processes holding the embedded database's or the grid-mapfile's lock at once
 * ([12.9]). And ids from outside that do not fit where they are kept ([12.8]): the REST API's
 * packet_rec_ids past 2^31, and the two sources' ids meeting in one table.
 */
import { describe, it, expect, onTestFinished, vi } from 'vitest';
import pg from 'pg';
import { REGISTRY_LOCK_KEY } from '../../src/registry/index.js';
import { tryRunLock } from '../../src/store/run-lock.js';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Database } from '../../src/db/index.js';
import { lockDataDir } from '../../src/db/pglite.js';
import { MIGRATIONS, initDatabase, type SiteScope } from '../../src/store/index.js';
import {
  AmieHandler,
  Dispatcher,
  type HandlerResult,
  type IncomingPacket,
  type PacketContext,
} from '../../src/dispatch/index.js';
import { AmieRestClient, RestSource } from '../../src/sources/index.js';
import { RegistryHandler } from '../../handlers/registry.js';
import { FakeAmieRest, racBody } from '../sources/fake-amie-rest.js';
import type { TagValue } from '../../src/protocol/index.js';
import { SITE, nacFor, quietLog, racTags, rpcTags, seedIncoming } from '../helpers/amie.js';
import { databaseEachTest, driverCase, driverCases, freshPgDatabase } from '../helpers/db.js';
import { tempDirs } from '../helpers/cli.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import {
  consistencyProblems,
  countPending,
  holdLockFileFor,
  plainLines,
  runAmie,
  seedWorkload,
  sleep,
  writeAmieConfig,
  type WorkItem,
} from '../helpers/reliability.js';

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
      tags: {
        GrantNumber: grantNumber,
        ProjectID: projectId,
        ResourceList: [SITE.resource],
        ...person('User', `user-${k}`, k + 1),
      },
    });
  }
  return items;
}

/**
 * Four `amie process` runs started together, one packet per batch so that their claims
 * interleave: four configurations that all answer the test resource, each with a scope of its
 * own (as several resources in one database have), so that none leaves the work to another.
 */
async function fourRuns(dir: string, url: string): Promise<void> {
  const runs = [1, 2, 3, 4].map((n) => {
    const own = join(dir, `run${n}`);
    mkdirSync(own, { recursive: true });
    const resources = [SITE.resource, `other${n}.example.org`];
    return runAmie(['-c', writeAmieConfig(own, url, { batchSize: 1, resources }), 'process']);
  });
  const results = await Promise.all(runs.map((r) => r.done));
  // Exit code 1 means a failure reply: the checks below say which; anything else is a crash.
  for (const [i, r] of results.entries()) {
    expect([0, 1], `run ${i + 1}: ${plainLines(r.stderr).join(' | ')}`).toContain(r.code);
    expect(r.stdout, `run ${i + 1} left the work to another`).not.toContain('another `amie process`');
  }
}

async function oneRun(dir: string, url: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const r = await runAmie(['-c', writeAmieConfig(dir, url, { batchSize: 50 }), 'process']).done;
  expect(r.code, plainLines(r.stderr).join(' | ')).toBe(0);
}

/** Packets about one project whose final outcomes in the audit are not in packet_rec_id order. */
async function answeredOutOfOrder(db: Database, packetsOf: Map<string, number[]>): Promise<string[]> {
  const { rows } = await db.query<{ packet_rec_id: number | string }>(
    `SELECT packet_rec_id FROM amie_toolkit.audit WHERE outcome IN ('reply', 'fail', 'invalid', 'ignore', 'closed') ORDER BY audit_id`,
  );
  // bigint: a string from pg
  const position = new Map(rows.map((r, i) => [Number(r.packet_rec_id), i]));
  const problems: string[] = [];
  for (const [project, ids] of packetsOf) {
    const order = ids.map((id) => position.get(id) ?? -1);
    if (order.some((p, i) => p < 0 || (i > 0 && p < order[i - 1]!)))
      problems.push(`${project}: packets ${ids.join(', ')} answered in audit order ${order.join(', ')}`);
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
          ids.push(
            (await seedIncoming(t.db, type, { ProjectID: projectId, ResourceList: [SITE.resource] })).packetRecId,
          );
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
      const { rows } = await t.db.query<{
        project_id: string;
        active: boolean;
        pi_active: boolean;
        users_active: boolean;
      }>(
        `SELECT p.project_id, p.active, bool_or(a.active) FILTER (WHERE a.person_id = p.pi_person_id) AS pi_active,
                bool_or(a.active) FILTER (WHERE a.person_id <> p.pi_person_id) AS users_active
           FROM amie_toolkit.projects p JOIN amie_toolkit.accounts a USING (project_id) GROUP BY p.project_id, p.active`,
      );
      const states = rows.filter(
        (r) => r.active !== expectActive.get(r.project_id) || r.pi_active !== r.active || r.users_active,
      );
      expect(states, 'projects (or their accounts) left in the state of an earlier packet').toEqual([]);
      expect(rows).toHaveLength(PROJECTS);
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

/** The run lock of the tests' configuration, taken on a connection of the test's own (as another run holds it). */
async function holdRunLock(client: pg.Client, site: SiteScope = SITE): Promise<void> {
  const connection = {
    query: async <R>(sql: string, params?: readonly unknown[]) => {
      const r = await client.query(sql, params as unknown[]);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
    },
    exec: async (sql: string) => {
      await client.query(sql);
    },
  };
  expect(await tryRunLock(connection, site)).toBe(true);
}

describe.skipIf(!hasPostgres())(`runs of one configuration, and of several, at once${pgSkipNote}`, () => {
  const t = databaseEachTest(driverCase('pg'));
  const tempDir = tempDirs('amie-runlock-');

  /**
   * `pairs` RPC/RAC pairs pending, a directory for the configuration, and a connection of the
   * test's own that plays another run (closed when the test ends).
   */
  async function backlog(pairs: number) {
    await initDatabase(t.db);
    const items = rpcRacPairs(pairs);
    await seedWorkload(t.db, items);
    const holder = await freshConnection(t.url!);
    onTestFinished(() => holder.end().catch(() => {}));
    return { dir: tempDir(), items, holder };
  }

  it('[12.7] four runs of one configuration at once: one answers the whole backlog, three leave at once (exit 0, one line)', async () => {
    const { dir, items } = await backlog(40);
    const config = writeAmieConfig(dir, t.url!, { batchSize: 1 });
    const results = await Promise.all([1, 2, 3, 4].map(() => runAmie(['-c', config, 'process', '--debug']).done));
    for (const r of results) expect(r.code, plainLines(r.stderr).join(' | ')).toBe(0);
    const left = results.filter((r) => r.stdout.startsWith('another `amie process`'));
    const worked = results.filter((r) => / answered/.test(r.stdout));
    expect(worked).toHaveLength(1);
    expect(worked[0]!.stdout).toContain(`${items.length} packet(s): ${items.length} answered`);
    expect(left).toHaveLength(3);
    for (const r of left) {
      expect(r.stdout.trim()).toBe(
        `another \`amie process\` for ${SITE.name} (${SITE.resource}) is running: it answers the pending packets, nothing done here`,
      );
      // --debug: the one line it logs says why, and nothing was claimed or looked at.
      const logged = r.stderr.split('\n').filter((l) => l.startsWith('{'));
      expect(logged.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
        'another run of this scope holds its run lock; leaving the pending packets to it',
      ]);
    }
    expect(await countPending(t.db)).toBe(0);
    expect(await consistencyProblems(t.db, items)).toEqual([]);
  }, 120_000);

  it("[12.7] a run finding its scope's run lock held leaves at once, nothing claimed; a dry run still shows its replies; the next run answers", async () => {
    const { dir, items, holder } = await backlog(3);
    await holdRunLock(holder);
    // The same scope written otherwise (as a list of resources) is the same scope.
    const config = writeAmieConfig(dir, t.url!, { resources: [SITE.resource] });
    const busy = await runAmie(['-c', config, 'process']).done;
    expect(busy.code, plainLines(busy.stderr).join(' | ')).toBe(0);
    expect(busy.stdout).toContain('another `amie process`');
    expect(await countPending(t.db)).toBe(items.length);
    const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM amie_toolkit.audit');
    expect(rows[0]!.n).toBe(0);

    // A dry run changes nothing, so it neither waits for nor needs the lock.
    const dry = await runAmie(['-c', config, 'process', '--dry-run']).done;
    expect(dry.code, plainLines(dry.stderr).join(' | ')).toBe(0);
    expect(dry.stdout).toContain('-> notify_project_create');
    expect(await countPending(t.db)).toBe(items.length);

    await holder.end();
    const free = await runAmie(['-c', config, 'process']).done;
    expect(free.code, plainLines(free.stderr).join(' | ')).toBe(0);
    expect(await countPending(t.db)).toBe(0);
    expect(await consistencyProblems(t.db, items)).toEqual([]);
  }, 120_000);

  it('[12.7] --watch waits for the run lock instead of leaving, then answers and keeps the lock between passes; SIGTERM while it waits ends it with exit 0', async () => {
    const { dir, items, holder } = await backlog(2);
    await holdRunLock(holder);
    const config = writeAmieConfig(dir, t.url!);
    const watching = runAmie(['-c', config, 'process', '--watch', '1']);
    await sleep(2500);
    expect(await countPending(t.db), 'nothing answered while another run held the lock').toBe(items.length);
    await holder.end();
    const until = Date.now() + 30_000;
    while ((await countPending(t.db)) > 0 && Date.now() < until) await sleep(100);
    expect(await countPending(t.db)).toBe(0);
    watching.child.kill('SIGTERM');
    const done = await watching.done;
    expect(done.code, plainLines(done.stderr).join(' | ')).toBe(0);
    expect(done.stdout).not.toContain('another `amie process`');

    // Between its passes, idle for longer than a pool keeps idle connections by default (10 s),
    // a watcher still holds the lock: a cron run of the same configuration leaves.
    const idle = runAmie(['-c', config, 'process', '--watch', '60']);
    await sleep(11_000);
    const cron = await runAmie(['-c', config, 'process']).done;
    expect(cron.code, plainLines(cron.stderr).join(' | ')).toBe(0);
    expect(cron.stdout).toContain('another `amie process`');
    idle.child.kill('SIGTERM');
    expect((await idle.done).code).toBe(0);

    // Waiting, not yet working, a signal ends it at once too.
    const again = await freshConnection(t.url!);
    try {
      await holdRunLock(again);
      const waiting = runAmie(['-c', config, 'process', '--watch', '60']);
      await sleep(1500);
      waiting.child.kill('SIGTERM');
      const ended = await waiting.done;
      expect(ended.code, plainLines(ended.stderr).join(' | ')).toBe(0);
    } finally {
      await again.end();
    }
  }, 120_000);

  it('[14.7] amie status tells a run at work (it holds the run lock) from a cron that stopped, in its line, perf data and metrics', async () => {
    const { dir, holder } = await backlog(1);
    const config = writeAmieConfig(dir, t.url!);
    const pass = await runAmie(['-c', config, 'process']).done;
    expect(pass.code, plainLines(pass.stderr).join(' | ')).toBe(0);
    await t.db.query(`UPDATE amie_toolkit.process_passes SET finished_at = now() - interval '3 hours'`);
    await holdRunLock(holder);
    const prom = join(dir, 'amie.prom');
    const busy = await runAmie(['-c', config, 'status', '--prometheus', prom]).done;
    expect(busy.code, busy.stdout).toBe(1);
    expect(busy.stdout).toMatch(
      /^AMIE WARNING - last `amie process` pass ended 3h ago; a run is at work, connected \d+s ago \| .* run_in_progress=1;;;0;1/,
    );
    expect(readFileSync(prom, 'utf8')).toMatch(/^amie_process_run_in_progress 1$/m);
    await holder.end();
    const stopped = await runAmie(['-c', config, 'status', '--prometheus', prom]).done;
    expect(stopped.stdout).toMatch(
      /^AMIE WARNING - last `amie process` pass ended 3h ago \| .* run_in_progress=0;;;0;1/,
    );
    expect(readFileSync(prom, 'utf8')).toMatch(/^amie_process_run_in_progress 0$/m);
  }, 60_000);

  it('[12.7] a run of another scope finding the registry lock held waits for it and then answers, instead of leaving its packets unanswered', async () => {
    const { dir, items, holder } = await backlog(3);
    // Another resource's run (or `amie registry`) in the middle of a batch: it holds the registry lock.
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock($1::bigint)', [REGISTRY_LOCK_KEY]);
    const run = runAmie(['-c', writeAmieConfig(dir, t.url!), 'process']);
    await sleep(2000);
    expect(await countPending(t.db), 'it waited for the batch holding the lock').toBe(items.length);
    await holder.query('COMMIT');
    const r = await run.done;
    expect(r.code, plainLines(r.stderr).join(' | ')).toBe(0);
    expect(r.stdout).toContain(`${items.length} packet(s): ${items.length} answered`);
    expect(await consistencyProblems(t.db, items)).toEqual([]);
  }, 120_000);
});

async function freshConnection(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  // Dropping the test's database ends a connection still open then: expected, not an error.
  c.on('error', () => {});
  await c.connect();
  return c;
}

// ------------------------------------------------------------------ [12.9] lock files

const CONTENDER = resolve('test/fixtures/lock-contender.mjs');

/**
 * Two contender processes for one lane's lock, each taking it once per round; `round` releases
 * both at the same moment and returns the record they left and what went wrong (a contender
 * that died or did not finish its turn).
 */
async function lockContenders(kind: 'datadir' | 'gridmap', target: string, record: string) {
  const kids = [0, 1].map(() => {
    const child = spawn(process.execPath, [CONTENDER, kind, target, record], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const lines = createInterface({ input: child.stdout });
    const next: Array<(line: string) => void> = [];
    lines.on('line', (line) => next.shift()?.(line));
    const exited = new Promise<string>((res) => child.on('close', (code) => res(`exit ${code}: ${stderr.trim()}`)));
    // The contender's next line, or why none came.
    const line = () => Promise.race([new Promise<string>((res) => next.push(res)), exited]);
    return { child, line };
  });
  const started = await Promise.all(kids.map((k) => k.line()));
  if (started.some((l) => l !== 'ready')) throw new Error(`a lock contender did not start: ${started.join(' | ')}`);
  return {
    async round() {
      const turns = kids.map((k) => k.line());
      for (const k of kids) k.child.stdin.write('go\n');
      const failures = (await Promise.all(turns)).filter((l) => l !== 'done');
      return { failures, lines: readFileSync(record, 'utf8').trim().split('\n') };
    },
    stop: () => kids.forEach((k) => k.child.stdin.end()),
  };
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
        const target = join(dir, kind === 'datadir' ? 'db' : 'grid-mapfile');
        const lock = `${target}.lock`;
        const record = join(dir, 'record');
        const contenders = await lockContenders(kind, target, record);
        try {
          for (let round = n; round < ROUNDS; round += LANES) {
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
            const { failures, lines } = await contenders.round();
            problems.push(
              ...failures.map((f) => `round ${round}: ${f}`),
              ...overlaps(lines).map((p) => `round ${round}: ${p}`),
            );
            if (failures.length > 0) break;
            // Released, and nothing left behind: no lock, no temporary file, no takeover guard.
            const left = readdirSync(dir).filter((f) => f !== 'record');
            if (left.length > 0) problems.push(`round ${round}: left behind ${left.join(', ')}`);
            for (const f of left) rmSync(join(dir, f), { recursive: true, force: true });
          }
        } finally {
          contenders.stop();
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

  it('[12.9] a wait for a directory whose name holds control characters says so with them shown escaped', async () => {
    // The database layer's own message (a script using it directly); the CLI passes its escaping say.
    const root = mkdtempSync(join(tmpdir(), 'amie-lock-'));
    const target = join(root, 'db\u001b[2J');
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      const released = holdLockFileFor(`${target}.lock`, 300);
      const release = await lockDataDir(target, 10_000);
      await released;
      release();
    } finally {
      spy.mockRestore();
      rmSync(root, { recursive: true, force: true });
    }
    expect(written).toHaveLength(1);
    expect(written[0]).toContain('db\\u001b[2J');
    expect(written[0]).not.toContain('\u001b');
    expect(written[0]).toMatch(/^amie: waiting up to 10 s for process \d+, which holds embedded database /);
  });
});

// ------------------------------------------------------------------ [12.8] ids from outside

const BIG = 3_000_000_000;

/** The fake server numbering its packets from `packetRecId` and its transactions from `transRecId`. */
async function fakeServerFrom(packetRecId: number, transRecId: number): Promise<FakeAmieRest> {
  const api = await FakeAmieRest.start();
  Object.assign(api as unknown as { nextRecId: number; nextTransRecId: number }, {
    nextRecId: packetRecId,
    nextTransRecId: transRecId,
  });
  return api;
}

const restSource = (db: Database, api: FakeAmieRest) =>
  new RestSource(
    db,
    new AmieRestClient({ url: api.url, site: api.site, apiKey: api.apiKey, timeoutMs: 2000, retries: 0 }),
    quietLog,
  );

/** The registry, failing once on a RAC for a user named Flaky (a site command that failed). */
class FlakyRegistry extends RegistryHandler {
  override async request_account_create(
    p: IncomingPacket<'request_account_create'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_create'>> {
    if (p.tags.UserLastName === 'Flaky' && ctx.errorCount === 0) throw new Error('useradd: exit 9');
    return super.request_account_create(p, ctx);
  }
}

const RPC_BODY = rpcTags({ ProjectID: 'p-abc123', PiGlobalID: '5550001', RecordID: 'big-ids-rpc' });

const num = (v: unknown) => Number(v);

describe.each(driverCases())('ids from outside on $name', (driver) => {
  const t = databaseEachTest(driver, { init: false });
  const run = it.skipIf(!driver.available);
  /** Runs `play` with the fake server numbering from `packetRecId` and `transRecId`, on an initialised database. */
  async function withServerFrom(packetRecId: number, transRecId: number, play: (api: FakeAmieRest) => Promise<void>) {
    const api = await fakeServerFrom(packetRecId, transRecId);
    try {
      await initDatabase(t.db);
      await play(api);
    } finally {
      await api.close();
    }
  }

  run('[12.8] REST packets numbered past 2^31 are answered, deferred and counted, and do not block later packets', () =>
    withServerFrom(BIG, 2_500_000_000, async (api) => {
      const rpc = api.addIncoming('request_project_create', RPC_BODY);
      const rac = api.addIncoming('request_account_create', racBody(1));
      const flaky = api.addIncoming('request_account_create', racBody(2, { UserLastName: 'Flaky' }));
      expect([rpc.packetRecId, rac.packetRecId, flaky.packetRecId]).toEqual([BIG, BIG + 1, BIG + 2]);
      const handler = new FlakyRegistry({ db: t.db, log: quietLog, site: SITE, options: {}, dryRun: false });

      const first = await new Dispatcher(restSource(t.db, api), handler, quietLog).runOnce();
      expect(first).toMatchObject({ taken: 3, answered: 2, errors: 1 });
      expect(api.repliesTo(rpc.packetRecId)).toHaveLength(1);
      expect(api.repliesTo(rac.packetRecId)).toHaveLength(1);
      const { rows: errors } = await t.db.query<{ source: string; packet_rec_id: unknown; error_count: number }>(
        'SELECT source, packet_rec_id, error_count FROM amie_toolkit.packet_errors',
      );
      expect(errors.map((e) => ({ ...e, packet_rec_id: num(e.packet_rec_id) }))).toEqual([
        { source: 'rest', packet_rec_id: BIG + 2, error_count: 1 },
      ]);
      const { rows: history } = await t.db.query<{ a: unknown; r: unknown }>(
        `SELECT (SELECT packet_rec_id FROM amie_toolkit.allocation_history) AS a, (SELECT packet_rec_id FROM amie_toolkit.rpc_records) AS r`,
      );
      expect(history.map((h) => [num(h.a), num(h.r)])).toEqual([[BIG, BIG]]);

      // The packet a handler failed on is offered again, and succeeds.
      const second = await new Dispatcher(restSource(t.db, api), handler, quietLog).runOnce();
      expect(second).toMatchObject({ taken: 1, answered: 1 });
      expect(api.repliesTo(flaky.packetRecId)).toHaveLength(1);
      expect((await t.db.query('SELECT 1 FROM amie_toolkit.packet_errors')).rows).toEqual([]);
      const { rows: audit } = await t.db.query<{
        source: string;
        packet_rec_id: unknown;
        trans_rec_id: unknown;
        outcome: string;
        reply_packet_rec_id: unknown;
      }>(
        'SELECT source, packet_rec_id, trans_rec_id, outcome, reply_packet_rec_id FROM amie_toolkit.audit ORDER BY audit_id',
      );
      expect(
        audit.map((a) => [
          a.source,
          num(a.packet_rec_id),
          num(a.trans_rec_id) >= 2_500_000_000,
          a.outcome,
          a.reply_packet_rec_id === null ? null : num(a.reply_packet_rec_id) > BIG,
        ]),
      ).toEqual([
        ['rest', BIG, true, 'reply', true],
        ['rest', BIG + 1, true, 'reply', true],
        ['rest', BIG + 2, true, 'error', null],
        ['rest', BIG + 2, true, 'reply', true],
      ]);
    }),
  );

  run(
    "[12.8] the AMIE tables and the REST API number packets independently: one source's error count is not the other's",
    () =>
      withServerFrom(1, 1, async (api) => {
        const seen: Array<{ packetRecId: number; errorCount: number }> = [];
        class Site extends AmieHandler {
          override async request_account_create(
            p: IncomingPacket<'request_account_create'>,
            ctx: PacketContext,
          ): Promise<HandlerResult<'notify_account_create'>> {
            seen.push({ packetRecId: p.packetRecId, errorCount: ctx.errorCount });
            if (p.tags.UserLastName === 'Flaky') throw new Error('useradd: exit 9');
            return nacFor(p.packetRecId);
          }
        }
        const handler = new Site({ db: t.db, log: quietLog, site: SITE, options: {}, dryRun: false });
        // REST packet 1 fails in the handler: its error count is 1.
        const rest = api.addIncoming('request_account_create', racBody(1, { UserLastName: 'Flaky' }));
        expect((await new Dispatcher(restSource(t.db, api), handler, quietLog).runOnce()).errors).toBe(1);
        // Tables packet 1 is another packet: it starts with no errors, and answering it leaves REST packet 1's count alone.
        const tables = await seedIncoming(t.db, 'request_account_create', racTags(1));
        expect(tables.packetRecId).toBe(rest.packetRecId);
        expect((await new Dispatcher(t.db, handler, quietLog).runOnce()).answered).toBe(1);
        expect(seen).toEqual([
          { packetRecId: 1, errorCount: 0 },
          { packetRecId: 1, errorCount: 0 },
        ]);
        const { rows } = await t.db.query<{ source: string; error_count: number }>(
          'SELECT source, error_count FROM amie_toolkit.packet_errors',
        );
        expect(rows).toEqual([{ source: 'rest', error_count: 1 }]);
        const { rows: audit } = await t.db.query<{ source: string; outcome: string }>(
          'SELECT source, outcome FROM amie_toolkit.audit ORDER BY audit_id',
        );
        expect(audit).toEqual([
          { source: 'rest', outcome: 'error' },
          { source: 'tables', outcome: 'reply' },
        ]);
      }),
  );

  run(
    '[12.8] the migration upgrades a database with rows in it: ids become bigint, each row gets its source',
    async () => {
      const at = MIGRATIONS.findIndex((m) => m.id === '0007-bigint-ids-and-source');
      expect(at).toBeGreaterThan(0);
      const [migration] = MIGRATIONS.splice(at, 1);
      try {
        // A database as the previous release left it: a tables packet and a REST packet with audit rows and error counts.
        await initDatabase(t.db);
        const tables = await seedIncoming(t.db, 'request_account_create', racTags(1));
        await t.db.query(
          `INSERT INTO amie_toolkit.rest_packets (packet_rec_id, trans_rec_id, type_id, packet, state) VALUES (777, 70, 1, '{}', 'pending')`,
        );
        await t.db.query(
          `INSERT INTO amie_toolkit.audit (run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, duration_ms, handler)
         VALUES ('r1', $1, $2, 'request_account_create', 'error', 'tables error', 1, 'x'), ('r1', 777, 70, 'request_account_create', 'error', 'rest error', 1, 'x')`,
          [tables.packetRecId, tables.transRecId],
        );
        await t.db.query(
          `INSERT INTO amie_toolkit.packet_errors (packet_rec_id, error_count, last_error) VALUES ($1, 2, 'tables error'), (777, 3, 'rest error')`,
          [tables.packetRecId],
        );
        MIGRATIONS.splice(at, 0, migration!);
        expect((await initDatabase(t.db)).migrationsApplied).toEqual(['0007-bigint-ids-and-source']);

        const { rows: audit } = await t.db.query<{ source: string; reason: string }>(
          'SELECT source, reason FROM amie_toolkit.audit ORDER BY audit_id',
        );
        expect(audit).toEqual([
          { source: 'tables', reason: 'tables error' },
          { source: 'rest', reason: 'rest error' },
        ]);
        const { rows: errors } = await t.db.query<{ source: string; error_count: number }>(
          'SELECT source, error_count FROM amie_toolkit.packet_errors ORDER BY error_count',
        );
        expect(errors).toEqual([
          { source: 'tables', error_count: 2 },
          { source: 'rest', error_count: 3 },
        ]);
        const { rows: types } = await t.db.query<{ t: string }>(
          `SELECT table_name || '.' || column_name || ' ' || data_type AS t FROM information_schema.columns
          WHERE table_schema = 'amie_toolkit' AND column_name IN ('packet_rec_id', 'trans_rec_id', 'reply_packet_rec_id')
            AND table_name IN ('audit', 'packet_errors', 'allocation_history', 'rpc_records') ORDER BY 1`,
        );
        expect(types.map((r) => r.t)).toEqual([
          'allocation_history.packet_rec_id bigint',
          'audit.packet_rec_id bigint',
          'audit.reply_packet_rec_id bigint',
          'audit.trans_rec_id bigint',
          'packet_errors.packet_rec_id bigint',
          'rpc_records.packet_rec_id bigint',
        ]);
        // The same packet_rec_id can now have an error count in each source.
        await t.db.query(
          `INSERT INTO amie_toolkit.packet_errors (source, packet_rec_id, error_count) VALUES ('rest', $1, 1), ('rest', $2, 1)`,
          [tables.packetRecId, BIG],
        );
      } finally {
        if (!MIGRATIONS.some((m) => m.id === migration?.id)) MIGRATIONS.splice(at, 0, migration!);
      }
    },
  );
});
