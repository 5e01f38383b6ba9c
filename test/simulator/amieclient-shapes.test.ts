/**
 * What XSEDE's Python amieclient shows of the real ACCESS services, held against the simulator,
 * the REST source and the Usage API client: the shapes of answers, what a reply may leave to the
 * server, central's ITC answered over REST, failed usage records with ids that can be cleared.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/index.js';
import { AmieHandler, Dispatcher, type HandlerContext } from '../../src/dispatch/index.js';
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
