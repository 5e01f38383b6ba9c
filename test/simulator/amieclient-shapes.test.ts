/**
 * What XSEDE's Python amieclient shows of the real ACCESS services, held against the simulator,
 * the REST source and the Usage API client: the shapes of answers, what a reply may leave to the
 * server, central's ITC answered over REST, failed usage records with ids that can be cleared.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/index.js';
import { AmieHandler, Dispatcher, type HandlerContext } from '../../src/dispatch/index.js';
import { specOf, unexpectedTags, validateBody, PacketBody, type PacketTypeName } from '../../src/protocol/index.js';
import { CentralSite, SimData } from '../../src/simulator/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { restSourceFor } from '../../src/simulator/rest-site.js';
import { TablesSource } from '../../src/sources/index.js';
import { AmieRestClient } from '../../src/sources/rest-client.js';
import { packetListOf, parseRestPacket, toRestPacketJson } from '../../src/sources/rest-json.js';
import { listTransactionPackets } from '../../src/store/index.js';
import { UsageAnswerError, readFailedRecords, readUsageStatus } from '../../src/usage/api-answers.js';
import { UsageApiClient, UsageApiError } from '../../src/usage/api-client.js';
import { RAC_PACKET, RPC_PACKET, TRANSACTION_RESULT } from '../fixtures/rest-packets.js';
import { SITE, quietLog } from '../helpers/amie.js';
import { freshPgliteDatabase } from '../helpers/db.js';
import { startRestSimulator } from '../helpers/simulator.js';
import { amieInProcess } from '../helpers/cli.js';

const KEY = 'amieclient-shapes-key-not-secret';
const context = (db: Database): HandlerContext<any> => ({ db, log: quietLog, site: SITE, options: {}, dryRun: false });

/** Things a test opened, stopped after it in reverse order. */
const opened: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of opened.splice(0).reverse()) await stop();
});

async function simulator(): Promise<{
  sim: RestSimulator;
  central: CentralSite;
  api: (method: string, path: string, body?: unknown, base?: string) => Promise<{ status: number; json: any }>;
}> {
  const sim = await startRestSimulator({ site: SITE, apiKey: KEY });
  opened.push(() => sim.stop());
  const central = new CentralSite(sim.db, {
    siteName: SITE.name,
    resource: SITE.resource,
    remoteSiteName: SITE.remoteSite,
  });
  const api = async (method: string, path: string, body?: unknown, base = sim.amieUrl) => {
    const res = await fetch(new URL(path, base), {
      method,
      headers: {
        'XA-SITE': SITE.name,
        'XA-API-KEY': KEY,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  return { sim, central, api };
}

async function siteDatabase(): Promise<Database> {
  const site = await freshPgliteDatabase({ init: true });
  opened.push(() => site.cleanup());
  return site.db;
}

const CENTRAL_ITC = {
  StatusCode: 'Success',
  DetailCode: '1',
  Message: 'notify_project_inactivate recorded by central',
};

describe("[13.1] central's ITC", () => {
  it("[13.1] the REST source answers central's ITC with a success ITC, and the transaction completes", async () => {
    const { sim, central, api } = await simulator();
    const c = await central.send('inform_transaction_complete', CENTRAL_ITC);
    const dispatcher = new Dispatcher(
      restSourceFor(sim, KEY, await siteDatabase(), quietLog),
      new AmieHandler(context(sim.db)),
      quietLog,
    );
    const first = await dispatcher.runOnce();
    expect(first.closed).toBe(1);
    expect(first.results[0]).toMatchObject({
      type: 'inform_transaction_complete',
      outcome: 'closed',
      replyType: 'inform_transaction_complete',
    });

    const { DATA } = (await api('GET', `transactions/${SITE.name}/${c.transRecId}/packets`)).json.result;
    expect(DATA.map((p: any) => [p.type, p.header.outgoing_flag, p.header.packet_state])).toEqual([
      ['inform_transaction_complete', false, 'completed'],
      ['inform_transaction_complete', true, 'in-progress'],
    ]);
    expect(DATA[1].header.in_reply_to).toBe(DATA[0].header.packet_rec_id);
    expect(DATA[1].body).toEqual({ StatusCode: 'Success', DetailCode: '1', Message: 'OK' });
    await central.transfer();
    expect(c.state).toBe('completed');
    expect(c.failedChecks).toEqual([]);
    // Answered once: a second run finds nothing and sends nothing.
    const posts = sim.requests.filter((r) => r.method === 'POST').length;
    expect((await dispatcher.runOnce()).taken).toBe(0);
    expect(sim.requests.filter((r) => r.method === 'POST').length).toBe(posts);
  });

  it("[13.1] over the AMIE tables central's ITC is only taken: no packet goes back", async () => {
    const db = await siteDatabase();
    const central = new CentralSite(db, {
      siteName: SITE.name,
      resource: SITE.resource,
      remoteSiteName: SITE.remoteSite,
    });
    const c = await central.send('inform_transaction_complete', CENTRAL_ITC);
    const summary = await new Dispatcher(new TablesSource(db), new AmieHandler(context(db)), quietLog).runOnce();
    expect(summary.closed).toBe(1);
    const packets = await listTransactionPackets(db, c.transRecId);
    expect(packets.map((p) => [p.type, p.outgoing, p.state])).toEqual([
      ['inform_transaction_complete', false, 'completed'],
    ]);
    await central.transfer();
    expect(c.state).toBe('completed');
  });
});

describe('[13.2] transaction answers', () => {
  it('[13.2] GET transactions/{site}/{id}/packets answers the transaction with its packets under DATA', async () => {
    const { sim, central, api } = await simulator();
    const data = new SimData(SITE.resource);
    const c = await central.send('request_project_create', data.rpc(data.person()));
    const r = await api('GET', `transactions/${SITE.name}/${c.transRecId}/packets`);
    expect(r.status).toBe(200);
    // What amieclient's Transaction.from_dict reads, with the fixture's keys.
    expect(Object.keys(r.json.result).sort()).toEqual(Object.keys({ ...TRANSACTION_RESULT, trans_rec_id: 0 }).sort());
    expect(r.json.result).toMatchObject({
      DATA_TYPE: 'transaction',
      trans_rec_id: c.transRecId,
      transaction_id: c.transactionId,
      state: 'in-progress',
      originating_site_name: SITE.remoteSite,
      local_site_name: SITE.name,
      remote_site_name: SITE.remoteSite,
    });
    expect(r.json.result.DATA.map((p: any) => p.type)).toEqual(['request_project_create']);
    // The REST source's client reads it, and the fixture's envelope the same way.
    const client = new AmieRestClient({ url: sim.amieUrl, site: SITE.name, apiKey: KEY });
    const { packets, malformed } = await client.transactionPackets(c.transRecId);
    expect(malformed).toEqual([]);
    expect(packets.map((p) => [p.transRecId, p.type])).toEqual([[c.transRecId, 'request_project_create']]);
    expect(
      packetListOf({ message: '', result: TRANSACTION_RESULT }, 'GET transactions').map(
        (p) => parseRestPacket(p).packetRecId,
      ),
    ).toEqual([RAC_PACKET.header.packet_rec_id]);
  });
});

describe('[13.3] listing with no filters', () => {
  it("[13.3] GET packets/{site} with no filters gives the site's pending incoming packets only", async () => {
    const { central, api } = await simulator();
    const data = new SimData(SITE.resource);
    const answered = await central.send('request_project_create', data.rpc(data.person()));
    const pending = await central.send('request_project_create', data.rpc(data.person()));
    const failed = await central.send('request_project_create', data.rpc(data.person()));
    const all = (await api('GET', `packets/${SITE.name}?incoming=true`)).json.result;
    const rpcOf = (c: { transRecId: number }) => all.find((p: any) => p.header.trans_rec_id === c.transRecId);
    const npc = await api('POST', `packets/${SITE.name}`, {
      type: 'notify_project_create',
      header: { in_reply_to: rpcOf(answered).header.packet_rec_id },
      body: { ProjectID: 'p-1', PiPersonID: 'u-1', PiRemoteSiteLogin: 'u1' },
    });
    expect(npc.status, JSON.stringify(npc.json)).toBe(200);
    expect((await api('PUT', `transactions/${SITE.name}/${failed.transRecId}/state/failed`)).status).toBe(200);

    // What a client like amieclient's example answers: only the packet still waiting for the site.
    const bare = (await api('GET', `packets/${SITE.name}`)).json.result;
    expect(bare.map((p: any) => p.header.packet_rec_id)).toEqual([rpcOf(pending).header.packet_rec_id]);
    // A filter given is the whole filter.
    expect((await api('GET', `packets/${SITE.name}?outgoing=true`)).json.result.map((p: any) => p.type)).toEqual([
      'notify_project_create',
    ]);
    expect((await api('GET', `packets/${SITE.name}?incoming=true&outgoing=true`)).json.result).toHaveLength(4);
  });
});

/** Sorts object keys all the way down, so two JSON values compare without regard to key order. */
function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, x]) => [k, sortedKeys(x)]),
    );
  return v;
}

describe('[13.5] packet JSON round trip', () => {
  it('[13.5] a fixture-shaped packet goes JSON -> packet -> JSON unchanged except key order, null states included', () => {
    for (const json of [RAC_PACKET, RPC_PACKET]) {
      const again = toRestPacketJson(parseRestPacket(structuredClone(json)));
      expect(sortedKeys(JSON.parse(JSON.stringify(again)))).toEqual(sortedKeys(json));
    }
    const again = toRestPacketJson(parseRestPacket(structuredClone(RAC_PACKET)));
    // amieclient's Packet.from_dict reads header['transaction_state'] and header['packet_state'] with no default.
    expect(again.header).toHaveProperty('packet_state', null);
    expect(again.header).toHaveProperty('transaction_state', 'in-progress');
    const noStates = toRestPacketJson({ ...parseRestPacket(structuredClone(RAC_PACKET)), transactionState: null });
    expect(Object.keys(noStates.header)).toEqual(expect.arrayContaining(['transaction_state', 'packet_state']));
  });
});

/*
 * Written out from amieclient's packet classes (amieclient/packet/*.py): per reply type, the tags
 * the server fills in from the request (`_data_keys_not_required_in_reply`) and the tags a packet
 * may carry (`_data_keys_required` + `_data_keys_allowed`). Data, not code under test.
 */
const AMIECLIENT_FILLS: Partial<Record<PacketTypeName, string[]>> = {
  notify_account_create: [
    'AcademicDegree',
    'UserFirstName',
    'UserLastName',
    'UserOrganization',
    'UserOrgCode',
    'UserPersonID',
  ],
  notify_account_inactivate: ['PersonID', 'ProjectID', 'ResourceList'],
  notify_account_reactivate: [],
  notify_project_create: [
    'GrantNumber',
    'PfosNumber',
    'PiOrgCode',
    'ProjectTitle',
    'ResourceList',
    'ServiceUnitsAllocated',
    'StartDate',
  ],
  notify_project_inactivate: ['Comment', 'PersonID', 'ProjectID', 'ResourceList'],
  notify_project_reactivate: ['Comment', 'PersonID', 'ProjectID', 'ResourceList'],
  inform_transaction_complete: [],
};
const AMIECLIENT_TAGS: Partial<Record<PacketTypeName, string[]>> = {
  notify_account_create: [
    'AccountActivityTime',
    'AcademicDegree',
    'ProjectID',
    'ResourceList',
    'UserFirstName',
    'UserLastName',
    'UserOrganization',
    'UserOrgCode',
    'UserPersonID',
    'UserRemoteSiteLogin',
    'NsfStatusCode',
    'RoleList',
    'UserBusinessPhoneExtension',
    'UserBusinessPhoneNumber',
    'UserCity',
    'UserCountry',
    'UserDepartment',
    'UserDnList',
    'UserEmail',
    'UserFax',
    'UserGlobalID',
    'UserHomePhoneExtension',
    'UserHomePhoneNumber',
    'UserMiddleName',
    'UserPasswordAccessEnable',
    'UserPosition',
    'UserRequestedLoginList',
    'UserState',
    'UserStreetAddress',
    'UserStreetAddress2',
    'UserTitle',
    'UserZip',
    'UserUID',
  ],
  notify_project_create: [
    'GrantNumber',
    'PfosNumber',
    'PiOrgCode',
    'PiPersonID',
    'PiRemoteSiteLogin',
    'ProjectID',
    'ProjectTitle',
    'ResourceList',
    'ServiceUnitsAllocated',
    'StartDate',
    'Abstract',
    'AcademicDegree',
    'AllocationType',
    'EndDate',
    'NsfStatusCode',
    'PiBusinessPhoneComment',
    'PiBusinessPhoneExtension',
    'PiBusinessPhoneNumber',
    'PiCity',
    'PiCountry',
    'PiDepartment',
    'PiDnList',
    'PiEmail',
    'PiFax',
    'PiFirstName',
    'PiGlobalID',
    'PiHomePhoneComment',
    'PiHomePhoneExtension',
    'PiHomePhoneNumber',
    'PiLastName',
    'PiMiddleName',
    'PiOrganization',
    'PiPosition',
    'PiRequestedLoginList',
    'PiState',
    'PiStreetAddress',
    'PiStreetAddress2',
    'PiTitle',
    'PiUID',
    'PiZip',
    'ProjectGID',
    'ResourceLogin',
    'RoleList',
    'Sfos',
  ],
  notify_user_modify: [
    'ActionType',
    'PersonID',
    'AcademicDegree',
    'BusinessPhoneComment',
    'BusinessPhoneExtension',
    'BusinessPhoneNumber',
    'City',
    'Country',
    'Department',
    'DnList',
    'Email',
    'Fax',
    'FirstName',
    'HomePhoneComment',
    'HomePhoneExtension',
    'HomePhoneNumber',
    'LastName',
    'MiddleName',
    'Organization',
    'OrgCode',
    'State',
  ],
  request_user_modify: [
    'ActionType',
    'PersonID',
    'AcademicDegree',
    'BusinessPhoneComment',
    'BusinessPhoneExtension',
    'BusinessPhoneNumber',
    'CitizenshipList',
    'City',
    'Country',
    'Department',
    'DnList',
    'Email',
    'Fax',
    'FirstName',
    'HomePhoneComment',
    'HomePhoneExtension',
    'HomePhoneNumber',
    'LastName',
    'MiddleName',
    'NsfStatusCode',
    'Organization',
    'OrgCode',
    'State',
    'StreetAddress',
    'StreetAddress2',
    'Title',
    'Zip',
  ],
  notify_project_inactivate: ['ProjectID', 'ResourceList'],
  notify_account_inactivate: ['PersonID', 'ProjectID', 'ResourceList', 'Comment'],
};

describe('[13.4] tags the server fills in', () => {
  it.each(Object.entries(AMIECLIENT_FILLS))(
    '[13.4] %s: every tag amieclient leaves to the server is filled in from the request',
    (type, fills) => {
      const spec = specOf(type as PacketTypeName);
      expect(Object.keys(spec.inferFromRequest ?? {})).toEqual(expect.arrayContaining(fills));
    },
  );

  it.each(Object.entries(AMIECLIENT_TAGS))(
    '[13.4] %s: every tag amieclient lets it carry is one the spec names',
    (type, tags) => {
      const spec = specOf(type as PacketTypeName);
      expect(tags.filter((t) => !spec.required.includes(t) && !spec.allowed.includes(t))).toEqual([]);
    },
  );

  it('[13.4] notify_user_modify requires ActionType (add, delete or replace) and PersonID', () => {
    expect(
      validateBody('notify_user_modify', PacketBody.fromTags({}))
        .map((p) => p.tag)
        .sort(),
    ).toEqual(['ActionType', 'PersonID']);
    expect(
      validateBody('notify_user_modify', PacketBody.fromTags({ ActionType: 'rename', PersonID: 'u-1' })).map(
        (p) => p.message,
      ),
    ).toEqual(['ActionType: "rename" is not one of add, delete, replace']);
    expect(
      validateBody(
        'notify_user_modify',
        PacketBody.fromTags({ ActionType: 'add', PersonID: 'u-1', DnList: ['/CN=x'] }),
      ),
    ).toEqual([]);
  });

  it("[13.4] the simulator fills a NAC's UserPersonID from the RAC and takes the NAC and NPC tags amieclient allows", async () => {
    const { central, api } = await simulator();
    const data = new SimData(SITE.resource);
    const project = { grantNumber: 'TG-ATM230041', projectId: 'p-atm230041' };
    const known = await central.send(
      'request_account_create',
      data.rac(data.person(), project, { UserPersonID: 'u-known' }),
    );
    const unknown = await central.send('request_account_create', data.rac(data.person(), project));
    const rpc = await central.send('request_project_create', data.rpc(data.person()));
    const served = (await api('GET', `packets/${SITE.name}`)).json.result;
    const of = (c: { transRecId: number }) =>
      served.find((p: any) => p.header.trans_rec_id === c.transRecId).header.packet_rec_id;
    // As amieclient's example builds it: UserPersonID left unset when the site did not know the person.
    const nac = (to: number) => ({
      type: 'notify_account_create',
      header: { in_reply_to: to },
      body: {
        AccountActivityTime: '2023-11-07T10:00:00Z',
        UserRemoteSiteLogin: 'tquist',
        UserPasswordAccessEnable: '1',
        UserRequestedLoginList: [''],
      },
    });

    const filled = await api('POST', `packets/${SITE.name}`, nac(of(known)));
    expect(filled.status, JSON.stringify(filled.json)).toBe(200);
    const body = parseRestPacket(filled.json.result).body;
    expect(body.get('UserPersonID')).toBe('u-known');
    expect(body.getEntries('AcademicDegree')).toEqual([{ Degree: 'BS', Field: 'Computer Science' }]);
    expect(unexpectedTags('notify_account_create', body)).toEqual([]);

    // Nothing to fill it from: refused, naming the tag.
    const refused = await api('POST', `packets/${SITE.name}`, nac(of(unknown)));
    expect(refused.status).toBe(400);
    expect(refused.json.message).toContain('UserPersonID: required tag is missing');

    const npc = await api('POST', `packets/${SITE.name}`, {
      type: 'notify_project_create',
      header: { in_reply_to: of(rpc) },
      body: {
        ProjectID: 'p-atm230041',
        PiPersonID: 'u-pi',
        PiRemoteSiteLogin: 'pi',
        PiFirstName: 'Tove',
        PiLastName: 'Quist',
        PiOrganization: 'Example State University',
        PiDnList: ['/C=US/O=Example/CN=Tove Quist'],
        PiRequestedLoginList: [''],
      },
    });
    expect(npc.status, JSON.stringify(npc.json)).toBe(200);
    expect(unexpectedTags('notify_project_create', parseRestPacket(npc.json.result).body)).toEqual([]);
  });
});

describe("[13.6] the Usage API's failed records", () => {
  const job = (id: string, extra: Record<string, unknown> = {}) => ({
    Username: 'tquist',
    LocalProjectID: 'p-atm230041',
    LocalRecordID: id,
    Resource: SITE.resource,
    SubmitTime: '2023-11-07T10:00:00Z',
    StartTime: '2023-11-07T10:00:05Z',
    EndTime: '2023-11-07T11:00:05Z',
    Charge: 4,
    Attributes: { NodeCount: 1, CpuCoreCount: 8, Queue: 'gpu' },
    ...extra,
  });
  const usageClient = (sim: RestSimulator) =>
    new UsageApiClient({ url: sim.usageUrl, site: SITE.name, apiKey: KEY, maxRetries: 0, retryBaseMs: 1 });

  it('[13.6] failed records carry a FailedRecordID, are listed under both keys, grouped by error in the status, and cleared by DELETE', async () => {
    const { sim, api } = await simulator();
    const usage = (method: string, path: string, body?: unknown) => api(method, path, body, sim.usageUrl);
    const posted = await usage('POST', 'usage/', {
      UsageType: 'compute',
      Records: [job('1'), job('2', { Username: '' }), job('3', { Username: '' }), job('4', { Charge: 'x' })],
    });
    expect(posted.status).toBe(200);
    const ids = posted.json.ValidationFailedRecords.map((f: any) => f.FailedRecordID);
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
    expect(ids.every(Number.isInteger)).toBe(true);

    const failed = (await usage('GET', 'usage/failed')).json;
    // amieclient's FailedUsageResponse reads ValidationFailedRecords; its as_dict writes FailedRecords.
    expect(failed.ValidationFailedRecords).toEqual(failed.FailedRecords);
    expect(
      failed.ValidationFailedRecords.map((f: any) => [f.FailedRecordID, f.LocalRecordID, f.UsageType, f.Error]),
    ).toEqual([
      [ids[0], '2', 'Compute', 'Username is required'],
      [ids[1], '3', 'Compute', 'Username is required'],
      [ids[2], '4', 'Compute', 'Charge "x" is not a number'],
    ]);
    const [status] = (await usage('GET', 'usage/status')).json;
    expect(status.Errors.map((e: any) => [e.Error, e.Records.map((r: any) => [r.LocalRecordID, r.UsageType])])).toEqual(
      [
        [
          'Username is required',
          [
            ['2', 'Compute'],
            ['3', 'Compute'],
          ],
        ],
        ['Charge "x" is not a number', [['4', 'Compute']]],
      ],
    );

    // amieclient's clear_failed_records: the ids comma-separated in the path.
    const cleared = await usage('DELETE', `usage/failed/${ids[0]},${ids[2]}`);
    expect(cleared.status, JSON.stringify(cleared.json)).toBe(200);
    expect((await usage('GET', 'usage/failed')).json.FailedRecords.map((f: any) => f.LocalRecordID)).toEqual(['3']);
    // Errors carry the reason under `error`.
    const again = await usage('DELETE', `usage/failed/${ids[0]}`);
    expect(again).toEqual({ status: 404, json: { error: `no failed record with FailedRecordID ${ids[0]}` } });
    expect((await usage('DELETE', 'usage/failed/abc')).json.error).toContain('"abc" is not a FailedRecordID');
    expect((await usage('POST', 'usage/', { UsageType: 'cpu', Records: [] })).json).toEqual({
      error: 'UsageType "cpu" is not one of compute, storage, adjustment',
    });
  });

  it("[13.6] the toolkit's Usage API client reads each shape, clears by id, and reports the server's `error`", async () => {
    const { sim } = await simulator();
    const client = usageClient(sim);
    const verdicts = await client.postCompute([job('1'), job('2', { Username: '' }), job('3', { EndTime: 'later' })]);
    expect(verdicts.map((v) => v.accepted)).toEqual([true, false, false]);

    const failed = await client.failedRecords();
    expect(failed.map((f) => [f.localRecordId, f.resource, f.username, f.error])).toEqual([
      ['2', SITE.resource, '', 'Username is required'],
      ['3', SITE.resource, 'tquist', 'EndTime "later" is not an ISO 8601 time'],
    ]);
    expect(failed.every((f) => f.failedRecordId !== null)).toBe(true);
    const status = await client.usageStatus();
    expect(status).toEqual([
      {
        resource: SITE.resource,
        loadedRecordCount: 1,
        failedJobCount: 2,
        totalCharge: 4,
        errors: [
          { error: 'Username is required', records: [expect.objectContaining({ LocalRecordID: '2' })] },
          {
            error: 'EndTime "later" is not an ISO 8601 time',
            records: [expect.objectContaining({ LocalRecordID: '3' })],
          },
        ],
      },
    ]);
    await client.clearFailed([failed[0]!.failedRecordId!]);
    expect((await client.failedRecords()).map((f) => f.localRecordId)).toEqual(['3']);
    // A refusal names the server's reason, given under `error`.
    const err = await client.clearFailed(['999999']).then(
      () => undefined,
      (e: unknown) => e as UsageApiError,
    );
    expect(err).toBeInstanceOf(UsageApiError);
    expect(err!.message).toMatch(/HTTP 404: no failed record with FailedRecordID 999999$/);

    // The shapes amieclient writes, and the older flat status, read the same way.
    expect(
      readFailedRecords({
        FailedRecords: [{ UsageType: 'Compute', Error: 'bad', FailedRecordID: 7, LocalRecordID: '9' }],
      }),
    ).toEqual([
      expect.objectContaining({ failedRecordId: '7', error: 'bad', localRecordId: '9', usageType: 'Compute' }),
    ]);
    expect(
      readUsageStatus([
        {
          Resource: 'r',
          LoadedRecordCount: 1,
          FailedJobCount: 2,
          TotalCharge: 3,
          Errors: [
            { LocalRecordID: '1', Error: 'e' },
            { LocalRecordID: '2', Error: 'e' },
          ],
        },
      ]),
    ).toEqual([
      {
        resource: 'r',
        loadedRecordCount: 1,
        failedJobCount: 2,
        totalCharge: 3,
        errors: [{ error: 'e', records: [{ LocalRecordID: '1' }, { LocalRecordID: '2' }] }],
      },
    ]);
    expect(() => readFailedRecords({ Message: 'ok', Records: 'none' }, 'GET usage/failed')).not.toThrow();
    expect(() => readFailedRecords({ FailedRecords: 'none' })).toThrow(UsageAnswerError);
    expect(() => readUsageStatus({ message: 'maintenance' })).toThrow(
      /expected a list of resources, got an object with keys message/,
    );

    // A POST answer that names its failures under FailedRecords is believed too.
    sim.inject({
      api: 'usage',
      method: 'POST',
      status: 200,
      body: { Message: '1 of 2 loaded', FailedRecords: [{ LocalRecordID: '12', Error: 'unknown project' }] },
    });
    const judged = await client.postCompute([job('11'), job('12')]);
    expect(judged.map((v) => [v.accepted, v.reason])).toEqual([
      [true, undefined],
      [false, 'unknown project'],
    ]);
  });

  it("[13.6] amie usage failed --server lists the server's failed records; --clear and --clear-all delete them", async () => {
    const { sim } = await simulator();
    await usageClient(sim).postCompute([
      job('1', { Username: '' }),
      job('2', { Username: '' }),
      job('3', { Charge: 'x' }),
    ]);
    const ids = (await usageClient(sim).failedRecords()).map((f) => f.failedRecordId!);
    const dir = mkdtempSync(join(tmpdir(), 'amie-usage-failed-'));
    opened.push(async () => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\n` +
        `usage:\n  sink: usage-api\n  usageApi: { url: ${sim.usageUrl}, apiKeyEnv: AMIE_TEST_USAGE_KEY }\n`,
    );
    const amie = (...args: string[]) =>
      amieInProcess(['-c', config, ...args], {
        env: { ...process.env, AMIE_LOG_LEVEL: 'warn', AMIE_TEST_USAGE_KEY: KEY },
        trimmed: true,
      });

    const listed = await amie('usage', 'failed', '--server');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.split('\n')[0]).toMatch(/^id\s+resource\s+record\s+project\s+user\s+error$/);
    expect(listed.stdout).toContain('Username is required');
    expect(listed.stdout).toContain('Charge "x" is not a number');
    const json = JSON.parse((await amie('usage', 'failed', '--server', '--json')).stdout);
    expect(json.map((r: any) => r.failedRecordId)).toEqual(ids);

    const one = await amie('usage', 'failed', '--clear', ids[1]!);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toBe(`cleared 1 failed record(s) on the Usage API: ${ids[1]}`);
    expect([...sim.usage.failed.values()].map((f) => f.record.LocalRecordID)).toEqual(['1', '3']);
    const unknown = await amie('usage', 'failed', '--clear', '999999');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no failed record with FailedRecordID 999999');

    const all = await amie('usage', 'failed', '--clear-all');
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toBe(`cleared 2 failed record(s) on the Usage API: ${ids[0]}, ${ids[2]}`);
    expect(sim.usage.failed.size).toBe(0);
    expect((await amie('usage', 'failed', '--clear-all')).stdout).toBe('nothing to clear');
  }, 180_000);
});
