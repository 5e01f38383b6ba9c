/**
 * What XSEDE's Python amieclient shows of the real ACCESS services, held against the simulator,
 * the REST source and the Usage API client: the shapes of answers, what a reply may leave to the
 * server, central's ITC answered over REST, failed usage records with ids that can be cleared.
 */
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
import { RAC_PACKET, RPC_PACKET, TRANSACTION_RESULT } from '../fixtures/rest-packets.js';
import { SITE, initTestDatabase, quietLog } from '../helpers/amie.js';
import { freshPgliteDatabase } from '../helpers/db.js';

const KEY = 'amieclient-shapes-key-not-secret';
const context = (db: Database): HandlerContext<any> => ({ db, log: quietLog, site: SITE, options: {}, dryRun: false });

/** Things a test opened, stopped after it in reverse order. */
const opened: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of opened.splice(0).reverse()) await stop();
});

async function simulator(): Promise<{ sim: RestSimulator; central: CentralSite; api: (method: string, path: string, body?: unknown, base?: string) => Promise<{ status: number; json: any }> }> {
  const sim = await RestSimulator.start({ site: SITE, apiKey: KEY });
  opened.push(() => sim.stop());
  const central = new CentralSite(sim.db, { siteName: SITE.name, resource: SITE.resource, remoteSiteName: SITE.remoteSite });
  const api = async (method: string, path: string, body?: unknown, base = sim.amieUrl) => {
    const res = await fetch(new URL(path, base), {
      method,
      headers: { 'XA-SITE': SITE.name, 'XA-API-KEY': KEY, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : undefined) as any };
  };
  return { sim, central, api };
}

async function siteDatabase(): Promise<Database> {
  const site = await freshPgliteDatabase();
  opened.push(() => site.cleanup());
  await initTestDatabase(site.db);
  return site.db;
}

const CENTRAL_ITC = { StatusCode: 'Success', DetailCode: '1', Message: 'notify_project_inactivate recorded by central' };

describe("[13.1] central's ITC", () => {
  it("[13.1] the REST source answers central's ITC with a success ITC, and the transaction completes", async () => {
    const { sim, central, api } = await simulator();
    const c = await central.send('inform_transaction_complete', CENTRAL_ITC);
    const dispatcher = new Dispatcher(restSourceFor(sim, KEY, await siteDatabase(), quietLog), new AmieHandler(context(sim.db)), quietLog);
    const first = await dispatcher.runOnce();
    expect(first.closed).toBe(1);
    expect(first.results[0]).toMatchObject({ type: 'inform_transaction_complete', outcome: 'closed', replyType: 'inform_transaction_complete' });

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
    const central = new CentralSite(db, { siteName: SITE.name, resource: SITE.resource, remoteSiteName: SITE.remoteSite });
    const c = await central.send('inform_transaction_complete', CENTRAL_ITC);
    const summary = await new Dispatcher(new TablesSource(db), new AmieHandler(context(db)), quietLog).runOnce();
    expect(summary.closed).toBe(1);
    const packets = await listTransactionPackets(db, c.transRecId);
    expect(packets.map((p) => [p.type, p.outgoing, p.state])).toEqual([['inform_transaction_complete', false, 'completed']]);
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
    expect(packetListOf({ message: '', result: TRANSACTION_RESULT }, 'GET transactions').map((p) => parseRestPacket(p).packetRecId)).toEqual([
      RAC_PACKET.header.packet_rec_id,
    ]);
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
    expect((await api('GET', `packets/${SITE.name}?outgoing=true`)).json.result.map((p: any) => p.type)).toEqual(['notify_project_create']);
    expect((await api('GET', `packets/${SITE.name}?incoming=true&outgoing=true`)).json.result).toHaveLength(4);
  });
});

/** Sorts object keys all the way down, so two JSON values compare without regard to key order. */
function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sortedKeys(x)]));
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
  notify_account_create: ['AcademicDegree', 'UserFirstName', 'UserLastName', 'UserOrganization', 'UserOrgCode', 'UserPersonID'],
  notify_account_inactivate: ['PersonID', 'ProjectID', 'ResourceList'],
  notify_account_reactivate: [],
  notify_project_create: ['GrantNumber', 'PfosNumber', 'PiOrgCode', 'ProjectTitle', 'ResourceList', 'ServiceUnitsAllocated', 'StartDate'],
  notify_project_inactivate: ['Comment', 'PersonID', 'ProjectID', 'ResourceList'],
  notify_project_reactivate: ['Comment', 'PersonID', 'ProjectID', 'ResourceList'],
  inform_transaction_complete: [],
};
const AMIECLIENT_TAGS: Partial<Record<PacketTypeName, string[]>> = {
  notify_account_create: [
    'AccountActivityTime', 'AcademicDegree', 'ProjectID', 'ResourceList', 'UserFirstName', 'UserLastName', 'UserOrganization', 'UserOrgCode',
    'UserPersonID', 'UserRemoteSiteLogin', 'NsfStatusCode', 'RoleList', 'UserBusinessPhoneExtension', 'UserBusinessPhoneNumber', 'UserCity',
    'UserCountry', 'UserDepartment', 'UserDnList', 'UserEmail', 'UserFax', 'UserGlobalID', 'UserHomePhoneExtension', 'UserHomePhoneNumber',
    'UserMiddleName', 'UserPasswordAccessEnable', 'UserPosition', 'UserRequestedLoginList', 'UserState', 'UserStreetAddress',
    'UserStreetAddress2', 'UserTitle', 'UserZip', 'UserUID',
  ],
  notify_project_create: [
    'GrantNumber', 'PfosNumber', 'PiOrgCode', 'PiPersonID', 'PiRemoteSiteLogin', 'ProjectID', 'ProjectTitle', 'ResourceList',
    'ServiceUnitsAllocated', 'StartDate', 'Abstract', 'AcademicDegree', 'AllocationType', 'EndDate', 'NsfStatusCode', 'PiBusinessPhoneComment',
    'PiBusinessPhoneExtension', 'PiBusinessPhoneNumber', 'PiCity', 'PiCountry', 'PiDepartment', 'PiDnList', 'PiEmail', 'PiFax', 'PiFirstName',
    'PiGlobalID', 'PiHomePhoneComment', 'PiHomePhoneExtension', 'PiHomePhoneNumber', 'PiLastName', 'PiMiddleName', 'PiOrganization',
    'PiPosition', 'PiRequestedLoginList', 'PiState', 'PiStreetAddress', 'PiStreetAddress2', 'PiTitle', 'PiUID', 'PiZip', 'ProjectGID',
    'ResourceLogin', 'RoleList', 'Sfos',
  ],
  notify_user_modify: [
    'ActionType', 'PersonID', 'AcademicDegree', 'BusinessPhoneComment', 'BusinessPhoneExtension', 'BusinessPhoneNumber', 'City', 'Country',
    'Department', 'DnList', 'Email', 'Fax', 'FirstName', 'HomePhoneComment', 'HomePhoneExtension', 'HomePhoneNumber', 'LastName', 'MiddleName',
    'Organization', 'OrgCode', 'State',
  ],
  request_user_modify: [
    'ActionType', 'PersonID', 'AcademicDegree', 'BusinessPhoneComment', 'BusinessPhoneExtension', 'BusinessPhoneNumber', 'CitizenshipList',
    'City', 'Country', 'Department', 'DnList', 'Email', 'Fax', 'FirstName', 'HomePhoneComment', 'HomePhoneExtension', 'HomePhoneNumber',
    'LastName', 'MiddleName', 'NsfStatusCode', 'Organization', 'OrgCode', 'State', 'StreetAddress', 'StreetAddress2', 'Title', 'Zip',
  ],
  notify_project_inactivate: ['ProjectID', 'ResourceList'],
  notify_account_inactivate: ['PersonID', 'ProjectID', 'ResourceList', 'Comment'],
};

describe('[13.4] tags the server fills in', () => {
  it.each(Object.entries(AMIECLIENT_FILLS))("[13.4] %s: every tag amieclient leaves to the server is filled in from the request", (type, fills) => {
    const spec = specOf(type as PacketTypeName);
    expect(Object.keys(spec.inferFromRequest ?? {})).toEqual(expect.arrayContaining(fills));
  });

  it.each(Object.entries(AMIECLIENT_TAGS))('[13.4] %s: every tag amieclient lets it carry is one the spec names', (type, tags) => {
    const spec = specOf(type as PacketTypeName);
    expect(tags.filter((t) => !spec.required.includes(t) && !spec.allowed.includes(t))).toEqual([]);
  });

  it('[13.4] notify_user_modify requires ActionType (add, delete or replace) and PersonID', () => {
    expect(validateBody('notify_user_modify', PacketBody.fromTags({})).map((p) => p.tag).sort()).toEqual(['ActionType', 'PersonID']);
    expect(validateBody('notify_user_modify', PacketBody.fromTags({ ActionType: 'rename', PersonID: 'u-1' })).map((p) => p.message)).toEqual([
      'ActionType: "rename" is not one of add, delete, replace',
    ]);
    expect(validateBody('notify_user_modify', PacketBody.fromTags({ ActionType: 'add', PersonID: 'u-1', DnList: ['/CN=x'] }))).toEqual([]);
  });

  it("[13.4] the simulator fills a NAC's UserPersonID from the RAC and takes the NAC and NPC tags amieclient allows", async () => {
    const { central, api } = await simulator();
    const data = new SimData(SITE.resource);
    const project = { grantNumber: 'TG-ATM230041', projectId: 'p-atm230041' };
    const known = await central.send('request_account_create', data.rac(data.person(), project, { UserPersonID: 'u-known' }));
    const unknown = await central.send('request_account_create', data.rac(data.person(), project));
    const rpc = await central.send('request_project_create', data.rpc(data.person()));
    const served = (await api('GET', `packets/${SITE.name}`)).json.result;
    const of = (c: { transRecId: number }) => served.find((p: any) => p.header.trans_rec_id === c.transRecId).header.packet_rec_id;
    // As amieclient's example builds it: UserPersonID left unset when the site did not know the person.
    const nac = (to: number) => ({
      type: 'notify_account_create',
      header: { in_reply_to: to },
      body: { AccountActivityTime: '2023-11-07T10:00:00Z', UserRemoteSiteLogin: 'tquist', UserPasswordAccessEnable: '1', UserRequestedLoginList: [''] },
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
