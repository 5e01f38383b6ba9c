/**
 * The Slurm handler against the real test cluster (`amietest`): the simulator's scenarios with
 * real sacctmgr, useradd and sbatch; hostile packet text; a failing site command; dry runs; and
 * `amie simulate` from the command line with a copy of config/slurm-site.yaml.
 *
 * Every run uses its own Slurm account prefix and a uid range no real user has, and removes
 * the Slurm accounts, Slurm users and Unix users it made.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import pino from 'pino';
import { parseDocument } from 'yaml';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SlurmHandler, type SlurmOptionsInput } from '../../handlers/slurm.js';
import { Dispatcher, type RunSummary } from '../../src/dispatch/index.js';
import { listAccounts, listPeople, listProjects } from '../../src/registry/index.js';
import {
  SimData,
  formatScenarioReport,
  resolveScenarioNames,
  runScenarios,
  type ScenarioReport,
} from '../../src/simulator/index.js';
import { SITE, auditOf, packetState, quietLog, seedIncoming } from '../helpers/amie.js';
import { driverCases, preferredDriver, type OpenOptions, type TestDatabase } from '../helpers/db.js';
import {
  takeTurnsOnTheCluster,
  SLURM_TEST_CLUSTER,
  expectSubmitRefused,
  hasSlurm,
  removeTestSlurmObjects,
  sacctmgrRows,
  slurmSkipNote,
  submitJob,
  testUnixUsers,
  waitForJobs,
} from '../helpers/slurm.js';
import { SlackConfigSchema, SlackNotifier } from '../../src/notify/index.js';
import { FakeSlack } from '../notify/slack-server.js';
import { requireBuiltCli, CLI, tempDirs } from '../helpers/cli.js';

takeTurnsOnTheCluster();

/** uids for the logins the tests create: far from any real user, so leftovers are recognisable. */
const TEST_UIDS = { start: 3_100_000, end: 3_199_999 };

const tempDir = tempDirs('amie-slurm-', { mode: 0o755 });

/** A Slurm account prefix no other run uses. */
const newPrefix = () => `amt${randomBytes(3).toString('hex')}-`;

/** PostgreSQL when the environment has one, else the embedded database. */
const database = (options?: OpenOptions) => preferredDriver().open(options);

interface Assoc {
  account: string;
  user: string;
  grpTresMins: string;
  grpSubmitJobs: string;
}
/** The associations of the accounts under a prefix, keyed "account|user" (user '' for the account's own). */
async function associations(prefix: string): Promise<Map<string, Assoc>> {
  const rows = await sacctmgrRows([
    'assoc',
    'where',
    `cluster=${SLURM_TEST_CLUSTER}`,
    'format=account,user,grptresmins,grpsubmitjobs',
  ]);
  const out = new Map<string, Assoc>();
  for (const [account = '', user = '', grpTresMins = '', grpSubmitJobs = ''] of rows) {
    if (account.startsWith(prefix)) out.set(`${account}|${user}`, { account, user, grpTresMins, grpSubmitJobs });
  }
  return out;
}

/** Removes the Slurm accounts under `prefix`, their users, and every Unix user in the tests' uid range. */
const cleanUp = (prefix: string | undefined) => removeTestSlurmObjects(prefix, TEST_UIDS);
const expectRefused = expectSubmitRefused;

function failures(r: ScenarioReport): string {
  return r.checks
    .filter((c) => !c.ok)
    .map((c) => c.message)
    .join('\n');
}

/** A program that appends its arguments, as JSON, to `calls`, and succeeds. */
function recorder(dir: string, calls: string): string {
  const file = join(dir, 'record.mjs');
  writeFileSync(
    file,
    `#!/usr/bin/env node\nimport { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(calls)}, JSON.stringify(process.argv.slice(2)) + '\\n');\n`,
  );
  chmodSync(file, 0o755);
  return file;
}
const recorded = (calls: string): string[][] =>
  existsSync(calls)
    ? readFileSync(calls, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as string[])
    : [];

function handlerWith(db: TestDatabase['db'], options: SlurmOptionsInput, log = quietLog, dryRun = false): SlurmHandler {
  return new SlurmHandler({
    db,
    log,
    site: SITE,
    options: { cluster: SLURM_TEST_CLUSTER, uidRange: TEST_UIDS, ...options },
    dryRun,
  });
}

describe.runIf(hasSlurm())(`Slurm handler on the test cluster${slurmSkipNote()}`, () => {
  let t: TestDatabase;
  let prefix: string | undefined;
  beforeAll(async () => {
    await cleanUp(undefined); // Unix users a crashed run left behind
  });
  beforeEach(async () => {
    t = await database({ init: true });
    prefix = newPrefix();
  });
  afterEach(async () => {
    await cleanUp(prefix);
    await t?.cleanup();
  });

  it('plays every scenario: accounts, users, coordinators, limits, Unix users and grid-mapfile as the registry says; inactivated work is refused, reactivated work runs', async () => {
    const gridMapfile = join(tempDir(), 'grid-mapfile');
    const dispatcher = new Dispatcher(t.db, handlerWith(t.db, { accountPrefix: prefix, gridMapfile }), quietLog, {
      maxErrorDeferrals: 2,
    });
    // Right after an inactivation is answered, the inactivated project or account can submit no more.
    const refusals: string[] = [];
    const runner = {
      async runOnce(): Promise<RunSummary> {
        const summary = await dispatcher.runOnce();
        for (const r of summary.results) {
          if (r.outcome !== 'reply') continue;
          if (r.type === 'request_project_inactivate') {
            const p = (await listProjects(t.db)).find((x) => x.projectId === r.keys.ProjectID)!;
            refusals.push(`project ${p.projectId}: ${await expectRefused(p.slurmAccount!, p.piLogin!)}`);
          }
          if (r.type === 'request_account_inactivate') {
            const [a] = await listAccounts(t.db, { personId: r.keys.PersonID, projectId: r.keys.ProjectID });
            refusals.push(
              `account ${a!.login}: ${await expectRefused(handlerWith(t.db, { accountPrefix: prefix }).accountNameFor(a!.projectId), a!.login!)}`,
            );
          }
        }
        return summary;
      },
    };
    const reports = await runScenarios(t.db, runner, resolveScenarioNames('all'), { site: SITE, maxRounds: 6 });
    for (const r of reports)
      expect(failures(r), `${r.name}\n${formatScenarioReport(r, { verbose: true }).join('\n')}`).toBe('');
    expect(refusals).toHaveLength(2);
    for (const r of refusals) expect(r).toMatch(/Job violates accounting\/QOS policy/);

    const projects = await listProjects(t.db);
    const accounts = await listAccounts(t.db);
    const people = await listPeople(t.db, { includeMerged: true });
    const assocs = await associations(prefix!);
    expect(projects).toHaveLength(8);

    // A Slurm account per project: named by the rule, the allocation in GPU-minutes, blocked only if inactive.
    for (const p of projects) {
      expect(p.slurmAccount).toBe(`${prefix}${p.projectId.toLowerCase()}`);
      expect(assocs.get(`${p.slurmAccount}|`), p.projectId).toEqual({
        account: p.slurmAccount,
        user: '',
        grpTresMins: `gres/gpu=${p.serviceUnits * 60}`,
        grpSubmitJobs: p.active ? '' : '0',
      });
    }
    // The supplement scenario's project: 50000 + 10000 SUs.
    expect(projects.filter((p) => p.serviceUnits === 60000)).toHaveLength(1);
    expect(assocs.get(`${projects.find((p) => p.serviceUnits === 60000)!.slurmAccount}|`)?.grpTresMins).toBe(
      'gres/gpu=3600000',
    );

    // A user association per registry account, blocked exactly when the account is inactive.
    for (const a of accounts) {
      const slurmAccount = projects.find((p) => p.projectId === a.projectId)!.slurmAccount;
      expect(assocs.get(`${slurmAccount}|${a.login}`)?.grpSubmitJobs, `${a.login} on ${slurmAccount}`).toBe(
        a.active ? '' : '0',
      );
    }
    // A merged-away login keeps its associations, blocked; its account went to the kept person.
    const merged = people.filter((p) => p.mergedInto !== null);
    expect(merged).toHaveLength(1);
    const mergedAssocs = [...assocs.values()].filter((a) => a.user === merged[0]!.login);
    expect(mergedAssocs.length).toBeGreaterThan(0);
    for (const a of mergedAssocs) expect(a.grpSubmitJobs).toBe('0');
    expect(assocs.size).toBe(projects.length + accounts.length + mergedAssocs.length);

    // The PI coordinates the project's account.
    const coords = new Map(
      (await sacctmgrRows(['user', 'withcoord', 'format=user,coordinators'])).map(([u, c]) => [
        u!,
        (c ?? '').split(','),
      ]),
    );
    for (const p of projects)
      expect(coords.get(p.piLogin!), `${p.piLogin} coordinates ${p.slurmAccount}`).toContain(p.slurmAccount);

    // Description and organization from the packets, cleaned for sacctmgr.
    const [desc] = await sacctmgrRows([
      'account',
      'where',
      `name=${projects[0]!.slurmAccount}`,
      'format=organization,description',
    ]);
    expect(desc![1]).toMatch(/^turbulent mixing in the st\. lawrence estuary: whats next\? \([a-z0-9]+\)$/);
    expect(desc![0]).toBe(
      people
        .find((x) => x.personId === projects[0]!.piPersonId)!
        .organization!.replace(/'/g, '')
        .replace(/[A-Z]/g, (c) => c.toLowerCase()),
    );

    // A Unix user for every login, with the registry's uid.
    const unix = await testUnixUsers(TEST_UIDS);
    for (const p of people) expect(unix.get(p.login!), p.login!).toBe(p.uid);
    expect(unix.size).toBe(people.length);

    // The grid-mapfile maps exactly the DNs the registry holds (merged and deleted ones included) to their logins.
    // (People of different scenarios share a DN, so one line may map it to several logins.)
    const mapped = readFileSync(gridMapfile, 'utf8')
      .trim()
      .split('\n')
      .flatMap((line) => {
        const [, dn, logins] = /^"(.*)" (\S+)$/.exec(line)!;
        return logins!.split(',').map((login) => `${dn} -> ${login}`);
      });
    const expected = people
      .filter((p) => p.mergedInto === null)
      .flatMap((p) => p.dns.map((dn) => `${dn} -> ${p.login}`));
    expect(mapped.sort()).toEqual(expected.sort());

    // Work under the reactivated project (its PI) and the reactivated account (its user) runs.
    const reactivatedProject = projects.find((p) =>
      reports[0]!.conversation.some((c) => c.ids.includes(`ProjectID=${p.projectId}`)),
    )!;
    const rac = reports[1]!.conversation.filter((c) => c.in === 'request_account_inactivate')[0]!;
    const racPerson = /PersonID=(\S+)/.exec(rac.ids)![1]!;
    const racAccount = accounts.find((a) => a.personId === racPerson)!;
    const jobs = [
      await submitJob({
        account: reactivatedProject.slurmAccount!,
        user: reactivatedProject.piLogin!,
        gpus: 1,
        seconds: 1,
      }),
      await submitJob({
        account: `${prefix}${racAccount.projectId.toLowerCase()}`,
        user: racAccount.login!,
        gpus: 1,
        seconds: 1,
      }),
    ];
    expect([...(await waitForJobs(jobs, 60_000)).values()]).toEqual(['COMPLETED', 'COMPLETED']);
  }, 300_000);

  it('passes hostile packet text to commands as single arguments or refuses it, and runs none of it', async () => {
    const dir = tempDir();
    const canary = join(dir, 'canary');
    const calls = join(dir, 'calls.jsonl');
    const gridMapfile = join(dir, 'grid-mapfile');
    const rec = recorder(dir, calls);
    const createUser = [
      'node',
      rec,
      '{login}',
      '{uid}',
      '{fullName}',
      '{gecos}',
      '{email}',
      '{organization}',
      '{projectId}',
      '{slurmAccount}',
    ];
    const dispatcher = new Dispatcher(
      t.db,
      handlerWith(t.db, { accountPrefix: prefix, gridMapfile, createUser }),
      quietLog,
      { maxErrorDeferrals: 3 },
    );
    const touch = `touch ${canary}`;
    const sim = new SimData(SITE.resource);
    const pi = sim.person();
    const firstName = `Robert'); ${touch}; -- "$(${touch})"`;
    const lastName = `\`${touch}\` O'Brien${'x'.repeat(900)}`;
    const dn = `/C=US/O=Evil/CN=$(${touch}); \`${touch}\` | a=b`;
    const rpc = sim.rpc(pi, {
      PiFirstName: firstName,
      PiLastName: lastName,
      PiOrganization: `Evil "Corp"; ${touch} | x=y ${'o'.repeat(900)}`,
      PiEmail: `a$(${touch})@example.org`,
      ProjectTitle: `"; ${touch}; echo "\n$(${touch}) \`${touch}\` ${'t'.repeat(5000)}`,
      PiRequestedLoginList: [`$(${touch})`, 'ro;ot', '`id`'],
      PiDnList: [dn],
    });
    const { packetRecId } = await seedIncoming(t.db, 'request_project_create', rpc);
    const first = await dispatcher.runOnce();
    expect(first.results.map((r) => [r.type, r.outcome, r.reason])).toEqual([
      ['request_project_create', 'reply', undefined],
    ]);
    expect(await packetState(t.db, packetRecId)).toBe(1); // completed

    const [project] = await listProjects(t.db);
    const [person] = await listPeople(t.db);
    expect(person!.login).toMatch(/^[a-z_][a-z0-9_-]{0,31}$/);
    // The site command got each value as exactly one argument, made single-line.
    const argv = recorded(calls);
    expect(argv).toHaveLength(1);
    expect(argv[0]).toEqual([
      person!.login,
      String(person!.uid),
      `${firstName} ${lastName}`,
      `${firstName} ${lastName}`.slice(0, 255),
      `a$(${touch})@example.org`,
      `Evil "Corp"; ${touch} | x=y ${'o'.repeat(900)}`,
      project!.projectId,
      project!.slurmAccount,
    ]);
    // sacctmgr got cleaned, bounded text as one key=value argument each.
    const [[org, desc]] = (await sacctmgrRows([
      'account',
      'where',
      `name=${project!.slurmAccount}`,
      'format=organization,description',
    ])) as [[string, string]];
    expect(desc).toMatch(/^; touch \S+canary; echo \(touch \S+canary\) touch \S+canary t+$/);
    expect(desc.length).toBeLessThanOrEqual(200);
    expect(org).toMatch(/^evil corp; touch \S+canary x y o+$/);
    // The DN went into the grid-mapfile literally.
    expect(readFileSync(gridMapfile, 'utf8')).toBe(`"${dn}" ${person!.login}\n`);

    // A DN the grid-mapfile cannot hold is refused, naming it; the file is unchanged.
    const bad = await seedIncoming(t.db, 'request_user_modify', {
      ActionType: 'add',
      PersonID: person!.personId,
      DnList: ['/CN=Mallory" root'],
    });
    const second = await dispatcher.runOnce();
    expect(second.results.map((r) => r.outcome)).toEqual(['error']);
    expect((await auditOf(t.db, bad.packetRecId))[0]!.reason).toContain(
      'DN "/CN=Mallory\\" root" cannot go into a grid-mapfile: it is empty or holds a double quote, a backslash or a control character',
    );
    expect(readFileSync(gridMapfile, 'utf8')).toBe(`"${dn}" ${person!.login}\n`);

    // A line break in a name never gets as far as a command: the packet is invalid, and says why.
    const sim3 = new SimData(SITE.resource);
    const multiLine = await seedIncoming(
      t.db,
      'request_project_create',
      sim3.rpc(sim3.person(), { PiLastName: `Doe\n${touch}` }),
    );
    await dispatcher.runOnce();
    expect((await auditOf(t.db, multiLine.packetRecId))[0]).toMatchObject({ outcome: 'invalid' });
    expect((await auditOf(t.db, multiLine.packetRecId))[0]!.reason).toMatch(
      /PiLastName: .* contains the control character U\+000A/,
    );
    expect(recorded(calls)).toHaveLength(1);

    // A ProjectID that gives no valid Slurm account name is refused with the rule's name.
    const sim2 = new SimData(SITE.resource);
    const evilProject = await seedIncoming(
      t.db,
      'request_project_create',
      sim2.rpc(sim2.person(), { ProjectID: `p;$(${touch})` }),
    );
    await dispatcher.runOnce();
    expect((await auditOf(t.db, evilProject.packetRecId))[0]!.reason).toMatch(
      /handler\.options\.accountName: ProjectID "p;\$\(touch \S+canary\)" gives the Slurm account name/,
    );

    expect(existsSync(canary)).toBe(false);
  }, 120_000);

  it('defers a packet whose site command fails, with the command and its stderr in the audit, finishes it once the command works, and follows the allocation', async () => {
    const dir = tempDir();
    const script = join(dir, 'make-user.mjs');
    writeFileSync(
      script,
      `console.error('make-user: cannot reach ldap.example.org: Connection refused'); process.exit(3);\n`,
    );
    const createUser = ['node', script, '{login}', '--gecos', '{gecos}'];
    const commands: string[][] = [];
    const log = pino(
      { level: 'debug' },
      {
        write: (l: string) => {
          const o = JSON.parse(l);
          if (o.argv && o.msg.startsWith('ran ')) commands.push(o.argv);
        },
      },
    );
    const dispatcher = new Dispatcher(t.db, handlerWith(t.db, { accountPrefix: prefix, createUser }, log), log, {
      maxErrorDeferrals: 3,
    });
    const sim = new SimData(SITE.resource);
    const rpc = sim.rpc(sim.person());
    const { packetRecId } = await seedIncoming(t.db, 'request_project_create', rpc);

    const first = await dispatcher.runOnce();
    expect(first.results.map((r) => r.outcome)).toEqual(['error']);
    expect(await packetState(t.db, packetRecId)).toBe(2); // still in progress
    const [audit] = await auditOf(t.db, packetRecId);
    expect(audit!.outcome).toBe('error');
    expect(audit!.reason).toMatch(
      new RegExp(
        `^handler error \\(attempt 1 of 4\\): command failed \\(exit 3\\): node ${script} [a-z0-9_-]+ --gecos "[^"]+": make-user: cannot reach ldap\\.example\\.org: Connection refused$`,
      ),
    );
    // Nothing of the packet is in the registry; the Slurm account made before the failure stays and is reused.
    expect(await listProjects(t.db)).toHaveLength(0);
    // Operators read it on Slack too: the real client, against a local server answering like Slack.
    const slack = await new FakeSlack().start();
    try {
      const config = SlackConfigSchema.parse({ channel: '#amie-ops', apiUrl: slack.url });
      await new SlackNotifier({ token: 'xoxb-test', config, site: SITE.name, log: quietLog }).notifyRun(first);
      // Host-name dots and '://' in packet-derived text are posted as look-alikes (they must not link).
      const readable = slack.texts.map((text) => text.replaceAll('\u2024', '.').replaceAll('\ua789', ':'));
      expect(
        readable.some(
          (text) =>
            text.includes('make-user: cannot reach ldap.example.org: Connection refused') && text.includes(script),
        ),
      ).toBe(true);
    } finally {
      await slack.stop();
    }

    writeFileSync(script, 'process.exit(0);\n');
    const second = await dispatcher.runOnce();
    expect(second.results.map((r) => r.outcome)).toEqual(['reply']);
    const [project] = await listProjects(t.db);
    const assocs = await associations(prefix!);
    expect([...assocs.keys()].sort()).toEqual([
      `${project!.slurmAccount}|`,
      `${project!.slurmAccount}|${project!.piLogin}`,
    ]);

    // Every later RPC sets GrpTRESMins from the allocation it leaves; a renewal also starts the usage afresh.
    const steps: Array<[string, string, number]> = [
      ['supplement', '10000', 60000],
      ['transfer', '-5000', 55000],
      ['adjustment', '-1000', 54000],
      ['advance', '2000', 56000],
      ['extension', '0', 56000],
      ['renewal', '20000', 20000],
    ];
    for (const [AllocationType, units, total] of steps) {
      commands.length = 0;
      await seedIncoming(t.db, 'request_project_create', {
        ...rpc,
        AllocationType,
        RecordID: sim.recordId(),
        ProjectID: project!.projectId,
        PiPersonID: project!.piPersonId,
        ServiceUnitsAllocated: units,
      });
      const r = await dispatcher.runOnce();
      expect(
        r.results.map((x) => [x.type, x.outcome, x.reason]),
        AllocationType,
      ).toEqual([['request_project_create', 'reply', undefined]]);
      expect((await associations(prefix!)).get(`${project!.slurmAccount}|`)?.grpTresMins, AllocationType).toBe(
        `gres/gpu=${total * 60}`,
      );
      const resets = commands.filter((c) => c.includes('RawUsage=0'));
      expect(resets, AllocationType).toEqual(
        AllocationType === 'renewal'
          ? [
              [
                'sacctmgr',
                '-i',
                'modify',
                'account',
                'where',
                `name=${project!.slurmAccount}`,
                `cluster=${SLURM_TEST_CLUSTER}`,
                'set',
                'RawUsage=0',
              ],
            ]
          : [],
      );
    }
  }, 90_000);
});

describe('Slurm handler dry runs', () => {
  let t: TestDatabase;
  beforeEach(async () => {
    t = await driverCases()[0]!.open({ init: true });
  });
  afterEach(async () => {
    await t?.cleanup();
  });

  for (const how of ['handler.options.commands: log-only', 'amie process --dry-run'] as const) {
    it(`runs nothing and logs every argument list (${how})`, async () => {
      const dir = tempDir();
      const calls = join(dir, 'calls.jsonl');
      const rec = recorder(dir, calls);
      const gridMapfile = join(dir, 'grid-mapfile');
      const lines: Array<{ msg: string; argv?: string[] }> = [];
      const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
      const viaOption = how === 'handler.options.commands: log-only';
      const handler = handlerWith(
        t.db,
        {
          accountPrefix: 'dry-',
          sacctmgr: rec,
          scancel: rec,
          createUser: [rec, 'make-user', '{login}'],
          gridMapfile,
          cancelRunningJobs: true,
          commands: viaOption ? 'log-only' : 'run',
        },
        log,
        !viaOption,
      );
      const dispatcher = new Dispatcher(t.db, handler, log, { dryRun: !viaOption });
      const sim = new SimData(SITE.resource);
      const rpc = sim.rpc(sim.person(), { GrantNumber: 'TG-DRY1', ProjectID: 'TG-DRY1' });
      await seedIncoming(t.db, 'request_project_create', rpc);
      const summary = await dispatcher.runOnce();
      expect(summary.results.map((r) => r.outcome)).toEqual(['reply']);
      const login = String(summary.results[0]!.reply!.PiRemoteSiteLogin);

      expect(existsSync(calls)).toBe(false);
      expect(existsSync(gridMapfile)).toBe(false);
      const argvs = lines.filter((l) => l.msg.startsWith('dry run: would run')).map((l) => l.argv);
      expect(argvs).toEqual([
        [
          rec,
          '-n',
          '-P',
          'show',
          'account',
          'where',
          'name=dry-tg-dry1',
          'withassoc',
          'format=account,cluster,user,organization,description',
        ],
        [
          rec,
          '-i',
          'add',
          'account',
          'dry-tg-dry1',
          'cluster=amietest',
          `description=Turbulent mixing in the St. Lawrence estuary: whats next? (${sim.suffix})`,
          `organization=${String(rpc.PiOrganization)}`,
        ],
        [
          rec,
          '-n',
          '-P',
          'show',
          'assoc',
          'where',
          'account=dry-tg-dry1',
          'cluster=amietest',
          'format=cluster,account,user,parentname,grptresmins,grpsubmitjobs',
        ],
        [
          rec,
          '-i',
          'modify',
          'account',
          'where',
          'name=dry-tg-dry1',
          'cluster=amietest',
          'set',
          'GrpTRESMins=gres/gpu=3000000',
        ],
        [rec, 'make-user', login],
        [
          rec,
          '-n',
          '-P',
          'show',
          'assoc',
          'where',
          'account=dry-tg-dry1',
          `user=${login}`,
          'cluster=amietest',
          'format=cluster,account,user,parentname,grptresmins,grpsubmitjobs',
        ],
        [rec, '-i', 'add', 'user', login, 'account=dry-tg-dry1', 'cluster=amietest'],
        [rec, '-i', 'add', 'coordinator', 'account=dry-tg-dry1', `names=${login}`],
      ]);
      expect(lines.some((l) => l.msg === `dry run: would update grid-mapfile ${gridMapfile}`)).toBe(true);
    });
  }
});

describe.runIf(hasSlurm())(`amie simulate with the example Slurm configuration${slurmSkipNote()}`, () => {
  let prefix: string | undefined;
  let db: TestDatabase | undefined;
  requireBuiltCli();
  beforeAll(() => cleanUp(undefined));
  afterAll(async () => {
    await cleanUp(prefix);
    await db?.cleanup();
  });

  it('passes all scenarios with a copy of config/slurm-site.yaml, names filled in', async () => {
    const dir = tempDir();
    prefix = newPrefix();
    db = await database();
    // What a site does: copy the example and fill in its names.
    const doc = parseDocument(readFileSync('config/slurm-site.yaml', 'utf8'));
    doc.setIn(['handler', 'options', 'cluster'], SLURM_TEST_CLUSTER);
    doc.setIn(['handler', 'options', 'accountPrefix'], prefix);
    doc.setIn(['handler', 'options', 'uidRange'], TEST_UIDS);
    doc.setIn(['handler', 'options', 'gridMapfile'], join(dir, 'grid-mapfile'));
    doc.setIn(['log', 'level'], 'fatal');
    doc.delete('database');
    doc.set('database', db.url ? { url: db.url } : { path: './db' });
    writeFileSync(join(dir, 'slurm-site.yaml'), doc.toString());

    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('AMIE_')) delete env[k];
    const amie = (args: string[]) =>
      execa('node', [CLI, '-c', 'slurm-site.yaml', ...args], {
        cwd: dir,
        env,
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
        timeout: 240_000,
      });
    const init = await amie(['db', 'init']);
    expect(init.exitCode, init.stderr).toBe(0);
    const r = await amie(['simulate', '--scenario', 'all']);
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('handler slurm');
    expect(r.stdout).toMatch(/^verdict: passed \(8 of 8 scenarios\)/m);

    const assocs = await associations(prefix);
    const own = [...assocs.values()].filter((a) => a.user === '');
    expect(own).toHaveLength(8);
    expect(own.filter((a) => a.grpTresMins === 'gres/gpu=3000000')).toHaveLength(7);
    expect(readFileSync(join(dir, 'grid-mapfile'), 'utf8')).toMatch(/^"\/C=US\/O=.*" [a-z]/);
  }, 300_000);
});
