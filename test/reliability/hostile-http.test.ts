/**
 * Hostile HTTP answers against the real clients, sources and sinks: a fault server plays the
 * proxy or server that redirects elsewhere, rate-limits, answers a page with 200, streams without
 * end or never answers, in front of a working API (the fake AMIE REST API, the simulator's Usage
 * API). What must hold: the API key reaches only the configured origin; nothing is counted as
 * delivered that was not; a temporary refusal fails nothing on the server; memory stays bounded.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/index.js';
import { openPglite } from '../../src/db/index.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { DEFAULT_MAX_RESPONSE_BYTES, retryAfterMs } from '../../src/http.js';
import { RestSimulator } from '../../src/simulator/http.js';
import {
  AmieRestClient,
  AmieRestError,
  RestDeliveryError,
  RestSource,
  type AmieRestClientOptions,
} from '../../src/sources/index.js';
import { listUnreportedJobs } from '../../src/store/index.js';
import { UsageApiClient, UsageApiError } from '../../src/usage/api-client.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { UsageApiSink } from '../../src/usage/sinks/usage-api.js';
import { NacHandler, SITE, quietLog } from '../helpers/amie.js';
import { driverCases, databaseEachTest } from '../helpers/db.js';
import { FaultServer, on } from '../helpers/fault-server.js';
import { FakeAmieRest, racBody } from '../sources/fake-amie-rest.js';
import { computeRecord, restApiEachTest, startRestSimulator } from '../helpers/simulator.js';
import { sacctJob, sacctRecords } from '../helpers/sacct-lines.js';
import { amieInProcess } from '../helpers/cli.js';

const KEY = 'hostile-test-key-0123456789';

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error,
  );
}

/** A client of `api` that reaches it through `proxy`, quick to give up. */
function clientThrough(proxy: FaultServer, api: FakeAmieRest, over: Partial<AmieRestClientOptions> = {}) {
  return new AmieRestClient({
    url: proxy.in(api.url),
    site: api.site,
    apiKey: api.apiKey,
    timeoutMs: 2000,
    retries: 1,
    retryBaseMs: 5,
    ...over,
  });
}

describe('hostile HTTP answers to the clients', () => {
  let api: FakeAmieRest;
  let proxy: FaultServer;
  /** Another origin: whatever reaches it was sent somewhere it should not have been. */
  let elsewhere: FaultServer;
  beforeEach(async () => {
    api = await FakeAmieRest.start();
    proxy = await FaultServer.start({ upstream: api.url });
    elsewhere = await FaultServer.start();
    // Answers like the real API would, so a client that followed a redirect would believe it.
    elsewhere.on(on.get, { kind: 'json', json: { message: '0 packets', result: [] } }, Infinity);
    elsewhere.on(
      on.post,
      { kind: 'json', json: { Message: '1 of 1 compute record(s) loaded', ValidationFailedRecords: [] } },
      Infinity,
    );
  });
  afterEach(async () => {
    await Promise.all([proxy.close(), elsewhere.close(), api.close()]);
  });
  const restClient = (over: Partial<AmieRestClientOptions> = {}) => clientThrough(proxy, api, over);
  const usageClient = (over: Partial<ConstructorParameters<typeof UsageApiClient>[0]> = {}) =>
    new UsageApiClient({
      url: `${proxy.url}usage-api/`,
      site: SITE.name,
      apiKey: KEY,
      timeoutMs: 2000,
      maxRetries: 1,
      retryBaseMs: 5,
      ...over,
    });

  it('[12.2] a redirect to another origin is not followed: the API key never reaches it, the error names status and host', async () => {
    for (const status of [301, 302, 303, 307, 308] as const) {
      proxy.on(on.get, { kind: 'redirect', status, to: `${elsewhere.url}api/packets/EXAMPLE` });
      const err = await failure(restClient().listPackets());
      expect(err).toBeInstanceOf(AmieRestError);
      expect(err.message).toContain(
        `GET packets/EXAMPLE answered HTTP ${status}, a redirect to ${elsewhere.origin}, which is not followed`,
      );
      expect(err.message).not.toContain(api.apiKey);
    }
    // The Usage API POST too (307/308 would carry body and key along).
    for (const status of [301, 307, 308] as const) {
      proxy.on(on.post, { kind: 'redirect', status, to: `${elsewhere.url}usage/` });
      const err = await failure(usageClient().postCompute([computeRecord(1)]));
      expect(err).toBeInstanceOf(UsageApiError);
      expect(err.message).toContain(`answered HTTP ${status}, a redirect to ${elsewhere.origin}`);
    }
    expect(elsewhere.requests).toEqual([]);
    expect(elsewhere.keysSeen).toEqual([]);
  });

  it('[12.2] a plain http URL to a host that is not loopback is refused unless allowInsecureHttp says so', () => {
    const base = `site: { name: ${SITE.name}, resource: ${SITE.resource} }\n`;
    const problems = (text: string) => {
      try {
        parseConfig(`${base}${text}`, 'amie.yaml');
      } catch (err) {
        return (err as { problems: string[] }).problems.join('\n');
      }
      return '';
    };
    expect(problems('source: { kind: rest, url: "http://amie.example.org/api/", apiKeyEnv: K }')).toBe(
      'amie.yaml: source.url: http://amie.example.org is plain http: the API key would cross the network unencrypted; use https, or set source.allowInsecureHttp: true to accept that',
    );
    expect(
      problems('source: { kind: rest, url: "http://amie.example.org/api/", apiKeyEnv: K, allowInsecureHttp: true }'),
    ).toBe('');
    expect(problems('source: { kind: rest, url: "http://127.0.0.1:8080/api/", apiKeyEnv: K }')).toBe('');
    expect(problems('source: { kind: rest, url: "http://[::1]:8080/api/", apiKeyEnv: K }')).toBe('');
    expect(problems('source: { kind: rest, url: "https://amie.example.org/api/", apiKeyEnv: K }')).toBe('');
    expect(
      problems('usage: { sink: usage-api, usageApi: { url: "http://usage.example.org/", apiKeyEnv: K } }'),
    ).toMatch(
      /usage\.usageApi\.url: http:\/\/usage\.example\.org is plain http: .*set usage\.usageApi\.allowInsecureHttp: true/,
    );
    expect(
      problems(
        'usage: { sink: usage-api, usageApi: { url: "http://usage.example.org/", apiKeyEnv: K, allowInsecureHttp: true } }',
      ),
    ).toBe('');
    // The library refuses it too, for a site that builds the clients itself.
    expect(() => new AmieRestClient({ url: 'http://amie.example.org/api/', site: 'X', apiKey: KEY })).toThrow(
      /source\.allowInsecureHttp/,
    );
    expect(() => new UsageApiClient({ url: 'http://usage.example.org/', site: 'X', apiKey: KEY })).toThrow(
      /usage\.usageApi\.allowInsecureHttp/,
    );
    expect(
      () =>
        new AmieRestClient({ url: 'http://amie.example.org/api/', site: 'X', apiKey: KEY, allowInsecureHttp: true }),
    ).not.toThrow();
  });

  it('[12.4] a POST answer counts only when it names the packet created, in any of the shapes servers use', async () => {
    const { packetRecId } = api.addIncoming('request_account_create', racBody(1));
    const packet = { type: 'notify_account_create', header: { in_reply_to: packetRecId } } as never;
    const shapes: Array<[unknown, number]> = [
      [
        {
          message: 'notify_account_create received as packet_rec_id 9001',
          result: { DATA_TYPE: 'Packet', header: { packet_rec_id: 9001 } },
        },
        9001,
      ],
      [{ DATA_TYPE: 'Packet', type: 'notify_account_create', header: { packet_rec_id: 9002 } }, 9002],
      [{ packet_rec_id: '9003' }, 9003],
      [{ result: { packet_rec_id: 9004 } }, 9004],
    ];
    for (const [json, id] of shapes) {
      proxy.on(on.post, { kind: 'json', json });
      expect(await restClient().sendPacket(packet, { alreadySent: async () => undefined })).toEqual({
        packetRecId: id,
        alreadyThere: false,
      });
    }
    // An answer without the packet is believed only when the server shows the packet.
    for (const json of [{ message: 'ok' }, [], 'ok', null]) {
      proxy.on(on.post, { kind: 'json', json });
      const err = await failure(restClient().sendPacket(packet, { alreadySent: async () => undefined }));
      expect(err.message).toMatch(
        /^AMIE REST API answered POST packets\/EXAMPLE without naming the packet it created .*not counted as delivered$/,
      );
      proxy.on(on.post, { kind: 'json', json });
      expect(await restClient().sendPacket(packet, { alreadySent: async () => 7777 })).toEqual({
        packetRecId: 7777,
        alreadyThere: true,
      });
    }
    proxy.on(on.post, { kind: 'html', html: '<html><body>Welcome to the campus network</body></html>' });
    expect((await failure(restClient().sendPacket(packet, { alreadySent: async () => 7777 }))).message).toMatch(
      /with something that is not JSON \(HTTP 200\)/,
    );
  });

  it('[12.5] Retry-After is honoured (seconds or HTTP date); a wait longer than 30 s is not waited for', async () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs('Wed, 21 Oct 2026 07:28:30 GMT', Date.parse('Wed, 21 Oct 2026 07:28:00 GMT'))).toBe(30_000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT')).toBe(0);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();

    proxy.on(on.get, { kind: 'status', status: 429, retryAfter: '1', json: { message: 'slow down' } });
    const waits: number[] = [];
    const started = Date.now();
    const listing = await restClient({ onRetry: (i) => waits.push(i.waitMs) }).listPackets();
    expect(listing.packets).toEqual([]);
    expect(waits).toEqual([1000]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);

    const inAMinute = new Date(Date.now() + 60_000).toUTCString();
    proxy.on(
      on.get,
      { kind: 'status', status: 503, retryAfter: inAMinute, json: { message: 'maintenance' } },
      Infinity,
    );
    const quick = Date.now();
    const err = await failure(restClient({ retries: 5 }).listPackets());
    expect(err.message).toMatch(
      /GET packets\/EXAMPLE failed after 1 attempt: HTTP 503: maintenance \(the server asks to wait (59|60) s; not waiting longer than 30 s\)/,
    );
    expect(Date.now() - quick).toBeLessThan(1000);
  });

  it('[12.11] a body over maxResponseBytes is stopped with a clear error and memory stays bounded', async () => {
    // The default cap against a 100 MB listing: read up to 64 MiB, then dropped.
    proxy.on(on.get, { kind: 'large', bytes: 100 * 1024 * 1024 });
    let peak = 0;
    const base = process.memoryUsage().rss;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss - base)), 20);
    const err = await failure(restClient({ retries: 3, timeoutMs: 20_000 }).listPackets());
    clearInterval(sampler);
    expect(err).toBeInstanceOf(AmieRestError);
    expect(err.message).toBe(
      `AMIE REST API at ${proxy.in(api.url)}: GET packets/EXAMPLE answered HTTP 200 with a body larger than ${DEFAULT_MAX_RESPONSE_BYTES} bytes (maxResponseBytes); it was not read further`,
    );
    // Not retried, and the server was not read to the end.
    expect(proxy.requests).toHaveLength(1);
    expect(proxy.streamedBytes).toBeLessThan(DEFAULT_MAX_RESPONSE_BYTES + 16 * 1024 * 1024);
    expect(peak).toBeLessThan(400 * 1024 * 1024);

    // A configured cap; a declared Content-Length over it is refused before reading.
    proxy.streamedBytes = 0;
    proxy.on(on.get, { kind: 'large', bytes: 4 * 1024 * 1024, declare: true });
    expect((await failure(restClient({ maxResponseBytes: 1024 * 1024 }).listPackets())).message).toMatch(
      /larger than 1048576 bytes \(maxResponseBytes\)/,
    );
    // An endless body stops at the cap too, and so does a Usage API answer.
    proxy.on(on.get, { kind: 'endless' });
    expect((await failure(restClient({ maxResponseBytes: 1024 * 1024 }).listPackets())).message).toMatch(
      /larger than 1048576 bytes/,
    );
    proxy.on(on.post, { kind: 'endless' });
    const usageErr = await failure(usageClient({ maxResponseBytes: 1024 * 1024 }).postCompute([computeRecord(1)]));
    expect(usageErr).toBeInstanceOf(UsageApiError);
    expect(usageErr.message).toMatch(/larger than 1048576 bytes \(maxResponseBytes\)/);
    expect(proxy.streamedBytes).toBeLessThan(3 * 16 * 1024 * 1024);
  });

  it('[12.11] a server that answers forever (endless trickle, or headers then silence) is stopped by the timeout', async () => {
    for (const fault of [
      { kind: 'endless', trickleMs: 20 },
      { kind: 'hang', after: 'headers' },
      { kind: 'hang', after: 'nothing' },
    ] as const) {
      proxy.on(on.get, fault, 2);
      const started = Date.now();
      const err = await failure(restClient({ timeoutMs: 300, retries: 1 }).listPackets());
      expect(err.message).toBe(
        `AMIE REST API at ${proxy.in(api.url)}: GET packets/EXAMPLE failed after 2 attempts: no answer within 300 ms`,
      );
      expect(Date.now() - started).toBeLessThan(3000);
    }
    proxy.on(on.post, { kind: 'endless', trickleMs: 20 }, 2);
    expect((await failure(usageClient({ timeoutMs: 300 }).postCompute([computeRecord(1)]))).message).toMatch(
      /failed after 2 attempts: no answer within 300 ms$/,
    );
  });
});

describe.each(driverCases())('hostile HTTP answers to the REST source on $name', (driver) => {
  const t = databaseEachTest(driver);
  const rest = restApiEachTest(driver);
  let proxy: FaultServer;
  let elsewhere: FaultServer;
  beforeEach(async () => {
    if (!driver.available) return;
    proxy = await FaultServer.start({ upstream: rest.api.url });
    elsewhere = await FaultServer.start();
    elsewhere.on(
      on.any,
      { kind: 'json', json: { message: 'packet sent', result: { header: { packet_rec_id: 1 } } } },
      Infinity,
    );
  });
  afterEach(async () => {
    if (!driver.available) return;
    expect(rest.lines.join('')).not.toContain(rest.api.apiKey);
    await Promise.all([proxy.close(), elsewhere.close()]);
  });
  const run = it.skipIf(!driver.available);

  const source = (client: Partial<AmieRestClientOptions> = {}) =>
    new RestSource(
      t.db,
      clientThrough(proxy, rest.api, client),
      rest.log,
      // Every unsent reply is a leftover to send at the next run's start, as after a crash.
      { outboxGraceMs: 0 },
    );
  const process = (client: Partial<AmieRestClientOptions> = {}) =>
    new Dispatcher(
      source(client),
      new NacHandler({ db: t.db, log: rest.log, site: SITE, options: {}, dryRun: false }),
      rest.log,
    ).runOnce();
  const outbox = async () =>
    (
      await t.db.query<{ status: string; r: number | null }>(
        'SELECT status, reply_packet_rec_id::int AS r FROM amie_toolkit.rest_outbox',
      )
    ).rows;
  const failedOnServer = () => rest.api.requests.filter((r) => r.method === 'PUT' && r.path.includes('/state/failed'));

  run(
    '[12.4] a reply stays in the outbox after a proxy page, a redirect, a 301 on the POST or an answer naming no packet; then it is sent once',
    async () => {
      const { packetRecId, transRecId } = rest.api.addIncoming('request_account_create', racBody(1));
      const attempts: Array<[string, Parameters<FaultServer['on']>[1]]> = [
        [
          '200 HTML',
          {
            kind: 'html',
            html: '<html><head><title>Sign in</title></head><body>Please rest.log in to continue</body></html>',
          },
        ],
        // fetch would have turned this POST into a GET of the listing and taken its 200 for a delivery.
        ['301 on the POST', { kind: 'redirect', status: 301, to: `${rest.api.url}packets/EXAMPLE` }],
        ['307 to another origin', { kind: 'redirect', status: 307, to: `${elsewhere.url}api/packets/EXAMPLE` }],
        ['200 JSON naming no packet', { kind: 'json', json: { message: 'OK' } }],
      ];
      for (const [what, fault] of attempts) {
        proxy.on(on.postTo('/packets/'), fault);
        const err = await failure(process());
        expect(err, what).toBeInstanceOf(RestDeliveryError);
        expect(err.message, what).toMatch(
          new RegExp(
            `^could not send the notify_account_create answering packet ${packetRecId}: .*; it is kept in the outbox`,
          ),
        );
        expect(await outbox(), what).toEqual([{ status: 'unsent', r: null }]);
        expect(rest.api.repliesTo(packetRecId), what).toEqual([]);
      }
      expect(elsewhere.requests).toEqual([]);
      expect(failedOnServer()).toEqual([]);
      expect(rest.api.transactions.get(transRecId)!.state).toBe('in-progress');

      // The server takes the POST but its answer names nothing: the transaction's packets show the reply.
      proxy.on(on.postTo('/packets/'), { kind: 'forward-then-json', json: { message: 'OK' } });
      const summary = await process();
      expect(summary.taken).toBe(0);
      const [reply] = rest.api.repliesTo(packetRecId);
      expect(await outbox()).toEqual([{ status: 'sent', r: reply!.header.packet_rec_id }]);
      expect(rest.lines.join('')).toContain(
        'the reply had already reached the server; marked sent without sending it again',
      );
      expect(rest.api.posts).toHaveLength(1);
    },
  );

  run(
    '[12.5] 429 and 408 on the POST, retries run out: the run stops, the reply waits, nothing is failed on the server',
    async () => {
      const { packetRecId, transRecId } = rest.api.addIncoming('request_account_create', racBody(1));
      proxy.on(
        on.postTo('/packets/'),
        { kind: 'status', status: 429, retryAfter: '1', json: { message: 'rate limit exceeded' } },
        2,
      );
      const started = Date.now();
      const err = await failure(process());
      expect(Date.now() - started).toBeGreaterThanOrEqual(990); // Retry-After, not the 5 ms backoff
      expect(err).toBeInstanceOf(RestDeliveryError);
      expect(err.message).toBe(
        `could not send the notify_account_create answering packet ${packetRecId}: AMIE REST API at ${proxy.in(rest.api.url)}: ` +
          'POST packets/EXAMPLE failed after 2 attempts: HTTP 429: rate limit exceeded; it is kept in the outbox and sent at the start of the next run',
      );
      proxy.on(on.postTo('/packets/'), { kind: 'status', status: 408, json: { message: 'request timeout' } }, 2);
      expect((await failure(process())).message).toMatch(
        /failed after 2 attempts: HTTP 408: request timeout; it is kept in the outbox/,
      );
      // Nothing failed, refused or answered in the meantime; a 429 is not even looked up before retrying.
      expect(failedOnServer()).toEqual([]);
      expect(rest.api.transactions.get(transRecId)!.state).toBe('in-progress');
      expect(await outbox()).toEqual([{ status: 'unsent', r: null }]);
      expect(
        (await t.db.query(`SELECT count(*)::int AS n FROM amie_toolkit.audit WHERE outcome = 'refused'`)).rows,
      ).toEqual([{ n: 0 }]);

      // Once the server takes requests again, the reply goes, once.
      await process();
      expect(rest.api.repliesTo(packetRecId)).toHaveLength(1);
      expect(rest.api.posts).toHaveLength(1);
      expect((await outbox())[0]!.status).toBe('sent');
    },
  );

  run('[12.5] a 4xx on the check-before-resend GET fails nothing; only a 400/409/422 to the POST does', async () => {
    const { packetRecId, transRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    proxy.on(on.postTo('/packets/'), { kind: 'status', status: 503, json: { message: 'maintenance' } }, 2);
    await failure(process());
    expect(await outbox()).toEqual([{ status: 'unsent', r: null }]);
    // The leftover is looked for first; that GET is refused.
    for (const status of [404, 400, 429]) {
      // (A 429 is retried once, so it answers two requests.)
      proxy.on(
        on.getOf('/transactions/'),
        { kind: 'status', status, json: { message: `lookup refused (${status})` } },
        status === 429 ? 2 : 1,
      );
      const err = await failure(process());
      expect(err).toBeInstanceOf(RestDeliveryError);
      expect(err.message).toContain(`GET transactions/EXAMPLE/${transRecId}/packets`);
      expect(failedOnServer()).toEqual([]);
      expect(await outbox()).toEqual([{ status: 'unsent', r: null }]);
    }
    // A 404 on the POST is no refusal of this reply either.
    proxy.on(on.postTo('/packets/'), { kind: 'status', status: 404, json: { message: 'no such endpoint' } });
    await failure(process());
    expect(failedOnServer()).toEqual([]);
    // A 422 answering the POST itself is.
    proxy.on(on.postTo('/packets/'), {
      kind: 'status',
      status: 422,
      json: { message: 'UserRemoteSiteLogin: not valid' },
    });
    await process();
    expect(failedOnServer()).toHaveLength(1);
    expect(rest.api.transactions.get(transRecId)!.state).toBe('failed');
    expect(await outbox()).toEqual([{ status: 'refused', r: null }]);
    expect(rest.api.repliesTo(packetRecId)).toEqual([]);
  });
});

describe.each(driverCases())('hostile HTTP answers to the usage-api sink on $name', (driver) => {
  const t = databaseEachTest(driver);
  let sim: RestSimulator;
  let proxy: FaultServer;
  let elsewhere: FaultServer;
  beforeAll(async () => {
    if (!driver.available) return;
    sim = await startRestSimulator({ site: SITE, apiKey: KEY });
  });
  afterAll(async () => {
    if (driver.available) await sim.stop();
  });
  beforeEach(async () => {
    if (!driver.available) return;
    sim.usage.reset();
    proxy = await FaultServer.start({ upstream: sim.usageUrl });
    elsewhere = await FaultServer.start();
    elsewhere.on(on.any, { kind: 'json', json: { Message: 'loaded', ValidationFailedRecords: [] } }, Infinity);
  });
  afterEach(async () => {
    if (!driver.available) return;
    await Promise.all([proxy.close(), elsewhere.close()]);
  });
  const run = it.skipIf(!driver.available);

  const usage = UsageConfigSchema.parse({
    sink: 'usage-api',
    projects: { abc123: 'p-abc123' },
    usageApi: { url: 'https://unused.example.org/', apiKeyEnv: 'K' },
  });
  const window = { since: new Date('2024-03-01T00:00:00Z'), until: new Date('2024-03-02T00:00:00Z') };
  const report = async (ids: string[]) => {
    const client = new UsageApiClient({
      url: proxy.in(sim.usageUrl),
      site: SITE.name,
      apiKey: KEY,
      timeoutMs: 2000,
      maxRetries: 1,
      retryBaseMs: 5,
    });
    return reportUsage(t.db, {
      site: SITE,
      usage,
      ...window,
      records: await sacctRecords(ids.map((id) => sacctJob(id))),
      sinkImpl: new UsageApiSink(t.db, client, SITE, quietLog),
      log: quietLog,
    });
  };
  const pending = async () => (await listUnreportedJobs(t.db, { status: 'pending' })).map((p) => p.jobId);

  run(
    '[12.3] records stay pending after a proxy page, a 301 on the POST, an odd 200 or a redirect elsewhere; then they are reported',
    async () => {
      const ids = ['7001', '7002'];
      const attempts: Array<[string, Parameters<FaultServer['on']>[1]]> = [
        ['200 HTML', { kind: 'html', html: '<!DOCTYPE html><html><body>Access denied by policy</body></html>' }],
        // fetch would have followed it as a GET and taken the page's 200 for "accepted".
        ['301 on the POST', { kind: 'redirect', status: 301, to: '/landing' }],
        ['307 to another origin', { kind: 'redirect', status: 307, to: `${elsewhere.url}usage/` }],
        ['200 empty', { kind: 'json', json: null }],
        ['200 array', { kind: 'json', json: [] }],
        ['401', { kind: 'status', status: 401, json: { error: 'XA-API-KEY not valid' } }],
      ];
      proxy.on(on.path('/landing'), { kind: 'html', html: '<html><body>Usage portal</body></html>' }, Infinity);
      for (const [what, fault] of attempts) {
        proxy.on(on.postTo('/usage/'), fault);
        const err = await failure(report(ids));
        expect(err, what).toBeInstanceOf(UsageApiError);
        expect(await pending(), what).toEqual(ids);
        expect(await listUnreportedJobs(t.db, { status: 'failed' }), what).toEqual([]);
      }
      expect(elsewhere.requests).toEqual([]);
      expect(sim.usage.accepted).toEqual([]);
      // The server as it should be: the same records go through and are reported, once.
      const s = await report(ids);
      expect(s).toMatchObject({ reported: 2, failed: 0 });
      expect(await listUnreportedJobs(t.db)).toEqual([]);
      // LocalRecordID is cluster:JobIDRaw:submit epoch (unique per run, stable across resends).
      const submit = Date.UTC(2024, 2, 1, 10) / 1000;
      expect(sim.usage.accepted.map((r) => r.LocalRecordID)).toEqual(ids.map((id) => `delta:${id}:${submit}`));
    },
  );
});

describe('amie process against a rate-limited REST API', () => {
  let dir: string;
  let api: FakeAmieRest;
  let proxy: FaultServer;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amie-hostile-'));
    api = await FakeAmieRest.start();
    proxy = await FaultServer.start({ upstream: api.url });
  });
  afterEach(async () => {
    await Promise.all([proxy.close(), api.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function amie(args: string[]) {
    const r = await amieInProcess(args, {
      env: { ...globalThis.process.env, AMIE_DATABASE_URL: '', AMIE_HOSTILE_KEY: api.apiKey },
    });
    return { code: r.code, out: r.stdout + r.stderr };
  }

  it('[12.5] when the retries of a 429 run out the run exits 1, the reply stays unsent and nothing is failed on the server', async () => {
    const config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      [
        `site: { name: ${SITE.name}, resource: ${SITE.resource} }`,
        `database: { path: "${join(dir, 'db')}" }`,
        `handler: "${resolve('test/fixtures/handlers/account-handler.js')}"`,
        `source: { kind: rest, url: "${proxy.in(api.url)}", apiKeyEnv: AMIE_HOSTILE_KEY, timeoutMs: 2000, retries: 1 }`,
      ].join('\n'),
    );
    expect((await amie(['-c', config, 'db', 'init'])).code).toBe(0);
    const { packetRecId, transRecId } = api.addIncoming('request_account_create', racBody(1));
    proxy.on(
      on.postTo('/packets/'),
      { kind: 'status', status: 429, retryAfter: '1', json: { message: 'rate limit exceeded' } },
      Infinity,
    );
    const r = await amie(['-c', config, 'process']);
    expect(r.out).toContain(
      'HTTP 429: rate limit exceeded; it is kept in the outbox and sent at the start of the next run',
    );
    expect(r.code).toBe(1);
    expect(r.out).not.toContain(api.apiKey);
    expect(api.requests.filter((x) => x.method === 'PUT' && x.path.includes('/state/failed'))).toEqual([]);
    expect(api.transactions.get(transRecId)!.state).toBe('in-progress');
    expect(api.repliesTo(packetRecId)).toEqual([]);
    const db = await openPglite({ path: join(dir, 'db') });
    try {
      expect((await db.query(`SELECT status FROM amie_toolkit.rest_outbox`)).rows).toEqual([{ status: 'unsent' }]);
    } finally {
      await db.close();
    }
  });
});
