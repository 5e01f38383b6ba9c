/**
 * Hostile packets against the Slurm handler on the real test cluster (`amietest`): a ProjectID
 * whose Slurm account is another project's, and a person's name that a site script would take
 * for an option. Every run uses its own account prefix and uid range, and removes what it made.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlurmHandler, type SlurmOptionsInput } from '../../handlers/slurm.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { listPeople, listProjects } from '../../src/registry/index.js';
import { SITE, outgoingPackets, projectRpc, quietLog, seedIncoming, type RpcPi } from '../helpers/amie.js';
import { tempDirs } from '../helpers/cli.js';
import { preferredDriver, type OpenOptions, type TestDatabase } from '../helpers/db.js';
import {
  takeTurnsOnTheCluster,
  SLURM_TEST_CLUSTER,
  hasSlurm,
  removeSlurmUsersAndAccounts,
  sacctmgrRows,
  slurmSkipNote,
} from '../helpers/slurm.js';

takeTurnsOnTheCluster();

/** uids for this file's logins: a range of its own, so other Slurm test files' clean-ups leave them be. */
const TEST_UIDS = { start: 3_200_000, end: 3_209_999 };

const tempDir = tempDirs('amie-hostile-');

const database = (options?: OpenOptions) => preferredDriver().open(options);

/** Everything Slurm and the passwd database say about the accounts under `prefix` and the logins given. */
async function slurmState(prefix: string, logins: string[]) {
  const assocs = (
    await sacctmgrRows([
      'assoc',
      'where',
      `cluster=${SLURM_TEST_CLUSTER}`,
      'format=account,user,grptresmins,grpsubmitjobs',
    ])
  )
    .filter(([account]) => account!.startsWith(prefix))
    .map((f) => f.join('|'))
    .sort();
  const coordinators = (await sacctmgrRows(['user', 'withcoord', 'format=user,coordinators']))
    .filter(([, c]) => (c ?? '').split(',').some((a) => a.startsWith(prefix)))
    .map((f) => f.join('|'))
    .sort();
  const unixUsers: string[] = [];
  for (const login of logins) {
    const r = await execa('getent', ['passwd', login], { reject: false, stdin: 'ignore' });
    if (r.exitCode === 0) unixUsers.push(r.stdout.split(':').slice(0, 3).join(':'));
  }
  const slurmUsers = (await sacctmgrRows(['user', 'format=user']))
    .map(([u]) => u!)
    .filter((u) => logins.includes(u))
    .sort();
  return { assocs, coordinators, unixUsers, slurmUsers };
}

async function cleanUp(prefix: string, logins: string[]): Promise<void> {
  const accounts = [
    ...new Set(
      (await sacctmgrRows(['account', 'format=account'])).map(([a]) => a!).filter((a) => a.startsWith(prefix)),
    ),
  ];
  await removeSlurmUsersAndAccounts(logins, accounts);
  for (const login of logins) await execa('userdel', ['--remove', login], { reject: false, stdin: 'ignore' });
}

/** The RPC of project `grant` led by `pi`, for `units`, under a RecordID of its own. */
const rpc = (grant: string, projectId: string, pi: Required<RpcPi>, units: string) =>
  projectRpc(grant, projectId, pi, { RecordID: `rec-${grant}-${pi.login}`, ServiceUnitsAllocated: units });

describe.runIf(hasSlurm())(`hostile packets against the Slurm handler on the test cluster${slurmSkipNote()}`, () => {
  let t: TestDatabase;
  let prefix: string;
  let logins: string[];
  beforeEach(async () => {
    t = await database({ init: true });
    const tag = randomBytes(3).toString('hex');
    prefix = `amh${tag}-`;
    logins = [`ha${tag}`, `hb${tag}`];
  });
  afterEach(async () => {
    await cleanUp(prefix, logins);
    await t?.cleanup();
  });

  const handler = (options: SlurmOptionsInput = {}) =>
    new SlurmHandler({
      db: t.db,
      log: quietLog,
      site: SITE,
      options: { cluster: SLURM_TEST_CLUSTER, uidRange: TEST_UIDS, accountPrefix: prefix, ...options },
      dryRun: false,
    });
  const replyTo = async (transRecId: number) =>
    (await outgoingPackets(t.db)).filter((p) => p.trans_rec_id === transRecId).at(-1);

  it("[12.6] RPC tg-abc after TG-ABC (another PI): a failure ITC naming both; TG-ABC's Slurm account, users and coordinators unchanged, no Unix user made, and again on a retry", async () => {
    const dispatcher = new Dispatcher(t.db, handler(), quietLog);
    const jane = { first: 'Jane', last: 'Doe', login: logins[0]!, globalId: '80001' };
    const mary = { first: 'Mary', last: 'Major', login: logins[1]!, globalId: '80002' };
    await seedIncoming(t.db, 'request_project_create', rpc('TG-ABC', 'TG-ABC', jane, '1000'));
    expect((await dispatcher.runOnce()).answered).toBe(1);
    const before = await slurmState(prefix, logins);
    expect(before.assocs).toEqual([`${prefix}tg-abc|${jane.login}||`, `${prefix}tg-abc||gres/gpu=60000|`]);
    expect(before.coordinators).toEqual([`${jane.login}|${prefix}tg-abc`]);
    expect(before.unixUsers).toHaveLength(1);

    const expectRefused = async (transRecId: number) => {
      const reply = await replyTo(transRecId);
      expect(reply?.type_name).toBe('inform_transaction_complete');
      expect(reply?.body.StatusCode).toBe('Failure');
      expect(String(reply?.body.Message)).toMatch(
        new RegExp(
          `ProjectID tg-abc would get the Slurm account ${prefix}tg-abc, which is already the account of ProjectID TG-ABC`,
        ),
      );
    };
    const second = await seedIncoming(t.db, 'request_project_create', rpc('tg-abc', 'tg-abc', mary, '5'));
    const summary = await dispatcher.runOnce();
    expect({ failed: summary.failed, errors: summary.errors }).toEqual({ failed: 1, errors: 0 });
    await expectRefused(second.transRecId);
    expect(await slurmState(prefix, logins)).toEqual(before);

    // Nothing is left to retry; central sending the RPC again gets the same answer, and nothing changes.
    expect((await new Dispatcher(t.db, handler(), quietLog).runOnce()).taken).toBe(0);
    const resent = await seedIncoming(t.db, 'request_project_create', rpc('tg-abc', 'tg-abc', mary, '5'));
    expect((await new Dispatcher(t.db, handler(), quietLog).runOnce()).failed).toBe(1);
    await expectRefused(resent.transRecId);
    expect(await slurmState(prefix, logins)).toEqual(before);
    expect((await listProjects(t.db)).map((p) => p.projectId)).toEqual(['TG-ABC']);
    expect((await listPeople(t.db)).map((p) => p.login)).toEqual([jane.login]);
  }, 120_000);

  it('[12.13] a user named "--shell=/tmp/evil" on an existing project: the RAC fails with the reason, no Unix user or association is made', async () => {
    // A site script that takes its values as operands, as many do.
    const dir = tempDir();
    const script = join(dir, 'make-user.mjs');
    writeFileSync(
      script,
      `import { execFileSync } from 'node:child_process';\nconst [uid, login, first] = process.argv.slice(2);\n` +
        `execFileSync('useradd', ['--uid', uid, '--comment', first, '--create-home', login]);\n`,
    );
    const dispatcher = new Dispatcher(
      t.db,
      handler({ createUser: ['node', script, '{uid}', '{login}', '{firstName}'] }),
      quietLog,
    );
    const jane = { first: 'Jane', last: 'Doe', login: logins[0]!, globalId: '80011' };
    await seedIncoming(t.db, 'request_project_create', rpc('TG-OPT', 'TG-OPT', jane, '100'));
    const first = await dispatcher.runOnce();
    expect(first.answered, JSON.stringify(first.results.map((r) => r.reason))).toBe(1);
    const before = await slurmState(prefix, logins);
    expect(before.unixUsers).toHaveLength(1);

    const rac = await seedIncoming(t.db, 'request_account_create', {
      GrantNumber: 'TG-OPT',
      ProjectID: 'TG-OPT',
      ResourceList: [SITE.resource],
      UserFirstName: '--shell=/tmp/evil',
      UserLastName: 'Mallory',
      UserOrganization: 'Example University',
      UserOrgCode: '0012345',
      UserGlobalID: '80012',
      UserRequestedLoginList: [logins[1]!],
    });
    const summary = await dispatcher.runOnce();
    expect(summary.results.map((r) => r.outcome)).toEqual(['fail']);
    expect(summary.results[0]!.reason).toMatch(
      /"\{firstName\}" would be "--shell=\/tmp\/evil", which the program would take for an option/,
    );
    expect((await replyTo(rac.transRecId))?.body.StatusCode).toBe('Failure');
    expect(await slurmState(prefix, logins)).toEqual(before);
    expect((await listPeople(t.db)).map((p) => p.login)).toEqual([jane.login]);
  }, 120_000);
});
