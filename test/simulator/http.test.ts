import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CentralSite, SimData } from '../../src/simulator/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { parseRestPacket } from '../../src/sources/rest-json.js';
import { listTransactionPackets } from '../../src/store/index.js';
import { SITE } from '../helpers/amie.js';
import { driverCases, databaseEachTest } from '../helpers/db.js';
import { startRestSimulator } from '../helpers/simulator.js';

const KEY = 'sim-key-not-secret';

/** fetch against the simulator with the site's headers (or the ones a test gives instead). */
function client(sim: RestSimulator, headers: Record<string, string> = { 'XA-SITE': SITE.name, 'XA-API-KEY': KEY }) {
  return async (method: string, path: string, body?: unknown, base = sim.amieUrl) => {
    const res = await fetch(new URL(path, base), {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
}

/** The NPC a site would send for an RPC served as `rpc`. */
function npcFor(rpc: any, extra: Record<string, unknown> = {}) {
  return {
    DATA_TYPE: 'Packet',
    type: 'notify_project_create',
    type_id: 7,
    header: { in_reply_to: rpc.header.packet_rec_id, trans_rec_id: rpc.header.trans_rec_id },
    body: {
      ProjectID: 'p-tg-1',
      PiPersonID: 'sobrien',
      PiRemoteSiteLogin: 'sobrien',
      ...extra,
    },
  };
}

describe.each(driverCases())('REST simulator with central on $name', (driver) => {
  const t = databaseEachTest(driver);
  let sim: RestSimulator;
  let central: CentralSite;
  let data: SimData;
  let api: ReturnType<typeof client>;
  beforeEach(async () => {
    if (!driver.available) return;
    sim = await startRestSimulator({ site: SITE, apiKey: KEY, db: t.db });
    central = new CentralSite(sim.db, {
      siteName: SITE.name,
      resource: SITE.resource,
      remoteSiteName: SITE.remoteSite,
    });
    data = new SimData(SITE.resource);
    api = client(sim);
  });
  afterEach(async () => {
    await sim?.stop();
  });
  const run = it.skipIf(!driver.available);

  run('refuses requests without the right XA-SITE and XA-API-KEY with 401 and a message', async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ 'XA-API-KEY': KEY }, 'missing XA-SITE header'],
      [{ 'XA-SITE': SITE.name }, 'missing XA-API-KEY header'],
      [{ 'XA-SITE': SITE.name, 'XA-API-KEY': 'wrong' }, `XA-API-KEY is not the API key of site ${SITE.name}`],
      [
        { 'XA-SITE': 'OTHER', 'XA-API-KEY': KEY },
        `XA-SITE "OTHER" is not a site of this server (it serves ${SITE.name})`,
      ],
    ];
    for (const [headers, message] of cases) {
      for (const [path, base] of [
        [`packets/${SITE.name}`, sim.amieUrl],
        ['usage/status', sim.usageUrl],
      ] as const) {
        const r = await client(sim, headers)('GET', path, undefined, base);
        expect(r.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        // The Usage API gives its reason under `error`, the AMIE API under `message`.
        expect(base === sim.usageUrl ? r.json.error : r.json.message).toContain(message);
        expect(JSON.stringify(r.json)).not.toContain(KEY);
      }
    }
    // The site in the path must be the one XA-SITE names.
    const other = await api('GET', 'packets/OTHER');
    expect(other.status).toBe(401);
    expect(other.json.message).toContain('the path names site "OTHER", but XA-SITE is EXAMPLE');
  });

  run(
    'answers unknown routes with 404, wrong methods with 405, unknown filters with 400, each with a message',
    async () => {
      const unknown = await api('GET', `packetz/${SITE.name}`);
      expect(unknown.status).toBe(404);
      expect(unknown.json.message).toMatch(
        /^no such endpoint: GET \/amie\/packetz\/EXAMPLE; the AMIE REST API has packets\/\{site\}/,
      );
      const outside = await api('GET', '/elsewhere');
      expect(outside.status).toBe(404);
      expect(outside.json.message).toContain('the AMIE REST API is under /amie/ and the Usage API under /usage-api/');
      const method = await api('DELETE', `packets/${SITE.name}`);
      expect(method.status).toBe(405);
      expect(method.json.message).toContain('use GET or POST');
      const filter = await api('GET', `packets/${SITE.name}?statez=in-progress`);
      expect(filter.status).toBe(400);
      expect(filter.json.message).toContain('unknown query parameter "statez"');
      const state = await api('GET', `packets/${SITE.name}?states=pending`);
      expect(state.status).toBe(400);
      expect(state.json.message).toContain('"pending" is not an AMIE state');
    },
  );

  run(
    'serves central packets shaped like real ones: nested composite arrays, [""] login lists, ms and Z timestamps',
    async () => {
      const pi = data.person();
      const c = await central.send('request_project_create', {
        ...data.rpc(pi),
        PiRequestedLoginList: [''],
        FavouriteColour: 'teal',
      });
      const r = await api('GET', `packets/${SITE.name}?incoming=true&states=in-progress`);
      expect(r.status).toBe(200);
      expect(r.json.message).toBe('1 packet(s)');
      const [p] = r.json.result;
      expect(p).toMatchObject({
        DATA_TYPE: 'Packet',
        type: 'request_project_create',
        type_id: 19,
        header: {
          trans_rec_id: c.transRecId,
          transaction_id: c.transactionId,
          packet_id: 1,
          local_site_name: SITE.name,
          remote_site_name: SITE.remoteSite,
          originating_site_name: SITE.remoteSite,
          outgoing_flag: false,
          transaction_state: 'in-progress',
          packet_state: 'in-progress',
          expected_reply_list: [{ type: 'notify_project_create', timeout: 30240 }],
        },
      });
      expect(p.header.packet_timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(p.body.SitePersonId).toEqual([
        { PersonID: pi.portalLogin, Site: 'X-PORTAL' },
        { PersonID: `${pi.portalLogin}@access-ci.org`, Site: 'ACCESS-CI' },
      ]);
      expect(p.body.AcademicDegree).toEqual([
        { Degree: 'PhD', Field: 'Physical Oceanography' },
        { Degree: 'MS', Field: 'Applied Mathematics' },
      ]);
      expect(p.body.PiRequestedLoginList).toEqual(['']);
      expect(p.body.ResourceList).toEqual([SITE.resource]);
      expect(p.body.PiDnList).toEqual(pi.dns);
      expect(p.body.FavouriteColour).toBe('teal');
      expect(p.body.PiLastName).toBe(pi.lastName);
      // The REST source's own reader takes it as it is.
      const read = parseRestPacket(p);
      expect(read.body.getEntries('SitePersonId')).toHaveLength(2);
      expect(read.timestamp?.toISOString()).toBe(p.header.packet_timestamp);
    },
  );

  run(
    'takes a valid reply, fills what central may infer, and hands it to central, which answers with a DPC',
    async () => {
      const pi = data.person();
      const c = await central.send('request_project_create', data.rpc(pi));
      const [rpc] = (await api('GET', `packets/${SITE.name}?incoming=true`)).json.result;
      const posted = await api('POST', `packets/${SITE.name}`, npcFor(rpc));
      expect(posted.status, JSON.stringify(posted.json)).toBe(200);
      expect(posted.json.result.header).toMatchObject({
        in_reply_to: rpc.header.packet_rec_id,
        outgoing_flag: true,
        packet_id: 2,
        packet_state: 'in-progress',
      });
      // GrantNumber, ResourceList, ProjectTitle … come from the RPC, as the real service infers them.
      expect(posted.json.result.body).toMatchObject({
        GrantNumber: rpc.body.GrantNumber,
        ResourceList: [SITE.resource],
        PiOrgCode: pi.orgCode,
      });

      // The answered RPC is completed; a second reply to it is refused.
      const again = await api('POST', `packets/${SITE.name}`, npcFor(rpc));
      expect(again.status).toBe(409);
      expect(again.json.message).toContain(
        `packet ${rpc.header.packet_rec_id} was already answered by packet_rec_id ${posted.json.result.header.packet_rec_id}`,
      );

      await central.transfer();
      const next = (await api('GET', `packets/${SITE.name}?incoming=true&states=in-progress`)).json.result;
      expect(next.map((p: any) => p.type)).toEqual(['data_project_create']);
      expect(next[0].body).toMatchObject({ PersonID: 'sobrien', ProjectID: 'p-tg-1', DnList: pi.dns });

      // The site's ITC ends it; central completes the transaction.
      const itc = await api('POST', `packets/${SITE.name}`, {
        type: 'inform_transaction_complete',
        header: { in_reply_to: next[0].header.packet_rec_id },
        body: { StatusCode: 'Success', DetailCode: '1', Message: 'done' },
      });
      expect(itc.status, JSON.stringify(itc.json)).toBe(200);
      await central.transfer();
      expect(c.state).toBe('completed');
      const all = (await api('GET', `transactions/${SITE.name}/${c.transRecId}/packets`)).json.result.DATA;
      expect(
        all.map((p: any) => [p.type, p.header.outgoing_flag, p.header.packet_state, p.header.transaction_state]),
      ).toEqual([
        ['request_project_create', false, 'completed', 'completed'],
        ['notify_project_create', true, 'completed', 'completed'],
        ['data_project_create', false, 'completed', 'completed'],
        ['inform_transaction_complete', true, 'completed', 'completed'],
      ]);
    },
  );

  run('refuses bad replies with 400 naming the problem: tags, type, in_reply_to, transaction', async () => {
    await central.send('request_project_create', data.rpc(data.person()));
    const c2 = await central.send(
      'request_account_create',
      data.rac(data.person(), { grantNumber: 'TG-X', projectId: 'p-x' }),
    );
    const served = (await api('GET', `packets/${SITE.name}?incoming=true`)).json.result;
    const [rpc, rac] = served;
    const post = (body: unknown) => api('POST', `packets/${SITE.name}`, body);

    const noPerson = await post(npcFor(rpc, { PiPersonID: undefined, PiRemoteSiteLogin: '  ' }));
    expect(noPerson.status).toBe(400);
    expect(noPerson.json.message).toContain(
      `notify_project_create in reply to packet_rec_id ${rpc.header.packet_rec_id} (request_project_create) breaks the protocol`,
    );
    expect(noPerson.json.message).toContain('PiPersonID: required tag is missing');
    expect(noPerson.json.message).toContain('PiRemoteSiteLogin: required tag is empty');

    const wrongType = await post({ ...npcFor(rac), type_id: undefined });
    expect(wrongType.status).toBe(400);
    expect(wrongType.json.message).toContain(
      'request_account_create is answered with notify_account_create (or a failure inform_transaction_complete), not notify_project_create',
    );

    const successItc = await post({
      type: 'inform_transaction_complete',
      header: { in_reply_to: rac.header.packet_rec_id },
      body: { StatusCode: 'Success', DetailCode: '1', Message: 'ok' },
    });
    expect(successItc.status).toBe(400);

    const nowhere = await post({ ...npcFor(rpc), header: { in_reply_to: 999999 } });
    expect(nowhere.status).toBe(400);
    expect(nowhere.json.message).toContain(`header.in_reply_to 999999 names no packet of site ${SITE.name}`);

    const noReplyTo = await post({ ...npcFor(rpc), header: {} });
    expect(noReplyTo.status).toBe(400);
    expect(noReplyTo.json.message).toContain('header.in_reply_to');

    const badType = await post({ ...npcFor(rpc), type: 'notify_everything', type_id: undefined });
    expect(badType.status).toBe(400);
    expect(badType.json.message).toContain('notify_everything');

    const malformed = await post('{"type": "notify_project_create", ');
    expect(malformed.status).toBe(400);
    expect(malformed.json.message).toMatch(/^malformed JSON in the packet: /);

    const otherTransaction = await post({
      ...npcFor(rpc),
      header: { in_reply_to: rpc.header.packet_rec_id, trans_rec_id: c2.transRecId },
    });
    expect(otherTransaction.status).toBe(400);
    expect(otherTransaction.json.message).toContain(`belongs to trans_rec_id ${rpc.header.trans_rec_id}`);

    // A failure ITC may answer anything; then the transaction is closed to further replies.
    const failure = await post({
      type: 'inform_transaction_complete',
      header: { in_reply_to: rac.header.packet_rec_id },
      body: { StatusCode: 'Failure', DetailCode: '2', Message: 'no such project' },
    });
    expect(failure.status, JSON.stringify(failure.json)).toBe(200);
    await central.transfer();
    expect(c2.state).toBe('failed');
    const late = await post({
      type: 'inform_transaction_complete',
      header: { in_reply_to: rac.header.packet_rec_id },
      body: { StatusCode: 'Failure', DetailCode: '2', Message: 'again' },
    });
    expect(late.status).toBe(409);
    // Nothing refused reached central's tables.
    const rows = await listTransactionPackets(sim.db, rpc.header.trans_rec_id);
    expect(rows.filter((p) => p.outgoing)).toHaveLength(0);
  });

  run('filters by direction, states, transaction state, client state, trans_rec_id and update time', async () => {
    const a = await central.send('request_project_create', data.rpc(data.person()));
    const before = new Date(Date.now() - 1000).toISOString();
    const b = await central.send('request_project_create', data.rpc(data.person()));
    const list = async (query: string) => {
      const r = await api('GET', `packets/${SITE.name}${query}`);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      return r.json.result.map((p: any) => p.header.packet_rec_id) as number[];
    };
    const [pa, pb] = await list('?incoming=true');
    expect([pa, pb].every(Number.isInteger)).toBe(true);
    expect(await list(`?trans_rec_id=${b.transRecId}`)).toEqual([pb]);
    expect(await list(`?trans_rec_ids=${a.transRecId},${b.transRecId}`)).toEqual([pa, pb]);
    expect(await list('?outgoing=true')).toEqual([]);

    const rpcA = (await api('GET', `packets/${SITE.name}/${pa}`)).json.result;
    expect((await api('POST', `packets/${SITE.name}`, npcFor(rpcA))).status).toBe(200);
    const outgoing = await list('?outgoing=true');
    expect(outgoing).toHaveLength(1);
    expect(await list('?incoming=true&states=in-progress')).toEqual([pb]);
    expect(await list('?states=completed')).toEqual([pa]);
    expect(await list('?incoming=true&outgoing=true')).toEqual([pa, pb, outgoing[0]]);

    // client_state: set, filter, clear.
    const set = await api('PUT', `packets/${SITE.name}/${pb}/client_state/waiting-approval`);
    expect(set.status).toBe(200);
    expect(set.json.result.header.client_state).toBe('waiting-approval');
    expect(await list('?client_state=waiting-approval')).toEqual([pb]);
    expect(await list('?client_states=other,waiting-approval')).toEqual([pb]);
    const json = await api('PUT', `packets/${SITE.name}/${pb}/client_json`, { tries: 2, note: 'approval pending' });
    expect(json.json.result.header.client_json).toEqual({ tries: 2, note: 'approval pending' });
    expect((await api('DELETE', `packets/${SITE.name}/${pb}/client_state`)).status).toBe(200);
    expect((await api('DELETE', `packets/${SITE.name}/${pb}/client_json`)).json.result.header).not.toHaveProperty(
      'client_json',
    );
    expect(await list('?client_state=waiting-approval')).toEqual([]);
    expect((await api('PUT', `packets/${SITE.name}/${pb}/client_state`)).status).toBe(400);
    expect((await api('PUT', `packets/${SITE.name}/424242/client_state/x`)).status).toBe(404);

    // Transaction state, and failing a transaction through the API.
    const failed = await api('PUT', `transactions/${SITE.name}/${b.transRecId}/state/failed`);
    expect(failed.status).toBe(200);
    expect(failed.json.result).toEqual({
      trans_rec_id: b.transRecId,
      transaction_id: b.transactionId,
      transaction_state: 'failed',
    });
    expect(await list('?incoming=true&transaction_state=in-progress')).toEqual([pa]);
    expect(await list('?transaction_states=failed')).toEqual([pb]);
    await central.transfer();
    expect(b.state).toBe('failed');
    expect(b.checks.map((x) => x.message)).toContain(
      `${b.label}: the site failed the transaction instead of answering it`,
    );

    // update_time: a window, open on either side; every change above moved pb's update time.
    const future = new Date(Date.now() + 3600_000).toISOString();
    expect(await list(`?update_time=${encodeURIComponent(future)},`)).toEqual([]);
    const everything = await list('?incoming=true&outgoing=true');
    expect(everything).toHaveLength(4); // with the DPC central sent for a
    expect(await list(`?update_time=${encodeURIComponent(before)},${encodeURIComponent(future)}`)).toEqual(everything);
    expect(await list(`?update_time=,${encodeURIComponent(before)}`)).toEqual([]);
    expect((await api('GET', `packets/${SITE.name}?update_time=yesterday`)).status).toBe(400);
  });

  run(
    "[13.1] lists central's ITC as in progress until the site answers it with a success ITC, which ends the transaction",
    async () => {
      const c = await central.send('request_project_inactivate', { ProjectID: 'p-1', ResourceList: [SITE.resource] });
      const [req] = (await api('GET', `packets/${SITE.name}?incoming=true&states=in-progress`)).json.result;
      const npi = await api('POST', `packets/${SITE.name}`, {
        type: 'notify_project_inactivate',
        header: { in_reply_to: req.header.packet_rec_id },
        body: {},
      });
      expect(npi.status, JSON.stringify(npi.json)).toBe(200);
      expect(npi.json.result.body).toEqual({ ProjectID: 'p-1', ResourceList: [SITE.resource] });
      await central.transfer();
      const [itc] = (await api('GET', `packets/${SITE.name}?incoming=true&states=in-progress`)).json.result;
      expect(itc.type).toBe('inform_transaction_complete');
      expect(itc.header.expected_reply_list).toEqual([{ type: 'inform_transaction_complete', timeout: 30240 }]);
      // Read, it stays the site's pending work: listed again, and the transaction stays open.
      expect((await api('GET', `packets/${SITE.name}`)).json.result.map((p: any) => p.header.packet_rec_id)).toEqual([
        itc.header.packet_rec_id,
      ]);
      await central.transfer();
      expect(c.state).toBe('open');
      // Only an ITC answers it.
      const wrong = await api('POST', `packets/${SITE.name}`, {
        type: 'notify_project_inactivate',
        header: { in_reply_to: itc.header.packet_rec_id },
        body: {},
      });
      expect(wrong.status).toBe(400);
      expect(wrong.json.message).toContain('inform_transaction_complete is answered with inform_transaction_complete');
      // amieclient's reply: a header with only in_reply_to set (the rest null), the reference example's body.
      const answer = await api('POST', `packets/${SITE.name}`, {
        DATA_TYPE: 'Packet',
        type: 'inform_transaction_complete',
        header: {
          packet_rec_id: null,
          packet_id: null,
          transaction_id: null,
          trans_rec_id: null,
          in_reply_to: itc.header.packet_rec_id,
          outgoing_flag: null,
          transaction_state: null,
          packet_state: null,
          packet_timestamp: null,
          expected_reply_list: [{ type: 'inform_transaction_complete', timeout: 30240 }],
        },
        body: { StatusCode: 'Success', DetailCode: '1', Message: 'OK' },
      });
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
      expect(answer.json.result.header).toMatchObject({
        in_reply_to: itc.header.packet_rec_id,
        outgoing_flag: true,
        expected_reply_list: [],
      });
      expect((await api('GET', `packets/${SITE.name}`)).json.result).toEqual([]);
      await central.transfer();
      expect(c.state).toBe('completed');
      expect(c.failedChecks).toEqual([]);
    },
  );

  run('plays injected faults: an error status, malformed JSON, a reply accepted but its answer lost', async () => {
    await central.send('request_project_create', data.rpc(data.person()));
    sim.inject({ api: 'amie', method: 'GET', status: 503, body: { message: 'maintenance' } });
    const down = await api('GET', `packets/${SITE.name}`);
    expect(down).toEqual({ status: 503, json: { message: 'maintenance' } });
    sim.inject({ api: 'amie', method: 'GET', raw: '{"result": [' });
    const res = await fetch(new URL(`packets/${SITE.name}`, sim.amieUrl), {
      headers: { 'XA-SITE': SITE.name, 'XA-API-KEY': KEY },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('{"result": [');
    const [rpc] = (await api('GET', `packets/${SITE.name}`)).json.result;
    sim.inject({ api: 'amie', method: 'POST', afterHandling: true, status: 502, body: { message: 'bad gateway' } });
    expect((await api('POST', `packets/${SITE.name}`, npcFor(rpc))).status).toBe(502);
    // The reply was taken all the same: the server lists it, and refuses it a second time.
    expect((await api('GET', `packets/${SITE.name}?outgoing=true`)).json.result).toHaveLength(1);
    expect((await api('POST', `packets/${SITE.name}`, npcFor(rpc))).status).toBe(409);
    expect(sim.requests.filter((r) => r.method === 'POST').map((r) => r.status)).toEqual([502, 409]);
  });
});

describe('REST simulator: the Usage API', () => {
  let sim: RestSimulator;
  let api: ReturnType<typeof client>;
  beforeEach(async () => {
    sim = await startRestSimulator({ site: SITE, apiKey: KEY });
    api = client(sim);
  });
  afterEach(() => sim.stop());

  const job = (id: string, extra: Record<string, unknown> = {}) => ({
    Username: 'alice',
    LocalProjectID: 'p-abc123',
    LocalRecordID: id,
    Resource: SITE.resource,
    SubmitTime: '2024-03-01T10:00:00Z',
    StartTime: '2024-03-01T10:00:05Z',
    EndTime: '2024-03-01T11:00:05Z',
    Charge: 2.5,
    Attributes: { NodeCount: 1, CpuCoreCount: 4, Queue: 'gpu' },
    ...extra,
  });
  const usage = (method: string, path: string, body?: unknown) => api(method, path, body, sim.usageUrl);

  it('loads good records, refuses bad ones per record naming the field, and reports failed records and status', async () => {
    const r = await usage('POST', 'usage/', {
      UsageType: 'compute',
      Records: [
        job('1'),
        job('2', { Charge: 'lots', EndTime: 'soon' }),
        job('3', { Resource: 'elsewhere.example.org' }),
        job('4', { Username: '' }),
      ],
    });
    expect(r.status).toBe(200);
    expect(r.json.Message).toBe('1 of 4 compute record(s) loaded');
    expect(r.json.ValidationFailedRecords.map((f: any) => [f.LocalRecordID, f.Error])).toEqual([
      ['2', 'EndTime "soon" is not an ISO 8601 time; Charge "lots" is not a number'],
      ['3', `Resource "elsewhere.example.org" is not a resource of this site (${SITE.resource})`],
      ['4', 'Username is required'],
    ]);
    expect(r.json.ValidationFailedRecords[0].UsageType).toBe('Compute');

    // Sent again corrected, a record leaves the failed list; sent twice, it is loaded once.
    await usage('POST', 'usage/', { UsageType: 'compute', Records: [job('2'), job('1')] });
    const failed = await usage('GET', 'usage/failed');
    expect(failed.status).toBe(200);
    expect(failed.json.FailedRecords.map((f: any) => f.LocalRecordID)).toEqual(['3', '4']);
    const status = await usage('GET', 'usage/status');
    expect(status.json).toEqual([
      {
        Resource: SITE.resource,
        LoadedRecordCount: 2,
        FailedJobCount: 1,
        TotalCharge: 5,
        Errors: [
          {
            Error: 'Username is required',
            UsageType: 'Compute',
            Records: [expect.objectContaining({ LocalRecordID: '4', UsageType: 'Compute' })],
          },
        ],
      },
      {
        Resource: 'elsewhere.example.org',
        LoadedRecordCount: 0,
        FailedJobCount: 1,
        TotalCharge: 0,
        Errors: [expect.objectContaining({ Records: [expect.objectContaining({ LocalRecordID: '3' })] })],
      },
    ]);
    expect(sim.usage.accepted.map((x) => x.LocalRecordID)).toEqual(['2', '1']);
  });

  it('refuses bodies over 1024 KiB with 413, bad envelopes with 400, and other methods and paths with a message', async () => {
    const big = {
      UsageType: 'compute',
      Records: Array.from({ length: 30 }, (_, i) => job(String(i), { Attributes: { JobName: 'x'.repeat(40_000) } })),
    };
    const tooLarge = await usage('POST', 'usage/', big);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.json.error).toMatch(/larger than the 1024 KiB the Usage API accepts/);
    expect(sim.usage.received.at(-1)!.bytes).toBeGreaterThan(1024 * 1024);
    expect((await usage('POST', 'usage/', { UsageType: 'cpu', Records: [] })).json.error).toContain(
      'UsageType "cpu" is not one of compute, storage, adjustment',
    );
    expect((await usage('POST', 'usage/', { UsageType: 'compute' })).status).toBe(400);
    expect((await usage('POST', 'usage/', '{"UsageType": ')).json.error).toMatch(/^malformed JSON/);
    const get = await usage('GET', 'usage/');
    expect(get.status).toBe(405);
    expect(get.json.error).toContain('use POST');
    const nowhere = await usage('GET', 'usage/everything');
    expect(nowhere.status).toBe(404);
    expect(nowhere.json.error).toContain(
      'the Usage API has POST usage/, GET usage/failed, DELETE usage/failed/{ids} and GET usage/status',
    );
  });
});
