import { describe, it, expect } from 'vitest';
import {
  AmieHandler,
  Dispatcher,
  defer,
  exitCodeFor,
  fail,
  ignore,
  type IncomingPacket,
  type PacketContext,
} from '../../src/dispatch/index.js';
import { addTransactionDependency, setTransactionState } from '../../src/store/index.js';
import { driverCases, type TestDatabase, databaseEachTest } from '../helpers/db.js';
import {
  SITE,
  auditOf,
  outgoingPackets,
  packetState,
  quietLog,
  racTags,
  rpcTags,
  seedIncoming,
} from '../helpers/amie.js';

/** Answers every RAC the way a site would: a PersonID and login of its own. */
class AccountHandler extends AmieHandler {
  calls = 0;
  override async request_account_create(p: IncomingPacket<'request_account_create'>) {
    this.calls++;
    return {
      UserPersonID: `u-${p.tags.UserFirstName.toLowerCase()}`,
      UserRemoteSiteLogin: p.tags.UserFirstName.toLowerCase(),
      AccountActivityTime: '2026-11-24T00:00:00Z',
    };
  }
}

function handlerWith(fn: (p: IncomingPacket<'request_account_create'>, ctx: PacketContext) => Promise<unknown>) {
  return class extends AmieHandler {
    override async request_account_create(p: IncomingPacket<'request_account_create'>, ctx: PacketContext) {
      return fn(p, ctx) as never;
    }
  };
}

const context = (db: TestDatabase['db']) => ({ db, log: quietLog, site: SITE, options: {}, dryRun: false });

describe.each(driverCases())('dispatcher on $name', (driver) => {
  const t = databaseEachTest(driver);
  const run = it.skipIf(!driver.available);

  run('replies with a validated NAC, tags taken over from the RAC, and completes the RAC', async () => {
    const { packetRecId, transRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const handler = new AccountHandler(context(t.db));
    const summary = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(summary.answered).toBe(1);
    expect(exitCodeFor(summary)).toBe(0);
    const out = await outgoingPackets(t.db);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ type_name: 'notify_account_create', trans_rec_id: transRecId, packetId: 2 });
    expect(out[0]!.body).toMatchObject({
      UserPersonID: 'u-ann1',
      UserFirstName: 'Ann1',
      UserLastName: "O'Neil",
      ProjectID: 'p-abc123',
      ResourceList: [SITE.resource],
    });
    expect(await packetState(t.db, packetRecId)).toBe(1);
    const { rows: er } = await t.db.query<{ type_id: string; timeout: number }>(
      'SELECT type_id::text, timeout FROM expected_reply_tbl WHERE packet_rec_id = $1',
      [out[0]!.packet_rec_id],
    );
    expect(er).toEqual([{ type_id: '1', timeout: 30240 }]);
    expect(await auditOf(t.db, packetRecId)).toEqual([
      { outcome: 'reply', reason: null, reply_type: 'notify_account_create' },
    ]);
    // Nothing is pending any more: a second run takes nothing.
    expect((await new Dispatcher(t.db, handler, quietLog).runOnce()).taken).toBe(0);
  });

  run('fail sends a failure ITC with DetailCode 2', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const H = handlerWith(async () => fail('no such project here'));
    const summary = await new Dispatcher(t.db, new H(context(t.db)), quietLog).runOnce();
    expect(summary.failed).toBe(1);
    expect(exitCodeFor(summary)).toBe(1);
    const [itc] = await outgoingPackets(t.db);
    expect(itc!.type_name).toBe('inform_transaction_complete');
    expect(itc!.body).toEqual({ StatusCode: 'Failure', DetailCode: '2', Message: 'no such project here' });
    expect(await packetState(t.db, packetRecId)).toBe(1);
  });

  run('defer leaves the packet in progress for the next run and writes nothing', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const H = handlerWith(async () => defer('waiting for the PI to approve'));
    const summary = await new Dispatcher(t.db, new H(context(t.db)), quietLog).runOnce();
    expect(summary).toMatchObject({ taken: 1, deferred: 1 });
    expect(exitCodeFor(summary)).toBe(0);
    expect(await outgoingPackets(t.db)).toHaveLength(0);
    expect(await packetState(t.db, packetRecId)).toBe(2);
    expect(await auditOf(t.db, packetRecId)).toEqual([
      { outcome: 'defer', reason: 'waiting for the PI to approve', reply_type: null },
    ]);
    // Offered again on the next run.
    const next = await new Dispatcher(t.db, new AccountHandler(context(t.db)), quietLog).runOnce();
    expect(next.answered).toBe(1);
  });

  run('ignore completes the packet with no reply and records the reason', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const H = handlerWith(async () => ignore('handled by hand'));
    const summary = await new Dispatcher(t.db, new H(context(t.db)), quietLog).runOnce();
    expect(summary.ignored).toBe(1);
    expect(await outgoingPackets(t.db)).toHaveLength(0);
    expect(await packetState(t.db, packetRecId)).toBe(1);
    expect((await auditOf(t.db, packetRecId))[0]).toMatchObject({ outcome: 'ignore', reason: 'handled by hand' });
  });

  run('an exception defers with the error, and after maxErrorDeferrals becomes a failure reply', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const H = handlerWith(async (_p, ctx) => {
      // Bookkeeping written before the throw must be rolled back with it.
      await ctx.tx.query('INSERT INTO amie_toolkit.packet_errors (packet_rec_id, error_count) VALUES (-1, 99)');
      throw new Error('useradd: exit 9');
    });
    const handler = new H(context(t.db));
    for (let attempt = 1; attempt <= 2; attempt++) {
      const s = await new Dispatcher(t.db, handler, quietLog, { maxErrorDeferrals: 2 }).runOnce();
      expect(s.errors).toBe(1);
      expect(exitCodeFor(s)).toBe(1);
      expect(await packetState(t.db, packetRecId)).toBe(2);
    }
    const last = await new Dispatcher(t.db, handler, quietLog, { maxErrorDeferrals: 2 }).runOnce();
    expect(last.failed).toBe(1);
    const [itc] = await outgoingPackets(t.db);
    expect(itc!.body).toMatchObject({ StatusCode: 'Failure', DetailCode: '2' });
    expect(String(itc!.body.Message)).toContain('useradd: exit 9');
    const audit = await auditOf(t.db, packetRecId);
    expect(audit.map((a) => a.outcome)).toEqual(['error', 'error', 'fail']);
    expect(audit[0]!.reason).toContain('useradd: exit 9');
    const { rows } = await t.db.query('SELECT * FROM amie_toolkit.packet_errors WHERE packet_rec_id = -1');
    expect(rows).toHaveLength(0);
  });

  run('a type the handler does not implement is reported and left in place', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_project_inactivate', {
      ProjectID: 'p-1',
      ResourceList: [SITE.resource],
    });
    const summary = await new Dispatcher(t.db, new AccountHandler(context(t.db)), quietLog).runOnce();
    expect(summary.unhandled).toEqual({ request_project_inactivate: 1 });
    expect(exitCodeFor(summary)).toBe(1);
    expect(await packetState(t.db, packetRecId)).toBe(2);
    expect(await outgoingPackets(t.db)).toHaveLength(0);
  });

  run('an invalid incoming packet gets a failure reply naming the tag, without calling the handler', async () => {
    const tags = racTags(1);
    delete tags.UserLastName;
    tags.ResourceList = [SITE.resource, 'b.example.org'];
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', tags);
    const handler = new AccountHandler(context(t.db));
    const summary = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(handler.calls).toBe(0);
    expect(summary.invalid).toBe(1);
    const [itc] = await outgoingPackets(t.db);
    expect(itc!.body.StatusCode).toBe('Failure');
    expect(String(itc!.body.Message)).toMatch(/UserLastName/);
    expect(String(itc!.body.Message)).toMatch(/ResourceList/);
    expect(await packetState(t.db, packetRecId)).toBe(1);
  });

  run('a handler returning an incomplete reply is reported and nothing is written', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const H = handlerWith(async () => ({ UserRemoteSiteLogin: 'ann' }));
    const summary = await new Dispatcher(t.db, new H(context(t.db)), quietLog).runOnce();
    expect(summary.errors).toBe(1);
    expect(summary.results[0]!.reason).toMatch(/UserPersonID/);
    expect(summary.results[0]!.reason).toMatch(/AccountActivityTime/);
    expect(await outgoingPackets(t.db)).toHaveLength(0);
    expect(await packetState(t.db, packetRecId)).toBe(2);
  });

  run('--dry-run shows the replies and writes nothing', async () => {
    const { packetRecId } = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const H = handlerWith(async (p, ctx) => {
      expect(ctx.dryRun).toBe(true);
      await ctx.tx.query('INSERT INTO amie_toolkit.packet_errors (packet_rec_id, error_count) VALUES (-2, 1)');
      return {
        UserPersonID: 'u1',
        UserRemoteSiteLogin: 'ann',
        AccountActivityTime: '2026-11-24T00:00:00Z',
        ProjectID: p.tags.ProjectID!,
      };
    });
    const summary = await new Dispatcher(t.db, new H({ ...context(t.db), dryRun: true }), quietLog, {
      dryRun: true,
    }).runOnce();
    expect(summary.answered).toBe(1);
    expect(summary.results[0]!.reply).toMatchObject({ UserPersonID: 'u1', UserFirstName: 'Ann1' });
    expect(await outgoingPackets(t.db)).toHaveLength(0);
    expect(await packetState(t.db, packetRecId)).toBe(2);
    expect(await auditOf(t.db, packetRecId)).toEqual([]);
    expect((await t.db.query('SELECT 1 FROM amie_toolkit.packet_errors')).rows).toHaveLength(0);
  });

  run('a transaction waits for the transaction it depends on', async () => {
    const first = await seedIncoming(t.db, 'request_account_create', racTags(1));
    const second = await seedIncoming(t.db, 'request_account_create', racTags(2));
    await addTransactionDependency(t.db, second.transRecId, first.transRecId);
    const handler = new AccountHandler(context(t.db));
    const s1 = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(s1.results.map((r) => r.packetRecId)).toEqual([first.packetRecId]);
    // Still not offered: the first transaction is answered but not completed by the transfer daemon.
    expect((await new Dispatcher(t.db, handler, quietLog).runOnce()).taken).toBe(0);
    await setTransactionState(t.db, first.transRecId, 'completed');
    const s3 = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(s3.results.map((r) => r.packetRecId)).toEqual([second.packetRecId]);
  });

  run(
    'an incoming ITC is marked completed and nothing is sent back; transactions are left to the transfer daemon',
    async () => {
      const { packetRecId, transRecId } = await seedIncoming(t.db, 'inform_transaction_complete', {
        StatusCode: 'Success',
        DetailCode: '1',
        Message: 'done',
      });
      const summary = await new Dispatcher(t.db, new AccountHandler(context(t.db)), quietLog).runOnce();
      expect(summary.closed).toBe(1);
      expect(await packetState(t.db, packetRecId)).toBe(1);
      expect(await outgoingPackets(t.db)).toHaveLength(0);
      const { rows } = await t.db.query<{ state_id: string }>(
        'SELECT state_id::text FROM transaction_tbl WHERE trans_rec_id = $1',
        [transRecId],
      );
      expect(rows[0]!.state_id).toBe('2');
    },
  );

  run('DPC reaches the handler with the RPC of its transaction and is answered with a success ITC', async () => {
    const rpc = await seedIncoming(
      t.db,
      'request_project_create',
      rpcTags({ PfosNumber: '12345', PiFirstName: 'Ann', PiLastName: 'Lee', ServiceUnitsAllocated: '1000' }),
    );
    await t.db.query('UPDATE packet_tbl SET state_id = 1 WHERE packet_rec_id = $1', [rpc.packetRecId]);
    await seedIncoming(
      t.db,
      'data_project_create',
      { PersonID: 'u1', ProjectID: 'p1', DnList: ['/C=US/CN=Ann Lee'] },
      { transRecId: rpc.transRecId, packetId: 3 },
    );
    let seen: IncomingPacket<'data_project_create'> | undefined;
    class H extends AmieHandler {
      override async data_project_create(p: IncomingPacket<'data_project_create'>) {
        seen = p;
      }
    }
    const summary = await new Dispatcher(t.db, new H(context(t.db)), quietLog).runOnce();
    expect(summary.answered).toBe(1);
    expect(seen?.request?.type).toBe('request_project_create');
    expect(seen?.resource).toBe(SITE.resource);
    expect(seen?.tags.DnList).toEqual(['/C=US/CN=Ann Lee']);
    const [itc] = await outgoingPackets(t.db);
    expect(itc).toMatchObject({ type_name: 'inform_transaction_complete', packetId: 4 });
    expect(itc!.body).toMatchObject({ StatusCode: 'Success', DetailCode: '1' });
  });

  run('--limit and --type restrict what a run takes', async () => {
    await seedIncoming(t.db, 'request_account_create', racTags(1));
    await seedIncoming(t.db, 'request_account_create', racTags(2));
    await seedIncoming(t.db, 'request_project_inactivate', { ProjectID: 'p-1', ResourceList: [SITE.resource] });
    const handler = new AccountHandler(context(t.db));
    const s = await new Dispatcher(t.db, handler, quietLog, { limit: 1, types: ['request_account_create'] }).runOnce();
    expect(s.taken).toBe(1);
    const s2 = await new Dispatcher(t.db, handler, quietLog, { types: ['request_account_create'] }).runOnce();
    expect(s2.taken).toBe(1);
    expect(s2.unhandled).toEqual({});
  });
});
