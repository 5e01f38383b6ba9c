/**
 * `amie slurm check` against the real test cluster (`amietest`): the Slurm handler makes three
 * projects from packets, then each kind of drift is made by hand with sacctmgr (and userdel);
 * the check finds each, --dry-run changes nothing, --fix repairs each with the handler's own
 * commands and the second check is clean, a foreign account is left alone, and a job under the
 * repaired inactive project is refused. Configuration and Slurm errors exit 2.
 *
 * The run uses its own Slurm account prefix and uid range, and removes what it made.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SlurmHandler } from '../../handlers/slurm.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { listAccounts, listPeople, listProjects } from '../../src/registry/index.js';
import { SimData } from '../../src/simulator/index.js';
import { SITE, initTestDatabase, quietLog, seedIncoming } from '../helpers/amie.js';
import { freshPgDatabase, type TestDatabase } from '../helpers/db.js';
import { hasPostgres } from '../helpers/env.js';
import {
  takeTurnsOnTheCluster,
  SLURM_TEST_CLUSTER,
  expectSubmitRefused,
  hasSlurm,
  removeTestSlurmObjects,
  sacctmgrRows,
  slurmSkipNote,
  submitJob,
  waitForJobs,
} from '../helpers/slurm.js';
import { CLI } from '../helpers/cli.js';

takeTurnsOnTheCluster();

const TEST_UIDS = { start: 3_210_000, end: 3_219_999 };

interface CheckJson {
  clean: boolean;
  differences: Array<{ project: string; kind: string; user: string | null; detail: string; fix: string[][] }>;
  foreignCount: number;
  foreign?: Array<{ account: string; user: string | null; detail: string }>;
}

describe.runIf(hasSlurm() && hasPostgres())(`amie slurm check on the test cluster${slurmSkipNote()}`, () => {
  const prefix = `amd${randomBytes(3).toString('hex')}-`;
  const foreignAccount = `${prefix}zz-by-hand`;
  const extraLogin = `amx${randomBytes(3).toString('hex')}`;
  let t: TestDatabase;
  let dir: string;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AMIE_')) delete env[k];

  const writeConfig = (file: string, options: Record<string, unknown>, handler = 'slurm') =>
    writeFileSync(
      join(dir, file),
      stringify({
        site: SITE,
        database: { url: t.url },
        handler: { module: handler, options },
        log: { level: 'fatal' },
      }),
    );
  const options = { cluster: SLURM_TEST_CLUSTER, accountPrefix: prefix, uidRange: TEST_UIDS };
  const amie = (args: string[], config = 'amie.yaml') =>
    execa('node', [CLI, '-c', config, ...args], {
      cwd: dir,
      env,
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: 120_000,
    });
  const checkJson = async (...args: string[]) => {
    const r = await amie(['slurm', 'check', '--json', ...args]);
    return { exitCode: r.exitCode, json: JSON.parse(r.stdout) as CheckJson, stderr: r.stderr };
  };
  const sacctmgr = (...args: string[]) => execa('sacctmgr', ['-i', ...args], { stdin: 'ignore', timeout: 30_000 });

  beforeAll(async () => {
    await removeTestSlurmObjects(undefined, TEST_UIDS);
    t = await freshPgDatabase();
    await initTestDatabase(t.db);
    dir = mkdtempSync(join(tmpdir(), 'amie-slurm-check-'));
    chmodSync(dir, 0o755);
    writeConfig('amie.yaml', options);
  }, 60_000);
  afterAll(async () => {
    await removeTestSlurmObjects(prefix, TEST_UIDS);
    await t?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('finds each kind of drift made by hand, --dry-run changes nothing, --fix repairs each, the second check is clean, foreign is left alone', async () => {
    // Three projects as the handler makes them: p1 with two users, p2 inactivated, p3.
    const handler = new SlurmHandler({ db: t.db, log: quietLog, site: SITE, options, dryRun: false });
    const dispatcher = new Dispatcher(t.db, handler, quietLog);
    const sim = new SimData(SITE.resource);
    const pis = [sim.person(), sim.person(), sim.person()];
    const rpcs = pis.map((pi) => sim.rpc(pi));
    for (const rpc of rpcs) await seedIncoming(t.db, 'request_project_create', rpc);
    expect((await dispatcher.runOnce()).results.map((r) => r.outcome)).toEqual(['reply', 'reply', 'reply']);
    const grant = (i: number) => ({ grantNumber: String(rpcs[i]!.GrantNumber) });
    await seedIncoming(t.db, 'request_account_create', sim.rac(sim.person(), grant(0)));
    await seedIncoming(t.db, 'request_account_create', sim.rac(sim.person(), grant(0)));
    expect((await dispatcher.runOnce()).results.map((r) => r.outcome)).toEqual(['reply', 'reply']);
    const projects = await listProjects(t.db);
    const byGrant = (i: number) => projects.find((p) => p.grantNumber === rpcs[i]!.GrantNumber)!;
    const [p1, p2, p3] = [byGrant(0), byGrant(1), byGrant(2)];
    await seedIncoming(t.db, 'request_project_inactivate', {
      ProjectID: p2.projectId,
      ResourceList: [SITE.resource],
    });
    expect((await dispatcher.runOnce()).results.map((r) => r.outcome)).toEqual(['reply']);
    const users = (await listAccounts(t.db, { projectId: p1.projectId }))
      .filter((a) => a.personId !== p1.piPersonId)
      .map((a) => a.login!);
    expect(users).toHaveLength(2);
    const [u1, u2] = users as [string, string];
    const [a1, a2, a3] = [p1.slurmAccount!, p2.slurmAccount!, p3.slurmAccount!];

    // As the handler left it, Slurm matches the registry.
    const clean = await amie(['slurm', 'check']);
    expect(clean.exitCode, `${clean.stdout}\n${clean.stderr}`).toBe(0);
    expect(clean.stdout).toMatch(
      /^Slurm matches the registry: 3 project\(s\), 5 account\(s\), 5 login\(s\) on amietest$/m,
    );

    // Drift by hand, one of each kind.
    await sacctmgr('remove', 'user', 'where', `name=${p3.piLogin}`, `account=${a3}`); // p3's only user, then its account
    await sacctmgr('remove', 'account', 'where', `name=${a3}`, `cluster=${SLURM_TEST_CLUSTER}`);
    await sacctmgr('remove', 'user', 'where', `name=${u1}`, `account=${a1}`, `cluster=${SLURM_TEST_CLUSTER}`);
    await sacctmgr('add', 'user', extraLogin, `account=${a1}`, `cluster=${SLURM_TEST_CLUSTER}`);
    await sacctmgr('remove', 'coordinator', `account=${a1}`, `names=${p1.piLogin}`);
    await sacctmgr('add', 'coordinator', `account=${a1}`, `names=${u2}`);
    await sacctmgr('modify', 'account', 'where', `name=${a1}`, `cluster=${SLURM_TEST_CLUSTER}`, 'set', 'GrpTRESMins=gres/gpu=5', 'GrpSubmitJobs=0'); // prettier-ignore
    await sacctmgr('modify', 'user', 'where', `name=${u2}`, `account=${a1}`, `cluster=${SLURM_TEST_CLUSTER}`, 'set', 'GrpSubmitJobs=0'); // prettier-ignore
    await sacctmgr('modify', 'account', 'where', `name=${a2}`, `cluster=${SLURM_TEST_CLUSTER}`, 'set', 'GrpSubmitJobs=-1'); // prettier-ignore
    await sacctmgr('modify', 'user', 'where', `name=${p2.piLogin}`, `account=${a2}`, `cluster=${SLURM_TEST_CLUSTER}`, 'set', 'GrpSubmitJobs=-1'); // prettier-ignore
    await sacctmgr('add', 'account', foreignAccount, `cluster=${SLURM_TEST_CLUSTER}`, 'description=by hand', 'organization=site'); // prettier-ignore
    await execa('userdel', ['--remove', u2], { stdin: 'ignore' });

    const expected = [
      [p1.projectId, 'unix-user-missing', u2],
      [p1.projectId, 'allocation', null],
      [p1.projectId, 'account-submit', null],
      [p1.projectId, 'user-missing', u1],
      [p1.projectId, 'user-submit', u2],
      [p1.projectId, 'user-extra', extraLogin],
      [p1.projectId, 'coordinator-missing', p1.piLogin],
      [p1.projectId, 'coordinator-extra', u2],
      [p2.projectId, 'account-submit', null],
      [p2.projectId, 'user-submit', p2.piLogin],
      [p3.projectId, 'account-missing', null],
      [p3.projectId, 'user-missing', p3.piLogin],
      [p3.projectId, 'coordinator-missing', p3.piLogin],
    ].sort((a, b) => String(a[0]).localeCompare(String(b[0])));

    // The text: one line per difference under its project, exit 1.
    const text = await amie(['slurm', 'check']);
    expect(text.exitCode, text.stderr).toBe(1);
    const lines = text.stdout.split('\n');
    expect(lines).toContain(`${p1.projectId} (Slurm account ${a1}):`);
    expect(lines).toContain(
      `  allocation: GrpTRESMins on amietest is gres/gpu=5; the allocation (50000 SUs) gives gres/gpu=3000000`,
    );
    expect(lines).toContain(
      `  account-submit: GrpSubmitJobs=0 on amietest, but the project is active: its jobs are refused`,
    );
    expect(lines).toContain(
      `  account-submit: GrpSubmitJobs unset on amietest, but the project is inactive: it can still submit`,
    );
    expect(lines).toContain(`  account-missing: Slurm account ${a3} missing on amietest`);
    expect(lines).toContain(`  user-missing: Slurm user ${u1} (active account) missing on amietest`);
    expect(lines).toContain(`  unix-user-missing: Unix user ${u2} missing`);
    expect(lines.filter((l) => l.startsWith('  '))).toHaveLength(expected.length);
    expect(lines).toContain(`${expected.length} difference(s) in 3 project(s); checked 3 project(s), 5 account(s), 5 login(s) on amietest`); // prettier-ignore
    expect(text.stdout).toMatch(
      /^\d+ association\(s\) the registry did not make, left alone \(--include-foreign lists them\)$/m,
    );
    expect(text.stdout).not.toContain(foreignAccount);

    // The JSON: the same differences, each with the commands that repair it.
    const found = await checkJson();
    expect(found.exitCode).toBe(1);
    expect(found.json.clean).toBe(false);
    const kinds = (j: CheckJson) => j.differences.map((d) => [d.project, d.kind, d.user]);
    expect(new Set(kinds(found.json).map((k) => JSON.stringify(k)))).toEqual(
      new Set(expected.map((k) => JSON.stringify(k))),
    );
    expect(found.json.foreign).toBeUndefined();
    const fixOf = (kind: string, project = p1.projectId) =>
      found.json.differences.find((d) => d.kind === kind && d.project === project)!.fix;
    expect(fixOf('allocation')).toEqual([
      [
        'sacctmgr',
        '-i',
        'modify',
        'account',
        'where',
        `name=${a1}`,
        'cluster=amietest',
        'set',
        'GrpTRESMins=gres/gpu=3000000',
      ],
    ]);
    expect(fixOf('account-submit', p2.projectId)).toEqual([
      ['sacctmgr', '-i', 'modify', 'account', 'where', `name=${a2}`, 'cluster=amietest', 'set', 'GrpSubmitJobs=0'],
    ]);
    expect(fixOf('user-extra')).toEqual([
      ['sacctmgr', '-i', 'modify', 'user', 'where', `name=${extraLogin}`, `account=${a1}`, 'cluster=amietest', 'set', 'GrpSubmitJobs=0'],
    ]); // prettier-ignore
    expect(fixOf('account-missing', p3.projectId)[1]).toEqual(
      ['sacctmgr', '-i', 'modify', 'account', 'where', `name=${a3}`, 'cluster=amietest', 'set', 'GrpTRESMins=gres/gpu=3000000'],
    ); // prettier-ignore

    // --include-foreign lists the account made by hand (and nothing of the registry's).
    const withForeign = await checkJson('--include-foreign');
    expect(withForeign.json.foreign).toContainEqual({
      cluster: SLURM_TEST_CLUSTER,
      account: foreignAccount,
      user: null,
      detail: "not a registry project's account (0 user associations)",
    });
    expect(withForeign.json.foreign!.some((f) => [a1, a2, a3].includes(f.account))).toBe(false);

    // `amie status` counts the drift.
    const status = await amie(['status', '--json']);
    const s = JSON.parse(status.stdout) as { figures: { slurmDrift?: number }; problems: Array<{ message: string }> };
    expect(s.figures.slurmDrift).toBe(expected.length);
    expect(s.problems.map((p) => p.message)).toContain(
      `Slurm differs from the registry in ${expected.length} place(s) (amie slurm check lists them)`,
    );

    // --dry-run prints the commands and changes nothing.
    const dry = await amie(['slurm', 'check', '--fix', '--dry-run']);
    expect(dry.exitCode, dry.stderr).toBe(1);
    expect(dry.stdout).toContain(
      `      would run: sacctmgr -i modify account where name=${a1} cluster=amietest set GrpTRESMins=gres/gpu=3000000`,
    );
    expect(dry.stdout).toMatch(/would run: useradd --uid \d+ --comment .* --create-home --shell \/bin\/bash /);
    expect(dry.stdout).toMatch(/^dry run: nothing was run$/m);
    expect(kinds((await checkJson()).json)).toEqual(kinds(found.json));

    // --fix repairs each difference and checks again: clean.
    const fixed = await amie(['slurm', 'check', '--fix']);
    expect(fixed.exitCode, `${fixed.stdout}\n${fixed.stderr}`).toBe(0);
    expect(fixed.stdout).toContain(`      ran: sacctmgr -i add account ${a3} cluster=amietest`);
    expect(fixed.stdout).toMatch(/^after the repairs:\nSlurm matches the registry: /m);
    const again = await checkJson('--include-foreign');
    expect(again.exitCode).toBe(0);
    expect(again.json.differences).toEqual([]);

    // Left alone: the foreign account, and the extra user (blocked, now listed apart).
    expect(await sacctmgrRows(['assoc', 'where', `account=${foreignAccount}`, 'format=account,user,grpsubmitjobs'])).toEqual([
      [foreignAccount, '', ''],
    ]); // prettier-ignore
    expect(again.json.foreign).toContainEqual({
      cluster: SLURM_TEST_CLUSTER,
      account: a1,
      user: extraLogin,
      detail: `blocked; not an account of ${p1.projectId} in the registry`,
    });
    const people = await listPeople(t.db);
    const uidOf = (login: string) => people.find((p) => p.login === login)!.uid;
    expect((await execa('id', ['-u', u2])).stdout).toBe(String(uidOf(u2)));

    // The repaired inactive project refuses jobs; the repaired active one runs them.
    expect(await expectSubmitRefused(a2, p2.piLogin!)).toMatch(/Job violates accounting\/QOS policy/);
    const job = await submitJob({ account: a1, user: u1, gpus: 1, seconds: 1 });
    expect([...(await waitForJobs([job])).values()]).toEqual(['COMPLETED']);
  }, 300_000);

  it('exits 2 when the configuration or Slurm cannot be used', async () => {
    writeConfig('registry.yaml', {}, 'registry');
    const notSlurm = await amie(['slurm', 'check'], 'registry.yaml');
    expect(notSlurm.exitCode).toBe(2);
    expect(notSlurm.stderr).toContain('amie slurm check needs the Slurm handler');

    writeConfig('broken.yaml', { ...options, sacctmgr: '/nonexistent/sacctmgr' });
    const broken = await amie(['slurm', 'check'], 'broken.yaml');
    expect(broken.exitCode).toBe(2);
    expect(broken.stderr).toMatch(
      /^amie: slurm check: command could not run .*\/nonexistent\/sacctmgr -n -P show assoc/m,
    );
    expect(broken.stdout).toBe('');

    // amie status says so as a warning, not a crash.
    const status = await amie(['status', '--json'], 'broken.yaml');
    const s = JSON.parse(status.stdout) as { status: string; problems: Array<{ message: string }> };
    expect(s.problems.map((p) => p.message).join('\n')).toMatch(
      /^Slurm could not be compared with the registry: command could not run/m,
    );
    expect(['WARNING', 'CRITICAL']).toContain(s.status);

    writeConfig('badopt.yaml', { ...options, cluster: 'Not A Cluster' });
    const badOption = await amie(['slurm', 'check'], 'badopt.yaml');
    expect(badOption.exitCode).toBe(2);
    expect(badOption.stderr).toContain('cluster');
  }, 120_000);
});
