import { afterEach, describe, expect, it } from 'vitest';
import { openPg, type Database } from '../../src/db/index.js';
import {
  AmieHandler,
  Dispatcher,
  defer,
  exitCodeFor,
  ignore,
  type DispatchOptions,
  type HandlerResult,
  type IncomingPacket,
  type PacketContext,
} from '../../src/dispatch/index.js';
import {
  AmieRestClient,
  AmieRestError,
  RestDeliveryError,
  RestSource,
  type AmieRestClientOptions,
  type RestSourceOptions,
} from '../../src/sources/index.js';
import { driverCases, databaseEachTest } from '../helpers/db.js';
import { SITE, nacFor } from '../helpers/amie.js';
import { faults, isPost, racBody } from './fake-amie-rest.js';
import { restApiEachTest } from '../helpers/simulator.js';

/** Answers RACs and DPCs the way a site would, and counts what it was asked. */
class SiteHandler extends AmieHandler {
  calls = 0;
  resources: Array<string | undefined> = [];
  override async request_account_create(
    p: IncomingPacket<'request_account_create'>,
    _ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_create'>> {
    this.calls++;
    return nacFor(p.packetRecId);
  }
  override async data_project_create(p: IncomingPacket<'data_project_create'>) {
    this.calls++;
    this.resources.push(p.resource);
  }
}

function handlerWith(fn: (p: IncomingPacket<'request_account_create'>, ctx: PacketContext) => Promise<unknown>) {
  return class extends SiteHandler {
    override async request_account_create(p: IncomingPacket<'request_account_create'>, ctx: PacketContext) {
      this.calls++;
      return (await fn(p, ctx)) as HandlerResult<'notify_account_create'>;
    }
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(driverCases())('REST source on $name', (driver) => {
  const t = databaseEachTest(driver);
  const rest = restApiEachTest(driver);
  afterEach(() => {
    // Whatever happened in the test, the API key never reached the log.
    if (driver.available) expect(rest.lines.join('')).not.toContain(rest.api.apiKey);
  });
  const run = it.skipIf(!driver.available);

  const clientFor = (over: Partial<AmieRestClientOptions> = {}) =>
    new AmieRestClient({
      url: rest.api.url,
      site: rest.api.site,
      apiKey: rest.api.apiKey,
      timeoutMs: 1000,
      retries: 2,
      retryBaseMs: 5,
      onRetry: (i) =>
        rest.log.warn(
          { request: i.request, attempt: i.attempt, reason: i.reason },
          'AMIE REST API call failed; retrying',
        ),
      ...over,
    });
  const sourceFor = (db: Database = t.db, opts: RestSourceOptions = {}, client: Partial<AmieRestClientOptions> = {}) =>
    new RestSource(db, clientFor(client), rest.log, opts);
  const context = (db: Database) => ({ db, log: rest.log, site: SITE, options: {}, dryRun: false });
  const process = (
    source: RestSource,
    handler: AmieHandler = new SiteHandler(context(t.db)),
    opts: DispatchOptions = {},
  ) => new Dispatcher(source, handler, rest.log, opts).runOnce();
  const rows = async (sql: string, params: unknown[] = []) =>
    (await t.db.query<Record<string, unknown>>(sql, params)).rows;

  run('answers a real-looking RAC: one NAC POSTed with in_reply_to, the audit and outbox kept locally', async () => {
    const { packetRecId, transRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    const handler = new SiteHandler(context(t.db));
    const summary = await process(sourceFor(), handler);
    expect(summary).toMatchObject({ taken: 1, answered: 1 });
    expect(exitCodeFor(summary)).toBe(0);
    const [reply] = rest.api.repliesTo(packetRecId);
    expect(rest.api.posts).toHaveLength(1);
    expect(rest.api.posts[0]!.body).toMatchObject({
      type: 'notify_account_create',
      type_id: 6,
      header: {
        in_reply_to: packetRecId,
        trans_rec_id: transRecId,
        expected_reply_list: [{ type: 'data_account_create', timeout: 30240 }],
      },
    });
    // Tags the site may take over from the RAC were filled in; lists stay lists.
    expect(reply!.body).toMatchObject({
      UserPersonID: `u-${packetRecId}`,
      UserRemoteSiteLogin: `zoe${packetRecId}`,
      UserFirstName: 'Zoë1',
      UserLastName: "O'Neil-Smith",
      ResourceList: ['cluster.example.org'],
    });
    const replyId = reply!.header.packet_rec_id;
    expect(summary.results[0]).toMatchObject({
      packetRecId,
      outcome: 'reply',
      replyType: 'notify_account_create',
      replyPacketRecId: replyId,
    });
    expect(
      await rows(
        `SELECT outcome, reply_type, reply_packet_rec_id::float8 AS reply_packet_rec_id FROM amie_toolkit.audit WHERE source = 'rest' AND packet_rec_id = $1`,
        [packetRecId],
      ),
    ).toEqual([{ outcome: 'reply', reply_type: 'notify_account_create', reply_packet_rec_id: replyId }]);
    expect(await rows('SELECT status, reply_packet_rec_id::int AS r FROM amie_toolkit.rest_outbox')).toEqual([
      { status: 'sent', r: replyId },
    ]);
    expect(await rows('SELECT state FROM amie_toolkit.rest_packets')).toEqual([{ state: 'completed' }]);
    // Nothing is pending any more.
    expect(await process(sourceFor(), handler)).toMatchObject({ taken: 0 });
    expect(rest.api.posts).toHaveLength(1);
  });

  run('a packet the server still lists after its reply is not handled again', async () => {
    rest.api.lagging = true;
    const { packetRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    const handler = new SiteHandler(context(t.db));
    await process(sourceFor(), handler);
    const again = await process(sourceFor(), handler);
    expect(again.taken).toBe(0);
    expect(handler.calls).toBe(1);
    expect(rest.api.posts).toHaveLength(1);
    expect(rest.api.repliesTo(packetRecId)).toHaveLength(1);
  });

  run('a DPC gets its resource from the RPC, fetched from the transaction when never seen here', async () => {
    const rpc = rest.api.addIncoming(
      'request_project_create',
      { ResourceList: ['cluster.example.org'], GrantNumber: 'TG-1' },
      { header: { packet_state: 'completed' } },
    );
    const dpc = rest.api.addIncoming(
      'data_project_create',
      { PersonID: 'u-1', ProjectID: 'p-1', DnList: ['/CN=x'] },
      { transRecId: rpc.transRecId },
    );
    const handler = new SiteHandler(context(t.db));
    const summary = await process(sourceFor(), handler);
    expect(summary).toMatchObject({ answered: 1 });
    expect(handler.resources).toEqual(['cluster.example.org']);
    expect(
      rest.api.requests.some((r) => r.method === 'GET' && r.path === `/transactions/EXAMPLE/${rpc.transRecId}/packets`),
    ).toBe(true);
    expect(rest.api.repliesTo(dpc.packetRecId).map((p) => [p.type, p.body.StatusCode])).toEqual([
      ['inform_transaction_complete', 'Success'],
    ]);
    expect(rest.api.transactions.get(rpc.transRecId)!.state).toBe('completed');
    expect(await rows('SELECT packet_rec_id::int AS id, state FROM amie_toolkit.rest_packets ORDER BY 1')).toEqual([
      { id: rpc.packetRecId, state: 'context' },
      { id: dpc.packetRecId, state: 'completed' },
    ]);
  });

  run('an invalid packet is answered with a failure ITC naming the problem', async () => {
    const { packetRecId, transRecId } = rest.api.addIncoming(
      'request_account_create',
      racBody(1, { UserLastName: undefined, ResourceList: [SITE.resource, 'b'] }),
    );
    const summary = await process(sourceFor());
    expect(summary).toMatchObject({ invalid: 1 });
    const [itc] = rest.api.repliesTo(packetRecId);
    expect(itc!.type).toBe('inform_transaction_complete');
    expect(itc!.body).toMatchObject({ StatusCode: 'Failure', DetailCode: '2' });
    expect(itc!.body.Message).toMatch(/UserLastName: required tag is missing/);
    expect(itc!.body.Message).toMatch(/ResourceList/);
    expect(rest.api.transactions.get(transRecId)!.state).toBe('failed');
  });

  run('a 500 on the POST is retried: one reply', async () => {
    const { packetRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    rest.api.faults.push(faults.status(isPost, 500, { message: 'database is restarting' }));
    const summary = await process(sourceFor());
    expect(summary.answered).toBe(1);
    expect(rest.api.posts).toHaveLength(2);
    expect(rest.api.repliesTo(packetRecId)).toHaveLength(1);
    expect(rest.lines.join('')).toContain('HTTP 500: database is restarting');
  });

  run('a POST the server took but did not confirm (500, or no answer) is found there, not sent again', async () => {
    const a = rest.api.addIncoming('request_account_create', racBody(1));
    const b = rest.api.addIncoming('request_account_create', racBody(2));
    rest.api.faults.push(faults.acceptThen(isPost, 'error'), faults.acceptThen(isPost, 'hang'));
    const summary = await process(sourceFor(t.db, {}, { timeoutMs: 300 }));
    expect(summary.answered).toBe(2);
    expect(rest.api.posts).toHaveLength(2);
    expect(rest.api.repliesTo(a.packetRecId)).toHaveLength(1);
    expect(rest.api.repliesTo(b.packetRecId)).toHaveLength(1);
    const sent = await rows(
      'SELECT in_reply_to::int AS id, status, reply_packet_rec_id::int AS r FROM amie_toolkit.rest_outbox ORDER BY 1',
    );
    expect(sent).toEqual([
      { id: a.packetRecId, status: 'sent', r: rest.api.repliesTo(a.packetRecId)[0]!.header.packet_rec_id },
      { id: b.packetRecId, status: 'sent', r: rest.api.repliesTo(b.packetRecId)[0]!.header.packet_rec_id },
    ]);
  });

  run(
    'the server down for POSTs: the run stops with a clear error, the replies wait, the next run sends each once',
    async () => {
      const a = rest.api.addIncoming('request_account_create', racBody(1));
      const b = rest.api.addIncoming('request_account_create', racBody(2));
      for (let i = 0; i < 3; i++) rest.api.faults.push(faults.status(isPost, 503, { message: 'maintenance' }));
      const handler = new SiteHandler(context(t.db));
      const err = await process(sourceFor(), handler).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RestDeliveryError);
      expect((err as Error).message).toBe(
        `could not send the notify_account_create answering packet ${a.packetRecId}: ` +
          `AMIE REST API at ${rest.api.url}: POST packets/EXAMPLE failed after 3 attempts: HTTP 503: maintenance; ` +
          'it and 1 other reply are kept in the outbox and sent at the start of the next run',
      );
      expect(rest.api.repliesTo(a.packetRecId)).toHaveLength(0);
      expect(await rows(`SELECT count(*)::int AS n FROM amie_toolkit.rest_outbox WHERE status = 'unsent'`)).toEqual([
        { n: 2 },
      ]);
      // Both packets were handled and committed; the next run only sends (on a server, once the replies are no longer fresh).
      const next = await process(sourceFor(t.db, { outboxGraceMs: 0 }), handler);
      expect(next.taken).toBe(0);
      expect(handler.calls).toBe(2);
      expect(rest.api.repliesTo(a.packetRecId)).toHaveLength(1);
      expect(rest.api.repliesTo(b.packetRecId)).toHaveLength(1);
      expect(rest.api.posts).toHaveLength(5);
      expect(await rows(`SELECT status FROM amie_toolkit.rest_outbox`)).toEqual([
        { status: 'sent' },
        { status: 'sent' },
      ]);
      expect(
        await rows('SELECT count(*)::int AS n FROM amie_toolkit.audit WHERE reply_packet_rec_id IS NOT NULL'),
      ).toEqual([{ n: 2 }]);
    },
  );

  run('a reply the server refuses fails the transaction there, and counts as a failure', async () => {
    const { packetRecId, transRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    rest.api.faults.push(
      faults.status(isPost, 400, { message: 'UserRemoteSiteLogin: already used by another person' }),
    );
    const summary = await process(sourceFor());
    expect(summary).toMatchObject({ answered: 0, failed: 1 });
    expect(exitCodeFor(summary)).toBe(1);
    expect(summary.results[0]!.reason).toBe(
      'notify_account_create refused: AMIE REST API refused POST packets/EXAMPLE: 400 Bad Request: UserRemoteSiteLogin: already used by another person; transaction marked failed on the server',
    );
    expect(rest.api.transactions.get(transRecId)!.state).toBe('failed');
    expect(await rows('SELECT status FROM amie_toolkit.rest_outbox')).toEqual([{ status: 'refused' }]);
    expect(
      (
        await rows('SELECT outcome FROM amie_toolkit.audit WHERE packet_rec_id = $1 ORDER BY audit_id', [packetRecId])
      ).map((r) => r.outcome),
    ).toEqual(['reply', 'refused']);
    // Nothing is sent again: the transaction is over.
    await process(sourceFor());
    expect(rest.api.posts).toHaveLength(1);
  });

  run('a refusal because an earlier attempt already arrived is not a failure', async () => {
    const { packetRecId, transRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    // The server stores the reply but answers 409, as a duplicate of a late first attempt would get.
    rest.api.faults.push({
      match: isPost,
      act: (r, res, a) => (
        a.route(r),
        res.writeHead(409).end(JSON.stringify({ message: 'in_reply_to: already answered' })),
        true
      ),
    });
    const summary = await process(sourceFor());
    expect(summary).toMatchObject({ answered: 1, failed: 0 });
    expect(rest.api.transactions.get(transRecId)!.state).toBe('in-progress');
    expect(rest.api.repliesTo(packetRecId)).toHaveLength(1);
    expect(await rows('SELECT status FROM amie_toolkit.rest_outbox')).toEqual([{ status: 'sent' }]);
  });

  run('client_state notes what the site did with packets it did not answer, once', async () => {
    const deferred = rest.api.addIncoming('request_account_create', racBody(1));
    const ignored = rest.api.addIncoming('request_account_create', racBody(2));
    const unhandled = rest.api.addIncoming('request_user_modify', {
      ActionType: 'add',
      PersonID: 'u-1',
      DnList: ['/CN=x'],
    });
    const Handler = handlerWith(async (p) =>
      p.packetRecId === deferred.packetRecId ? defer('waiting for approval') : ignore('test account'),
    );
    await process(sourceFor(), new Handler(context(t.db)));
    await process(sourceFor(), new Handler(context(t.db)));
    const puts = rest.api.requests.filter((r) => r.method === 'PUT').map((r) => r.path);
    expect(puts.sort()).toEqual(
      [
        `/packets/EXAMPLE/${deferred.packetRecId}/client_state/deferred`,
        `/packets/EXAMPLE/${ignored.packetRecId}/client_state/completed`,
        `/packets/EXAMPLE/${unhandled.packetRecId}/client_state/unhandled`,
      ].sort(),
    );
    expect(rest.api.packets.get(deferred.packetRecId)!.header.client_state).toBe('deferred');
    expect(rest.api.posts).toHaveLength(0);
    const before = rest.api.requests.length;
    await process(sourceFor(t.db, { clientState: false }), new Handler(context(t.db)));
    expect(rest.api.requests.slice(before).filter((r) => r.method === 'PUT')).toEqual([]);
  });

  run('dry run: the handler runs, nothing is recorded and nothing is sent', async () => {
    rest.api.addIncoming('request_account_create', racBody(1));
    rest.api.addIncoming('request_account_create', racBody(2));
    const handler = new SiteHandler(context(t.db));
    const summary = await process(sourceFor(t.db, { dryRun: true }), handler, { dryRun: true, batchSize: 1 });
    expect(summary).toMatchObject({ dryRun: true, taken: 2, answered: 2 });
    expect(summary.results.map((r) => r.reply?.UserPersonID)).toEqual(['u-5001', 'u-5002']);
    expect(rest.api.requests.filter((r) => r.method !== 'GET')).toEqual([]);
    for (const table of ['rest_packets', 'rest_outbox', 'audit', 'packet_errors']) {
      expect(await rows(`SELECT count(*)::int AS n FROM amie_toolkit.${table}`)).toEqual([{ n: 0 }]);
    }
    // A real run afterwards answers both.
    expect(await process(sourceFor(), handler)).toMatchObject({ answered: 2 });
  });

  run('a wrong API key stops the run at the start with the server message', async () => {
    rest.api.addIncoming('request_account_create', racBody(1));
    const err = await process(sourceFor(t.db, {}, { apiKey: 'not-the-key' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AmieRestError);
    expect((err as Error).message).toBe(
      'AMIE REST API refused GET packets/EXAMPLE: 401 Unauthorized: XA-SITE/XA-API-KEY not valid for site EXAMPLE',
    );
    expect(await rows('SELECT count(*)::int AS n FROM amie_toolkit.audit')).toEqual([{ n: 0 }]);
  });

  run('a packet whose header cannot be read is reported and left; the others are answered', async () => {
    const bad = rest.api.addIncoming('request_account_create', racBody(1), { header: { trans_rec_id: 'x' } });
    const good = rest.api.addIncoming('request_account_create', racBody(2));
    const summary = await process(sourceFor());
    expect(summary).toMatchObject({ taken: 1, answered: 1 });
    expect(rest.api.repliesTo(good.packetRecId)).toHaveLength(1);
    const errors = rest.lines.map((l) => JSON.parse(l)).filter((l) => l.level >= 50);
    expect(errors.map((e) => e.msg)).toEqual([
      `AMIE REST packet ${bad.packetRecId} (request_account_create): header.trans_rec_id: expected a whole number, got "x": the packet is left on the server unanswered`,
    ]);
  });

  run('handler errors are counted per packet and end in a failure ITC, as with the tables', async () => {
    const { packetRecId } = rest.api.addIncoming('request_account_create', racBody(1));
    const Handler = handlerWith(async () => {
      throw new Error('LDAP is down');
    });
    for (let i = 0; i < 3; i++) await process(sourceFor(), new Handler(context(t.db)), { maxErrorDeferrals: 2 });
    expect(await rows('SELECT outcome FROM amie_toolkit.audit ORDER BY audit_id')).toEqual([
      { outcome: 'error' },
      { outcome: 'error' },
      { outcome: 'fail' },
    ]);
    expect(rest.api.repliesTo(packetRecId)[0]!.body.Message).toBe('handler failed 3 times, giving up: LDAP is down');
  });

  // Only a PostgreSQL server admits two processes at once; the embedded database serves one.
  if (driver.name === 'pg')
    run('two concurrent runs on one database answer each packet once', async () => {
      const ids = Array.from(
        { length: 30 },
        (_, i) => rest.api.addIncoming('request_account_create', racBody(i)).packetRecId,
      );
      const second = await openPg({ url: t.url!, max: 4 });
      try {
        const Handler = handlerWith(async (p, ctx) => {
          // Touch the database and yield, so the runs interleave.
          await ctx.tx.query('SELECT pg_sleep(0.002)');
          await sleep(Math.random() * 5);
          return nacFor(p.packetRecId);
        });
        const [s1, s2] = await Promise.all([
          process(sourceFor(t.db), new Handler(context(t.db)), { batchSize: 3 }),
          process(sourceFor(second), new Handler(context(second)), { batchSize: 3 }),
        ]);
        // How the work splits depends on timing (one run may take it all); what matters is that nothing is answered twice.
        expect(s1.answered + s2.answered).toBe(30);
        expect(rest.api.posts).toHaveLength(30);
        for (const id of ids) expect(rest.api.repliesTo(id)).toHaveLength(1);
        expect(await rows(`SELECT count(*)::int AS n FROM amie_toolkit.audit WHERE outcome = 'reply'`)).toEqual([
          { n: 30 },
        ]);
      } finally {
        await second.close();
      }
    });
});
