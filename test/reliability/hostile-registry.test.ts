/**
 * Hostile packets against the registry's books, on both database drivers: a ProjectID whose
 * Slurm account is another project's, `$'` in a ProjectID, and a reply the dispatcher refuses
 * after the handler changed its books. Site commands with hostile arguments and the environment
 * they get are here too (a local program stands in for useradd; no Slurm needed).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { RegistryHandler } from '../../handlers/registry.js';
import { SlurmHandler } from '../../handlers/slurm.js';
import { Dispatcher, PacketFailure, type IncomingPacket, type PacketContext } from '../../src/dispatch/index.js';
import {
  RegistryBooks,
  listPeople,
  listProjects,
  type AllocationChange,
  type RegistryAccount,
  type RegistryLogin,
  type RegistryPerson,
  type RegistryProject,
} from '../../src/registry/index.js';
import { expandArgv, runCommand } from '../../src/slurm/index.js';
import { SITE, auditOf, outgoingPackets, projectRpc, quietLog, seedIncoming } from '../helpers/amie.js';
import { driverCases, databaseEachTest } from '../helpers/db.js';
import { tempDirs } from '../helpers/cli.js';
import { commandRecorder } from '../helpers/slurm.js';

/** A registry whose projects get Slurm accounts as the Slurm handler names them; hooks are written down. */
class BookedRegistry extends RegistryHandler {
  calls: string[] = [];
  /** GrantNumbers whose NPC this site's code spoils (an empty PiRemoteSiteLogin), so the dispatcher refuses it. */
  spoil = new Set<string>();
  override slurmAccountFor(project: Omit<RegistryProject, 'slurmAccount'>): string {
    return project.projectId.toLowerCase();
  }
  override async createLogin(person: RegistryPerson, login: RegistryLogin) {
    this.calls.push(`createLogin ${login.login} ${person.personId}`);
  }
  override async createProject(project: RegistryProject, pi: RegistryPerson) {
    this.calls.push(`createProject ${project.projectId} ${project.slurmAccount} ${pi.personId}`);
  }
  override async addAccount(account: RegistryAccount) {
    this.calls.push(`addAccount ${account.login} ${account.projectId}`);
  }
  override async setAllocation(project: RegistryProject, change: AllocationChange) {
    this.calls.push(`setAllocation ${project.projectId} ${change.after.serviceUnits}`);
  }
  override async request_project_create(packet: IncomingPacket<'request_project_create'>, ctx: PacketContext) {
    const reply = await super.request_project_create(packet, ctx);
    return this.spoil.has(packet.tags.GrantNumber) ? { ...reply, PiRemoteSiteLogin: '' } : reply;
  }
}

const JANE = { first: 'Jane', last: 'Doe', globalId: '70001' };
const EVIL = { first: '--shell=/tmp/evil', last: 'Doe', globalId: '70003' };

const tempDir = tempDirs('amie-hostile-');
const recorder = () => commandRecorder(tempDir());

/** amie's secrets, as the environment of `amie process` holds them; restored afterwards. */
const SECRETS = {
  SLACK_BOT_TOKEN: 'xoxb-secret-slack-token',
  AMIE_API_KEY: 'secret-usage-api-key',
  AMIE_DATABASE_URL: 'postgres://amie:secret-db-password@db.example.org/amie',
  AMIE_DB_PASSWORD: 'secret-db-password',
};
function withSecrets(extra: Record<string, string> = {}): () => void {
  const vars: Record<string, string> = { ...SECRETS, ...extra };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

describe('site commands and packet text', () => {
  it('[12.13] a value that would start an argument with "-" is refused with a PacketFailure naming it', () => {
    const values = { firstName: '--shell=/tmp/evil', middleName: null, lastName: '-x', login: 'jdoe', uid: '100001' };
    expect(() => expandArgv(['make-user', '{firstName}', '{login}'], values)).toThrow(PacketFailure);
    expect(() => expandArgv(['make-user', '{firstName}', '{login}'], values)).toThrow(/"--shell=\/tmp\/evil".*option/);
    // An empty value before it does not hide the dash; neither does a leading space.
    expect(() => expandArgv(['make-user', '{middleName}{lastName}'], values)).toThrow(PacketFailure);
    expect(() => expandArgv(['make-user', '{firstName}'], { firstName: ' -e' })).toThrow(PacketFailure);
    // Glued to an option, or after "--", the program reads it as a value.
    expect(expandArgv(['make-user', '--gecos={firstName}', '--', '{lastName}', '{login}'], values)).toEqual([
      'make-user',
      '--gecos=--shell=/tmp/evil',
      '--',
      '-x',
      'jdoe',
    ]);
    expect(expandArgv(['make-user', '{login}', '{firstName}'], { login: 'jdoe', firstName: 'Anne-Marie' })).toEqual([
      'make-user',
      'jdoe',
      'Anne-Marie',
    ]);
  });

  it("[12.14] a command gets PATH, HOME, LANG, TZ and the listed names, never amie's secrets", async () => {
    const rec = recorder();
    const restore = withSecrets({ SITE_LDAP_URI: 'ldap://ldap.example.org', TZ: 'America/Chicago' });
    try {
      await runCommand([rec.program, 'one'], { log: quietLog });
      await runCommand([rec.program, 'two'], { log: quietLog, env: ['SITE_LDAP_URI'] });
    } finally {
      restore();
    }
    const [one, two] = rec.calls();
    expect(Object.keys(one!.env).sort()).toEqual(
      [
        'HOME',
        'PATH',
        'TZ',
        ...(process.env.LANG ? ['LANG'] : []),
        ...(process.env.SLURM_CONF ? ['SLURM_CONF'] : []),
      ].sort(),
    );
    expect(one!.env.TZ).toBe('America/Chicago');
    expect(two!.env.SITE_LDAP_URI).toBe('ldap://ldap.example.org');
    for (const call of [one!, two!]) {
      const dump = JSON.stringify(call.env);
      for (const secret of Object.values(SECRETS)) expect(dump).not.toContain(secret);
    }
  });
});

const MARY = { first: 'Mary', last: 'Major', globalId: '70002' };

describe.each(driverCases())('hostile packets against the registry on $name', (driver) => {
  const t = databaseEachTest(driver);
  let handler: BookedRegistry;
  beforeEach(async () => {
    if (!driver.available) return;
    handler = new BookedRegistry({ db: t.db, log: quietLog, site: SITE, options: {}, dryRun: false });
  });
  const run = it.skipIf(!driver.available);

  const dispatch = () => new Dispatcher(t.db, handler, quietLog).runOnce();
  const replyTo = async (transRecId: number) =>
    (await outgoingPackets(t.db)).filter((p) => p.trans_rec_id === transRecId).at(-1);
  const rpcRecords = async () =>
    (
      await t.db.query<{ record_id: string }>('SELECT record_id FROM amie_toolkit.rpc_records ORDER BY record_id')
    ).rows.map((r) => r.record_id);

  /** What the books say about projects and people, to compare before and after. */
  async function books() {
    const projects = (await listProjects(t.db)).map(
      (p) => `${p.projectId} ${p.slurmAccount} pi=${p.piPersonId} su=${p.serviceUnits}`,
    );
    const people = (await listPeople(t.db)).map((p) => `${p.personId} ${p.login} ${p.firstName} ${p.lastName}`);
    return { projects, people, rpc: await rpcRecords() };
  }

  async function expectClashRefused(transRecId: number) {
    const reply = await replyTo(transRecId);
    expect(reply?.type_name).toBe('inform_transaction_complete');
    expect(reply?.body.StatusCode).toBe('Failure');
    const message = String(reply?.body.Message);
    expect(message).toContain('ProjectID tg-abc');
    expect(message).toContain('ProjectID TG-ABC');
    expect(message).toContain('Slurm account tg-abc');
  }

  run(
    "[12.6] an RPC whose Slurm account is another project's gets a failure ITC naming both projects; no hook runs, the books stay",
    async () => {
      await seedIncoming(t.db, 'request_project_create', projectRpc('TG-ABC', 'TG-ABC', JANE));
      expect((await dispatch()).answered).toBe(1);
      const before = await books();
      expect(before.projects).toEqual(['TG-ABC tg-abc pi=jdoe su=1000']);
      handler.calls = [];

      const second = await seedIncoming(
        t.db,
        'request_project_create',
        projectRpc('tg-abc', 'tg-abc', MARY, { ServiceUnitsAllocated: '5' }),
      );
      const summary = await dispatch();
      expect(summary.failed).toBe(1);
      expect(summary.errors).toBe(0);
      await expectClashRefused(second.transRecId);
      expect(handler.calls).toEqual([]);
      expect(await books()).toEqual(before);

      // Central sends it again: the same answer, still nothing done.
      const again = await seedIncoming(
        t.db,
        'request_project_create',
        projectRpc('tg-abc', 'tg-abc', MARY, { ServiceUnitsAllocated: '5' }),
      );
      expect((await dispatch()).failed).toBe(1);
      await expectClashRefused(again.transRecId);
      expect(handler.calls).toEqual([]);
      expect(await books()).toEqual(before);
    },
  );

  run(
    '[12.6] two clashing RPCs in one batch: the first is answered, the second refused before its hooks, the batch is written',
    async () => {
      const first = await seedIncoming(t.db, 'request_project_create', projectRpc('TG-ABC', 'TG-ABC', JANE));
      const second = await seedIncoming(t.db, 'request_project_create', projectRpc('tg-abc', 'tg-abc', MARY));
      const summary = await dispatch();
      expect({ answered: summary.answered, failed: summary.failed, errors: summary.errors }).toEqual({
        answered: 1,
        failed: 1,
        errors: 0,
      });
      expect((await replyTo(first.transRecId))?.type_name).toBe('notify_project_create');
      await expectClashRefused(second.transRecId);
      expect(handler.calls).toEqual([
        'createLogin jdoe jdoe',
        'createProject TG-ABC tg-abc jdoe',
        'setAllocation TG-ABC 1000',
        'addAccount jdoe TG-ABC',
      ]);
      expect((await books()).projects).toEqual(['TG-ABC tg-abc pi=jdoe su=1000']);
      expect((await books()).people).toEqual(['jdoe jdoe Jane Doe']);
    },
  );

  run('[12.6] a Slurm account the batch did not read with its books is checked in the database', async () => {
    await seedIncoming(t.db, 'request_project_create', projectRpc('TG-ABC', 'TG-ABC', JANE));
    await dispatch();
    const questions = {
      recordIds: [],
      projectIds: [],
      grantNumbers: [],
      personIds: [],
      globalIds: [],
      sitePersonIds: [],
      candidates: [],
      slurmAccounts: [],
      uidRange: { start: 1, end: 9 },
    };
    await t.db.transaction(async (tx) => {
      const books = await RegistryBooks.read(tx, questions);
      expect(await books.slurmAccountOwner(tx, 'tg-abc')).toBe('TG-ABC');
      expect(await books.slurmAccountOwner(tx, 'tg-xyz')).toBeNull();
    });
  });

  run("[12.6] `$'` in a ProjectID is not expanded into the Slurm account name", async () => {
    const slurm = new SlurmHandler({
      db: t.db,
      log: quietLog,
      site: SITE,
      options: { commands: 'log-only' },
      dryRun: false,
    });
    // A string replacement turned "tg-abc$'" into "tg-abc", TG-ABC's account.
    expect(() => slurm.accountNameFor("TG-ABC$'")).toThrow(/does not match/);
    expect(() => slurm.accountNameFor('TG-ABC$&x')).toThrow(/does not match/);
    const prefixed = new SlurmHandler({
      db: t.db,
      log: quietLog,
      site: SITE,
      options: { commands: 'log-only', accountName: 'x-{projectId}-y' },
      dryRun: false,
    });
    expect(() => prefixed.accountNameFor("ab$'")).toThrow(/"x-ab\$'-y"/);
    expect(prefixed.accountNameFor('TG-ABC')).toBe('x-tg-abc-y');
  });

  /** The Slurm handler with a recorder standing in for sacctmgr, scancel and createUser. */
  function recordingSlurm(options: Record<string, unknown> = {}) {
    const rec = recorder();
    const slurm = new SlurmHandler({
      db: t.db,
      log: quietLog,
      site: SITE,
      options: {
        sacctmgr: rec.program,
        scancel: rec.program,
        createUser: [rec.program, 'make-user', '{firstName}', '{login}'],
        uidRange: { start: 3_900_000, end: 3_900_999 },
        ...options,
      },
      dryRun: false,
    });
    return { rec, dispatch: () => new Dispatcher(t.db, slurm, quietLog).runOnce() };
  }

  run('[12.13] a PI named "--shell=/tmp/evil" fails the RPC with the reason before any command runs', async () => {
    const { rec, dispatch: run } = recordingSlurm();
    const seeded = await seedIncoming(t.db, 'request_project_create', projectRpc('TG-EVIL', 'p-evil', EVIL));
    const summary = await run();
    expect({ failed: summary.failed, errors: summary.errors }).toEqual({ failed: 1, errors: 0 });
    const reply = await replyTo(seeded.transRecId);
    expect(reply?.body).toMatchObject({ StatusCode: 'Failure' });
    expect(String(reply?.body.Message)).toMatch(/"\{firstName\}" would be "--shell=\/tmp\/evil".*option/);
    expect(rec.calls()).toEqual([]);
    expect(await books()).toEqual({ projects: [], people: [], rpc: [] });
  });

  run(
    "[12.14] sacctmgr and createUser get a small environment: commandEnv names arrive, amie's secrets do not",
    async () => {
      const { rec, dispatch: run } = recordingSlurm({ commandEnv: ['SITE_LDAP_URI'] });
      const login = `zq${Date.now().toString(36)}`;
      await seedIncoming(
        t.db,
        'request_project_create',
        projectRpc('TG-ENV', 'p-env', JANE, { PiRequestedLoginList: [login] }),
      );
      const restore = withSecrets({ SITE_LDAP_URI: 'ldap://ldap.example.org' });
      let summary;
      try {
        summary = await run();
      } finally {
        restore();
      }
      expect(summary.answered, JSON.stringify(summary.results.map((r) => r.reason))).toBe(1);
      const calls = rec.calls();
      expect(calls.some((c) => c.argv[0] === 'make-user' && c.argv.includes(login))).toBe(true);
      expect(calls.some((c) => c.argv.includes('add') && c.argv.includes('account'))).toBe(true);
      for (const call of calls) {
        expect(call.env.SITE_LDAP_URI).toBe('ldap://ldap.example.org');
        expect(
          Object.keys(call.env).every((k) => ['PATH', 'HOME', 'LANG', 'TZ', 'SLURM_CONF', 'SITE_LDAP_URI'].includes(k)),
          Object.keys(call.env).join(' '),
        ).toBe(true);
        const dump = JSON.stringify(call.env);
        for (const secret of Object.values(SECRETS)) expect(dump).not.toContain(secret);
      }
    },
  );

  run(
    '[12.18] a reply the dispatcher refuses leaves nothing in the books; the other packets of the batch are written',
    async () => {
      handler.spoil.add('TG-BAD');
      const bad = await seedIncoming(t.db, 'request_project_create', projectRpc('TG-BAD', 'p-bad', MARY));
      const good = await seedIncoming(t.db, 'request_project_create', projectRpc('TG-GOOD', 'p-good', JANE));
      const summary = await dispatch();
      expect({ answered: summary.answered, errors: summary.errors }).toEqual({ answered: 1, errors: 1 });
      expect((await auditOf(t.db, bad.packetRecId)).at(-1)?.reason).toMatch(
        /handler returned an incomplete notify_project_create.*PiRemoteSiteLogin/,
      );
      expect((await replyTo(good.transRecId))?.type_name).toBe('notify_project_create');
      expect(await books()).toEqual({
        projects: ['p-good p-good pi=jdoe su=1000'],
        people: ['jdoe jdoe Jane Doe'],
        rpc: ['rec-TG-GOOD'],
      });

      // Once the site's code is fixed, the packet is done afresh: its hooks run and its books are written.
      handler.spoil.clear();
      handler.calls = [];
      const retry = await dispatch();
      expect(retry.answered).toBe(1);
      expect(handler.calls).toContain('createProject p-bad p-bad mmajor');
      expect((await replyTo(bad.transRecId))?.body).toMatchObject({ ProjectID: 'p-bad', PiRemoteSiteLogin: 'mmajor' });
      expect((await books()).projects).toEqual(['p-bad p-bad pi=mmajor su=1000', 'p-good p-good pi=jdoe su=1000']);
    },
  );

  run('[12.18] a refused reply alone in its batch writes nothing either', async () => {
    handler.spoil.add('TG-BAD');
    await seedIncoming(t.db, 'request_project_create', projectRpc('TG-BAD', 'p-bad', MARY));
    expect((await dispatch()).errors).toBe(1);
    expect(await books()).toEqual({ projects: [], people: [], rpc: [] });
  });
});
