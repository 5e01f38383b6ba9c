import { createServer } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AmieRestClient, AmieRestError, type AmieRestClientOptions } from '../../src/sources/index.js';
import { FakeAmieRest, faults, isList, isPost, racBody } from './fake-amie-rest.js';

describe('AMIE REST API client', () => {
  let api: FakeAmieRest;
  let retries: string[];
  const client = (over: Partial<AmieRestClientOptions> = {}) =>
    new AmieRestClient({
      url: api.url,
      site: api.site,
      apiKey: api.apiKey,
      timeoutMs: 2000,
      retries: 2,
      retryBaseMs: 5,
      onRetry: (i) => retries.push(`${i.request} #${i.attempt}: ${i.reason}`),
      ...over,
    });
  beforeEach(async () => {
    api = await FakeAmieRest.start();
    retries = [];
  });
  afterEach(async () => {
    await api.close();
  });

  /** The error a call ends with; fails the test if it succeeds. */
  async function failure(p: Promise<unknown>): Promise<AmieRestError> {
    try {
      await p;
    } catch (err) {
      expect(err).toBeInstanceOf(AmieRestError);
      expect((err as Error).message).not.toContain(api.apiKey);
      return err as AmieRestError;
    }
    throw new Error('expected the call to fail');
  }

  it('sends XA-SITE and XA-API-KEY, and the filters as the query', async () => {
    const { packetRecId } = api.addIncoming('request_account_create', racBody(1));
    const listing = await client().listPackets({
      incoming: true,
      states: ['in-progress'],
      transactionStates: ['in-progress'],
      transRecIds: [7, 8],
    });
    expect(listing.packets.map((p) => p.packetRecId)).toEqual([packetRecId]);
    expect(listing.malformed).toEqual([]);
    const [req] = api.requests;
    expect(req!.headers['xa-site']).toBe('EXAMPLE');
    expect(req!.headers['xa-api-key']).toBe(api.apiKey);
    expect(Object.fromEntries(req!.query)).toEqual({
      incoming: 'true',
      states: 'in-progress',
      transaction_state: 'in-progress',
      trans_rec_id: '7,8',
    });
  });

  it('a 401 carries the server message, is not retried, and never shows the key', async () => {
    const err = await failure(client({ apiKey: 'wrong-key' }).listPackets({ incoming: true }));
    expect(err.message).toBe(
      'AMIE REST API refused GET packets/EXAMPLE: 401 Unauthorized: XA-SITE/XA-API-KEY not valid for site EXAMPLE',
    );
    expect(err).toMatchObject({
      status: 401,
      refused: true,
      serverMessage: 'XA-SITE/XA-API-KEY not valid for site EXAMPLE',
    });
    expect(err.message).not.toContain('wrong-key');
    expect(api.requests).toHaveLength(1);
  });

  it('retries a 500 and succeeds', async () => {
    api.faults.push(faults.status(isList, 500, { message: 'database is restarting' }));
    const listing = await client().listPackets();
    expect(listing.packets).toEqual([]);
    expect(api.requests).toHaveLength(2);
    expect(retries).toEqual(['GET packets/EXAMPLE #1: HTTP 500: database is restarting']);
  });

  it('gives up after the configured retries with what the server said last', async () => {
    for (let i = 0; i < 3; i++) api.faults.push(faults.status(isList, 503, { message: 'maintenance' }));
    const err = await failure(client().listPackets());
    expect(err.message).toBe(
      `AMIE REST API at ${api.url}: GET packets/EXAMPLE failed after 3 attempts: HTTP 503: maintenance`,
    );
    expect(err.refused).toBe(false);
    expect(api.requests).toHaveLength(3);
  });

  it('times out a call that gets no answer, and retries it', async () => {
    api.faults.push(faults.hang(isList));
    const listing = await client({ timeoutMs: 300 }).listPackets();
    expect(listing.packets).toEqual([]);
    expect(retries).toEqual(['GET packets/EXAMPLE #1: no answer within 300 ms']);
    api.faults.push(faults.hang(isList), faults.hang(isList));
    const err = await failure(client({ timeoutMs: 200, retries: 1 }).listPackets());
    expect(err.message).toMatch(/GET packets\/EXAMPLE failed after 2 attempts: no answer within 200 ms$/);
  });

  it('says so when the server cannot be reached at all', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const err = await failure(client({ url: `http://127.0.0.1:${port}/api/`, retries: 1 }).listPackets());
    expect(err.message).toMatch(
      new RegExp(
        `^AMIE REST API at http://127.0.0.1:${port}/api/: GET packets/EXAMPLE failed after 2 attempts: fetch failed \\(.*ECONNREFUSED`,
      ),
    );
  });

  it('malformed answers: HTML instead of JSON, JSON of the wrong shape, one bad packet among good ones', async () => {
    api.faults.push(faults.text(isList, 200, '<html><body>Gateway login</body></html>'));
    let err = await failure(client().listPackets());
    expect(err.message).toBe(
      'AMIE REST API answered GET packets/EXAMPLE with something that is not JSON (HTTP 200): "<html><body>Gateway login</body></html>"',
    );
    api.faults.push(faults.status(isList, 200, { message: 'ok', packets: [] }));
    err = await failure(client().listPackets());
    expect(err.message).toMatch(
      /^AMIE REST API answered GET packets\/EXAMPLE: expected \{"message": \.\.\., "result": \[packet, \.\.\.\]\}, got an object with keys message, packets$/,
    );
    const good = api.addIncoming('request_account_create', racBody(1));
    const bad = api.addIncoming('request_account_create', racBody(2), { header: { trans_rec_id: 'seven' } });
    const listing = await client().listPackets();
    expect(listing.packets.map((p) => p.packetRecId)).toEqual([good.packetRecId]);
    expect(listing.malformed.map((e) => e.message)).toEqual([
      `AMIE REST packet ${bad.packetRecId} (request_account_create): header.trans_rec_id: expected a whole number, got "seven"`,
    ]);
  });

  it('a POST whose fate is unknown is looked for before it is sent again', async () => {
    const { packetRecId, transRecId } = api.addIncoming('request_user_modify', {
      ActionType: 'delete',
      PersonID: 'u-zoe',
      DnList: ['/CN=x'],
    });
    const packet = {
      DATA_TYPE: 'Packet' as const,
      type: 'inform_transaction_complete',
      type_id: 3,
      header: { in_reply_to: packetRecId, trans_rec_id: transRecId },
      body: { StatusCode: 'Success', DetailCode: '1', Message: 'done' },
    };
    const c = client();
    const lookFor = async () =>
      (await c.transactionPackets(transRecId)).packets.find((p) => p.outgoing && p.inReplyTo === packetRecId)
        ?.packetRecId;
    // The server takes the POST, then fails before answering.
    api.faults.push(faults.acceptThen(isPost, 'error'));
    const sent = await c.sendPacket(packet, { alreadySent: lookFor });
    expect(sent.alreadyThere).toBe(true);
    expect(sent.packetRecId).toBe(api.repliesTo(packetRecId)[0]!.header.packet_rec_id);
    expect(api.posts).toHaveLength(1);
    expect(api.repliesTo(packetRecId)).toHaveLength(1);
    // A plain 500 that stored nothing is sent again, once.
    const other = api.addIncoming('request_user_modify', { ActionType: 'add', PersonID: 'u-zoe', DnList: ['/CN=y'] });
    api.faults.push(faults.status(isPost, 500, { message: 'try again' }));
    const again = await c.sendPacket(
      { ...packet, header: { in_reply_to: other.packetRecId, trans_rec_id: other.transRecId } },
      {
        alreadySent: async () =>
          (await c.transactionPackets(other.transRecId)).packets.find((p) => p.outgoing)?.packetRecId,
      },
    );
    expect(again).toMatchObject({
      alreadyThere: false,
      packetRecId: api.repliesTo(other.packetRecId)[0]!.header.packet_rec_id,
    });
    expect(api.posts).toHaveLength(3);
    expect(api.repliesTo(other.packetRecId)).toHaveLength(1);
  });

  it('client_state, client_json and failing a transaction use their endpoints', async () => {
    const { packetRecId, transRecId } = api.addIncoming('request_account_create', racBody(1));
    const c = client();
    await c.setClientState(packetRecId, 'deferred');
    expect(api.packets.get(packetRecId)!.header.client_state).toBe('deferred');
    await c.clearClientState(packetRecId);
    expect(api.packets.get(packetRecId)!.header.client_state).toBeNull();
    await c.failTransaction(transRecId);
    expect(api.transactions.get(transRecId)!.state).toBe('failed');
    const err = await failure(c.failTransaction(424242));
    expect(err.message).toBe(
      'AMIE REST API refused PUT transactions/EXAMPLE/424242/state/failed: 404 Not Found: no transaction 424242',
    );
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `PUT /packets/EXAMPLE/${packetRecId}/client_state/deferred`,
      `DELETE /packets/EXAMPLE/${packetRecId}/client_state`,
      `PUT /transactions/EXAMPLE/${transRecId}/state/failed`,
      'PUT /transactions/EXAMPLE/424242/state/failed',
    ]);
  });
});
