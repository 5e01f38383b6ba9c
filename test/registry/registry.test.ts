import { describe, it, expect, beforeEach } from 'vitest';
import { Dispatcher, type PacketContext } from '../../src/dispatch/index.js';
import type { PacketTypeName, TagValue } from '../../src/protocol/index.js';
import type {
  AllocationChange,
  RegistryAccount,
  RegistryLogin,
  RegistryPerson,
  RegistryProject,
} from '../../src/registry/index.js';
import { listAccounts, listPeople, listProjects, allocationHistory } from '../../src/registry/index.js';
import { RegistryHandler, type RegistryOptionsInput } from '../../handlers/registry.js';
import { loadHandlerClass } from '../../src/dispatch/index.js';
import '../../handlers/index.js';
import { driverCases, databaseEachTest } from '../helpers/db.js';
import { SITE, outgoingPackets, quietLog, rpcTags, seedIncoming } from '../helpers/amie.js';

/** A site's subclass as the tests see it: every hook call is written down. */
class RecordingRegistry extends RegistryHandler {
  calls: Array<[string, ...unknown[]]> = [];
  override async createLogin(person: RegistryPerson, login: RegistryLogin, _ctx: PacketContext) {
    this.calls.push(['createLogin', login.login, person.personId, login.uid]);
  }
  override async createProject(project: RegistryProject, pi: RegistryPerson) {
    this.calls.push(['createProject', project.projectId, pi.login]);
  }
  override async addAccount(account: RegistryAccount) {
    this.calls.push(['addAccount', account.login, account.projectId, account.resource]);
  }
  override async setAccountActive(account: RegistryAccount, active: boolean) {
    this.calls.push(['setAccountActive', account.login, account.projectId, active]);
  }
  override async setProjectActive(project: RegistryProject, active: boolean) {
    this.calls.push(['setProjectActive', project.projectId, active]);
  }
  override async setAllocation(project: RegistryProject, change: AllocationChange) {
    this.calls.push(['setAllocation', project.projectId, change.allocationType, change.after.serviceUnits]);
  }
  override async updateDns(person: RegistryPerson, change: { added: string[]; removed: string[] }) {
    this.calls.push(['updateDns', person.personId, change.added, change.removed]);
  }
  override async updatePerson(person: RegistryPerson) {
    this.calls.push(['updatePerson', person.personId]);
  }
  override async mergePeople(kept: RegistryPerson, deleted: RegistryPerson, accounts: RegistryAccount[]) {
    this.calls.push(['mergePeople', kept.personId, deleted.personId, accounts.map((a) => a.projectId)]);
  }
}

const DN_JANE = '/C=US/O=Example University/CN=Jane Doe';

/** Jane Doe's RPC as these tests send it: with her email, GlobalID and DN, and a title. */
function janeRpc(extra: Record<string, TagValue> = {}): Record<string, TagValue> {
  return rpcTags({
    PiEmail: 'jane@example.edu',
    PiGlobalID: '70001',
    PiDnList: [DN_JANE],
    ProjectTitle: 'Turbulence at small scales',
    ...extra,
  });
}

function racTags(first: string, last: string, extra: Record<string, TagValue> = {}): Record<string, TagValue> {
  return {
    GrantNumber: 'TG-ABC123',
    ResourceList: [SITE.resource],
    UserFirstName: first,
    UserLastName: last,
    UserOrganization: 'Example University',
    UserOrgCode: '0012345',
    ...extra,
  };
}

describe.each(driverCases())('registry handler on $name', (driver) => {
  const t = databaseEachTest(driver);
  let handler: RecordingRegistry;
  beforeEach(async () => {
    if (!driver.available) return;
    handler = newHandler();
  });
  const run = it.skipIf(!driver.available);

  function newHandler(options: RegistryOptionsInput = {}) {
    return new RecordingRegistry({ db: t.db, log: quietLog, site: SITE, options, dryRun: false });
  }

  /** Seeds one incoming packet, runs the dispatcher, returns the reply it wrote. */
  async function send(
    type: PacketTypeName,
    tags: Record<string, TagValue>,
    opts: { transRecId?: number; packetId?: number } = {},
  ) {
    const seeded = await seedIncoming(t.db, type, tags, opts);
    const summary = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(summary.errors, JSON.stringify(summary.results.map((r) => r.reason))).toBe(0);
    const out = await outgoingPackets(t.db);
    const reply = out.filter((p) => p.trans_rec_id === seeded.transRecId).at(-1)!;
    return { ...seeded, summary, reply, type: reply?.type_name, body: reply?.body ?? {} };
  }

  async function accountsOf(projectId: string) {
    return (await listAccounts(t.db, { projectId })).map((a) => ({ login: a.login, active: a.active }));
  }

  async function newProject() {
    const r = await send('request_project_create', janeRpc());
    expect(r.type).toBe('notify_project_create');
    return r;
  }

  run('RPC new: project, PI, login, uid and PI account are recorded; NPC carries the site ids', async () => {
    const r = await newProject();
    expect(r.body).toMatchObject({
      ProjectID: 'TG-ABC123',
      PiPersonID: 'jdoe',
      PiRemoteSiteLogin: 'jdoe',
      PiUID: '100000',
      ProjectTitle: 'Turbulence at small scales',
      GrantNumber: 'TG-ABC123',
      ServiceUnitsAllocated: '50000',
    });
    const [person] = await listPeople(t.db);
    expect(person).toMatchObject({
      personId: 'jdoe',
      login: 'jdoe',
      uid: 100000,
      globalId: '70001',
      email: 'jane@example.edu',
      dns: [DN_JANE],
    });
    const [project] = await listProjects(t.db);
    expect(project).toMatchObject({
      projectId: 'TG-ABC123',
      grantNumber: 'TG-ABC123',
      piPersonId: 'jdoe',
      active: true,
      serviceUnits: 50000,
      startDate: '2026-07-01',
      endDate: '2027-06-30',
      resource: SITE.resource,
    });
    expect(await accountsOf('TG-ABC123')).toEqual([{ login: 'jdoe', active: true }]);
    expect(handler.calls).toEqual([
      ['createLogin', 'jdoe', 'jdoe', 100000],
      ['createProject', 'TG-ABC123', 'jdoe'],
      ['setAllocation', 'TG-ABC123', 'new', 50000],
      ['addAccount', 'jdoe', 'TG-ABC123', SITE.resource],
      ['updateDns', 'jdoe', [DN_JANE], []],
    ]);
  });

  run('RPC without ProjectTitle answers with a title; ProjectID from the RPC is used when given', async () => {
    const r = await send('request_project_create', janeRpc({ ProjectID: 'p-777', ProjectTitle: '' }));
    expect(r.body).toMatchObject({ ProjectID: 'p-777', ProjectTitle: 'TG-ABC123' });
  });

  run('a repeated RecordID gets the first answer again and changes nothing', async () => {
    const first = await newProject();
    const before = {
      people: await listPeople(t.db),
      projects: await listProjects(t.db),
      history: await allocationHistory(t.db, 'TG-ABC123'),
    };
    handler.calls = [];
    const again = await send(
      'request_project_create',
      janeRpc({ ServiceUnitsAllocated: '999', AllocationType: 'supplement', PiFirstName: 'Other' }),
    );
    expect(again.body).toEqual(first.body);
    expect(handler.calls).toEqual([]);
    expect({
      people: await listPeople(t.db),
      projects: await listProjects(t.db),
      history: await allocationHistory(t.db, 'TG-ABC123'),
    }).toEqual(before);
  });

  run('supplement on an existing project adds SUs and keeps the history', async () => {
    await newProject();
    handler.calls = [];
    const r = await send(
      'request_project_create',
      janeRpc({
        AllocationType: 'supplement',
        RecordID: 'rec-2',
        ServiceUnitsAllocated: '10000',
        EndDate: '2027-12-31',
      }),
    );
    expect(r.body).toMatchObject({ ProjectID: 'TG-ABC123', PiPersonID: 'jdoe' });
    const [project] = await listProjects(t.db);
    expect(project).toMatchObject({ serviceUnits: 60000, startDate: '2026-07-01', endDate: '2027-12-31' });
    expect(
      (await allocationHistory(t.db, 'TG-ABC123')).map((h) => [h.allocationType, h.serviceUnits, h.recordId]),
    ).toEqual([
      ['new', 50000, 'rec-1'],
      ['supplement', 10000, 'rec-2'],
    ]);
    expect(await listPeople(t.db)).toHaveLength(1);
    expect(handler.calls).toEqual([['setAllocation', 'TG-ABC123', 'supplement', 60000]]);
  });

  run('renewal, adjustment and extension change the allocation as documented', async () => {
    await newProject();
    await send(
      'request_project_create',
      janeRpc({
        AllocationType: 'renewal',
        RecordID: 'r2',
        ServiceUnitsAllocated: '70000',
        StartDate: '2027-07-01',
        EndDate: '2028-06-30',
      }),
    );
    expect((await listProjects(t.db))[0]).toMatchObject({
      serviceUnits: 70000,
      startDate: '2027-07-01',
      endDate: '2028-06-30',
    });
    await send(
      'request_project_create',
      janeRpc({ AllocationType: 'adjustment', RecordID: 'r3', ServiceUnitsAllocated: '-5000' }),
    );
    expect((await listProjects(t.db))[0]).toMatchObject({ serviceUnits: 65000 });
    await send(
      'request_project_create',
      janeRpc({ AllocationType: 'extension', RecordID: 'r4', ServiceUnitsAllocated: '0', EndDate: '2028-12-31' }),
    );
    expect((await listProjects(t.db))[0]).toMatchObject({ serviceUnits: 65000, endDate: '2028-12-31' });
  });

  run('a supplement for an unknown project fails naming the grant', async () => {
    const r = await send('request_project_create', janeRpc({ AllocationType: 'supplement', GrantNumber: 'TG-NOPE' }));
    expect(r.type).toBe('inform_transaction_complete');
    expect(r.body).toMatchObject({ StatusCode: 'Failure' });
    expect(String(r.body.Message)).toContain('TG-NOPE');
    expect(await listProjects(t.db)).toEqual([]);
  });

  run('a known PI (PiPersonID) on a new grant keeps the same person and login', async () => {
    await newProject();
    handler.calls = [];
    const r = await send(
      'request_project_create',
      janeRpc({ GrantNumber: 'TG-XYZ999', RecordID: 'rec-9', PiPersonID: 'jdoe', PiGlobalID: '' }),
    );
    expect(r.body).toMatchObject({ ProjectID: 'TG-XYZ999', PiPersonID: 'jdoe', PiRemoteSiteLogin: 'jdoe' });
    expect(await listPeople(t.db)).toHaveLength(1);
    expect(handler.calls.map((c) => c[0])).not.toContain('createLogin');
    expect(await accountsOf('TG-XYZ999')).toEqual([{ login: 'jdoe', active: true }]);
  });

  run('a known person is found by GlobalID and by SitePersonId', async () => {
    await newProject();
    const byGlobal = await send('request_account_create', racTags('Jane', 'Doe', { UserGlobalID: '70001' }));
    expect(byGlobal.body).toMatchObject({ UserPersonID: 'jdoe', UserRemoteSiteLogin: 'jdoe' });
    const site = [{ PersonID: 'portal-42', Site: 'X-PORTAL' }];
    const first = await send('request_account_create', racTags('Max', 'Muster', { SitePersonId: site }));
    const second = await send('request_account_create', racTags('Maximilian', 'Muster', { SitePersonId: site }));
    expect(second.body.UserPersonID).toBe(first.body.UserPersonID);
    expect(await listPeople(t.db)).toHaveLength(2);
  });

  run('RAC: new user gets a login and an account; NAC carries ProjectID resolved from the GrantNumber', async () => {
    await newProject();
    handler.calls = [];
    const r = await send(
      'request_account_create',
      racTags('Ann', 'Lee', { UserRequestedLoginList: ['annlee'], UserDnList: ['/CN=Ann Lee'] }),
    );
    expect(r.type).toBe('notify_account_create');
    expect(r.body).toMatchObject({
      ProjectID: 'TG-ABC123',
      UserPersonID: 'annlee',
      UserRemoteSiteLogin: 'annlee',
      UserUID: '100001',
      UserFirstName: 'Ann',
    });
    expect(Date.parse(String(r.body.AccountActivityTime))).not.toBeNaN();
    expect(await accountsOf('TG-ABC123')).toEqual([
      { login: 'annlee', active: true },
      { login: 'jdoe', active: true },
    ]);
    expect(handler.calls).toEqual([
      ['createLogin', 'annlee', 'annlee', 100001],
      ['addAccount', 'annlee', 'TG-ABC123', SITE.resource],
      ['updateDns', 'annlee', ['/CN=Ann Lee'], []],
    ]);
  });

  run('RAC for an unknown project fails naming GrantNumber and ProjectID', async () => {
    const r = await send(
      'request_account_create',
      racTags('Ann', 'Lee', { GrantNumber: 'TG-NONE', ProjectID: 'p-none' }),
    );
    expect(r.body).toMatchObject({ StatusCode: 'Failure' });
    expect(String(r.body.Message)).toMatch(/p-none.*TG-NONE/);
  });

  run('RAC after request_account_inactivate reactivates the account', async () => {
    await newProject();
    const rac = await send('request_account_create', racTags('Ann', 'Lee'));
    const login = String(rac.body.UserRemoteSiteLogin);
    const inact = await send('request_account_inactivate', {
      PersonID: login,
      ProjectID: 'TG-ABC123',
      ResourceList: [SITE.resource],
    });
    expect(inact.type).toBe('notify_account_inactivate');
    expect(inact.body).toMatchObject({ PersonID: login, ProjectID: 'TG-ABC123' });
    expect((await accountsOf('TG-ABC123')).find((a) => a.login === login)).toEqual({ login, active: false });
    handler.calls = [];
    const again = await send('request_account_create', racTags('Ann', 'Lee', { UserPersonID: login }));
    expect(again.body).toMatchObject({ UserPersonID: login, UserRemoteSiteLogin: login });
    expect((await accountsOf('TG-ABC123')).find((a) => a.login === login)).toEqual({ login, active: true });
    expect(handler.calls).toEqual([['setAccountActive', login, 'TG-ABC123', true]]);
    expect(await listPeople(t.db)).toHaveLength(2);
  });

  run('request_account_reactivate and unknown ids', async () => {
    await newProject();
    await send('request_account_inactivate', {
      PersonID: 'jdoe',
      ProjectID: 'TG-ABC123',
      ResourceList: [SITE.resource],
    });
    const re = await send('request_account_reactivate', {
      PersonID: 'jdoe',
      ProjectID: 'TG-ABC123',
      ResourceList: [SITE.resource],
    });
    expect(re.type).toBe('notify_account_reactivate');
    expect(await accountsOf('TG-ABC123')).toEqual([{ login: 'jdoe', active: true }]);
    const bad = await send('request_account_inactivate', {
      PersonID: 'ghost',
      ProjectID: 'TG-ABC123',
      ResourceList: [SITE.resource],
    });
    expect(bad.body).toMatchObject({ StatusCode: 'Failure', Message: expect.stringContaining('ghost') });
  });

  run(
    'project inactivate takes every account; reactivate brings back the project and the PI account only',
    async () => {
      await newProject();
      await send('request_account_create', racTags('Ann', 'Lee'));
      await send('request_account_create', racTags('Bob', 'Ray'));
      handler.calls = [];
      const inact = await send('request_project_inactivate', { ProjectID: 'TG-ABC123', ResourceList: [SITE.resource] });
      expect(inact.type).toBe('notify_project_inactivate');
      expect((await listProjects(t.db))[0]!.active).toBe(false);
      expect((await accountsOf('TG-ABC123')).every((a) => !a.active)).toBe(true);
      expect(handler.calls.filter((c) => c[0] === 'setAccountActive')).toHaveLength(3);
      expect(handler.calls).toContainEqual(['setProjectActive', 'TG-ABC123', false]);
      handler.calls = [];
      const re = await send('request_project_reactivate', { ProjectID: 'TG-ABC123', ResourceList: [SITE.resource] });
      expect(re.type).toBe('notify_project_reactivate');
      expect((await listProjects(t.db))[0]!.active).toBe(true);
      expect(await accountsOf('TG-ABC123')).toEqual([
        { login: 'alee', active: false },
        { login: 'bray', active: false },
        { login: 'jdoe', active: true },
      ]);
      expect(handler.calls).toEqual([
        ['setProjectActive', 'TG-ABC123', true],
        ['setAccountActive', 'jdoe', 'TG-ABC123', true],
      ]);
      const unknown = await send('request_project_inactivate', { ProjectID: 'TG-GONE', ResourceList: [SITE.resource] });
      expect(unknown.body).toMatchObject({ StatusCode: 'Failure', Message: expect.stringContaining('TG-GONE') });
    },
  );

  run('request_user_modify add, replace and delete of DNs and details', async () => {
    await newProject();
    handler.calls = [];
    const add = await send('request_user_modify', {
      ActionType: 'add',
      PersonID: 'jdoe',
      DnList: ['/CN=Jane Doe 2'],
      Email: 'jane@new.example.edu',
      City: 'Pittsburgh',
    });
    expect(add.body).toMatchObject({ StatusCode: 'Success' });
    let [jane] = await listPeople(t.db);
    expect(jane).toMatchObject({
      email: 'jane@new.example.edu',
      details: { City: 'Pittsburgh' },
      dns: [DN_JANE, '/CN=Jane Doe 2'],
    });
    await send('request_user_modify', {
      ActionType: 'replace',
      PersonID: 'jdoe',
      DnList: ['/CN=Jane Doe 3'],
      LastName: 'Doe-Smith',
    });
    [jane] = await listPeople(t.db);
    // replace keeps the DNs it does not list.
    expect(jane).toMatchObject({
      lastName: 'Doe-Smith',
      login: 'jdoe',
      dns: [DN_JANE, '/CN=Jane Doe 2', '/CN=Jane Doe 3'],
    });
    await send('request_user_modify', { ActionType: 'delete', PersonID: 'jdoe', DnList: [DN_JANE, '/CN=Jane Doe 2'] });
    [jane] = await listPeople(t.db);
    expect(jane!.dns).toEqual(['/CN=Jane Doe 3']);
    expect(jane!.lastName).toBe('Doe-Smith');
    expect(handler.calls).toEqual([
      ['updatePerson', 'jdoe'],
      ['updateDns', 'jdoe', ['/CN=Jane Doe 2'], []],
      ['updatePerson', 'jdoe'],
      ['updateDns', 'jdoe', ['/CN=Jane Doe 3'], []],
      ['updateDns', 'jdoe', [], expect.arrayContaining([DN_JANE, '/CN=Jane Doe 2'])],
    ]);
    const unknown = await send('request_user_modify', {
      ActionType: 'add',
      PersonID: 'nobody-here',
      DnList: ['/CN=x'],
    });
    expect(unknown.body).toMatchObject({ StatusCode: 'Failure', Message: expect.stringContaining('nobody-here') });
  });

  run('request_person_merge moves accounts, remembers the alias, and later packets reach the kept person', async () => {
    await newProject();
    await send(
      'request_project_create',
      janeRpc({
        GrantNumber: 'TG-XYZ999',
        RecordID: 'rec-x',
        PiFirstName: 'J.',
        PiLastName: 'Doe',
        PiGlobalID: '70002',
        PiDnList: ['/CN=J Doe'],
      }),
    );
    // The second project's PI is a second record of the same human.
    const people = await listPeople(t.db);
    expect(people.map((p) => p.login).sort()).toEqual(['jdoe', 'jdoe1']);
    handler.calls = [];
    const merge = await send('request_person_merge', {
      KeepPersonID: 'jdoe',
      KeepGlobalID: '70001',
      DeletePersonID: 'jdoe1',
      DeleteGlobalID: '70002',
    });
    expect(merge.body).toMatchObject({ StatusCode: 'Success' });
    expect(handler.calls).toEqual([['mergePeople', 'jdoe', 'jdoe1', ['TG-XYZ999']]]);
    expect(await accountsOf('TG-XYZ999')).toEqual([{ login: 'jdoe', active: true }]);
    expect((await listProjects(t.db)).find((p) => p.projectId === 'TG-XYZ999')!.piPersonId).toBe('jdoe');
    const [kept, ...others] = await listPeople(t.db);
    expect(others).toEqual([]);
    expect(kept).toMatchObject({ personId: 'jdoe', aliases: ['jdoe1'], dns: [DN_JANE, '/CN=J Doe'] });
    // A packet naming the deleted id reaches the kept person.
    await send('request_account_inactivate', {
      PersonID: 'jdoe1',
      ProjectID: 'TG-XYZ999',
      ResourceList: [SITE.resource],
    });
    expect(await accountsOf('TG-XYZ999')).toEqual([{ login: 'jdoe', active: false }]);
    const rac = await send(
      'request_account_create',
      racTags('Jane', 'Doe', { GrantNumber: 'TG-ABC123', UserPersonID: 'jdoe1' }),
    );
    expect(rac.body).toMatchObject({ UserPersonID: 'jdoe', UserRemoteSiteLogin: 'jdoe' });
    // The merged-away login is never handed out again.
    const other = await send('request_account_create', racTags('Jules', 'Doe', { UserRequestedLoginList: ['jdoe1'] }));
    expect(other.body.UserRemoteSiteLogin).toBe('jdoe2');
    // A repeated merge changes nothing and still succeeds.
    const again = await send('request_person_merge', {
      KeepPersonID: 'jdoe',
      KeepGlobalID: '70001',
      DeletePersonID: 'jdoe1',
      DeleteGlobalID: '70002',
    });
    expect(again.body).toMatchObject({ StatusCode: 'Success', Message: expect.stringContaining('already merged') });
  });

  run('DPC and DAC DNs are recorded for the person', async () => {
    const rpc = await newProject();
    handler.calls = [];
    await send(
      'data_project_create',
      { PersonID: 'jdoe', ProjectID: 'TG-ABC123', DnList: [DN_JANE, '/CN=Jane from DPC'] },
      { transRecId: rpc.transRecId, packetId: 3 },
    );
    const rac = await send('request_account_create', racTags('Ann', 'Lee'));
    await send(
      'data_account_create',
      { PersonID: String(rac.body.UserPersonID), ProjectID: 'TG-ABC123', DnList: ['/CN=Ann from DAC'] },
      { transRecId: rac.transRecId, packetId: 3 },
    );
    const people = await listPeople(t.db);
    expect(people.find((p) => p.login === 'jdoe')!.dns).toEqual([DN_JANE, '/CN=Jane from DPC']);
    expect(people.find((p) => p.login === 'alee')!.dns).toEqual(['/CN=Ann from DAC']);
    expect(handler.calls).toContainEqual(['updateDns', 'jdoe', ['/CN=Jane from DPC'], []]);
    const outs = (await outgoingPackets(t.db)).filter((p) => p.trans_rec_id === rpc.transRecId).map((p) => p.type_name);
    expect(outs).toEqual(['notify_project_create', 'inform_transaction_complete']);
  });

  run('login rules: conflicts, reserved names, hostile names, configured reservations', async () => {
    await newProject();
    // Same name as the PI: the derived login is taken, so a numbered one.
    const twin = await send('request_account_create', racTags('John', 'Doe'));
    expect(twin.body.UserRemoteSiteLogin).toBe('jdoe1');
    // Requested system names and malformed logins are refused; the first acceptable free one wins.
    const picky = await send(
      'request_account_create',
      racTags('Rita', 'Oot', { UserRequestedLoginList: ['root', 'Bad Login', 'jdoe', 'rita'] }),
    );
    expect(picky.body.UserRemoteSiteLogin).toBe('rita');
    // A name that derives to a system name.
    const sysname = await send('request_account_create', racTags('R', 'Oot'));
    expect(sysname.body.UserRemoteSiteLogin).toBe('root1');
    const hostile = [
      racTags('$(rm -rf /)', "'; DROP TABLE people; --"),
      racTags('José', 'Núñez root'),
      racTags('"', '`id`'),
      racTags('李', '小龙'),
      racTags('A'.repeat(300), 'B'.repeat(300)),
    ];
    const logins: string[] = [];
    for (const tags of hostile) {
      const r = await send('request_account_create', tags);
      expect(r.type).toBe('notify_account_create');
      logins.push(String(r.body.UserRemoteSiteLogin));
    }
    expect(logins[1]).toBe('jnunezroot');
    // A line break in a name is refused before the handler sees it (it would reach passwd and scripts).
    const broken = await send('request_account_create', racTags('José', 'Núñez\nroot'));
    expect(broken.type).toBe('inform_transaction_complete');
    expect(String(broken.body.Message)).toMatch(/UserLastName: .*control character U\+000A/);
    expect(logins[3]).toBe('user1');
    for (const login of logins) expect(login).toMatch(/^[a-z_][a-z0-9_-]{0,31}$/);
    expect(new Set(logins).size).toBe(logins.length);
    // A site's own reserved logins.
    handler = newHandler({ reservedLogins: ['mlee'] });
    const reserved = await send('request_account_create', racTags('Mary', 'Lee', { UserRequestedLoginList: ['mlee'] }));
    expect(reserved.body.UserRemoteSiteLogin).toBe('mlee1');
  });

  run('the uid range is honoured and its exhaustion defers the packet with a message naming the option', async () => {
    handler = newHandler({ uidRange: { start: 5000, end: 5001 } });
    await newProject();
    expect((await listPeople(t.db))[0]!.uid).toBe(5000);
    await send('request_account_create', racTags('Ann', 'Lee'));
    const seeded = await seedIncoming(t.db, 'request_account_create', racTags('Bob', 'Ray'));
    const summary = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(summary.errors).toBe(1);
    expect(summary.results[0]!.reason).toContain('handler.options.uidRange');
    expect(summary.results[0]!.packetRecId).toBe(seeded.packetRecId);
    expect(await listPeople(t.db)).toHaveLength(2);
  });

  run('a throwing hook rolls the books back', async () => {
    class Broken extends RegistryHandler {
      override async addAccount() {
        throw new Error('sacctmgr: cannot reach slurmdbd');
      }
    }
    handler = new Broken({
      db: t.db,
      log: quietLog,
      site: SITE,
      options: {},
      dryRun: false,
    }) as unknown as RecordingRegistry;
    await seedIncoming(t.db, 'request_project_create', janeRpc());
    const summary = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(summary.errors).toBe(1);
    expect(await listPeople(t.db)).toEqual([]);
    expect(await listProjects(t.db)).toEqual([]);
  });

  run('dry run: hooks are called with ctx.dryRun set and the books stay empty', async () => {
    const seen: boolean[] = [];
    class Dry extends RegistryHandler {
      override async createLogin(_p: RegistryPerson, _l: RegistryLogin, ctx: PacketContext) {
        seen.push(ctx.dryRun);
      }
    }
    await seedIncoming(t.db, 'request_project_create', janeRpc());
    const dry = new Dry({ db: t.db, log: quietLog, site: SITE, options: {}, dryRun: true });
    const summary = await new Dispatcher(t.db, dry, quietLog, { dryRun: true }).runOnce();
    expect(summary.answered).toBe(1);
    expect(seen).toEqual([true]);
    expect(await listPeople(t.db)).toEqual([]);
  });

  run('an RPC and a RAC each take a handful of database round trips', async () => {
    await newProject();
    const seeded = await seedIncoming(t.db, 'request_account_create', racTags('Ann', 'Lee'));
    void seeded;
    const before = t.db.roundTrips;
    await new Dispatcher(t.db, handler, quietLog).runOnce();
    const withDispatcher = t.db.roundTrips - before;
    // The dispatcher's own work (claim, savepoint, reply, audit) plus the registry's two statements.
    expect(withDispatcher).toBeLessThan(15);
  });

  run('the built-in name "registry" loads the handler with validated options', async () => {
    const loaded = await loadHandlerClass(
      { module: 'registry', options: { uidRange: { start: 20000, end: 30000 } } },
      '.',
    );
    expect(loaded.cls).toBe(RegistryHandler);
    expect(loaded.options).toMatchObject({
      uidRange: { start: 20000, end: 30000 },
      reservedLogins: [],
      loginFromName: 'first-initial-last',
    });
    await expect(
      loadHandlerClass({ module: 'registry', options: { uidRange: { start: 10, end: 5 } } }, '.'),
    ).rejects.toThrow(/uidRange/);
    await expect(loadHandlerClass({ module: 'registry', options: { reservedLogin: ['x'] } }, '.')).rejects.toThrow(
      /reservedLogin/,
    );
  });
});
