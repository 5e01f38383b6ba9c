import { describe, it, expect } from 'vitest';
import { DatabaseError, type Database } from '../../src/db/index.js';
import type { DataRow } from '../../src/protocol/ids.js';
import {
  addTransactionDependency,
  findIncomingInProgress,
  getPacket,
  getTransaction,
  initDatabase,
  listTransactionPackets,
  openTransaction,
  setPacketState,
  setTransactionState,
  writePacket,
  type NewPacket,
} from '../../src/store/index.js';
import { driverCases } from '../helpers/db.js';

const skipNote = (available: boolean) => (available ? '' : ' [skipped: no AMIE_TEST_DATABASE_URL]');

const sites = { localSiteName: 'EXAMPLE', remoteSiteName: 'TGCDB' };

const RPC_ROWS: DataRow[] = [
  { tag: 'AllocationType', subtag: null, seq: 0, value: 'new' },
  { tag: 'GrantNumber', subtag: null, seq: 0, value: 'TG-ABC123' },
  // multi-valued
  { tag: 'ResourceList', subtag: null, seq: 0, value: 'cluster.example.edu' },
  { tag: 'ResourceList', subtag: null, seq: 1, value: 'storage.example.edu' },
  // composite: seq ties the parts of one entry together
  { tag: 'SitePersonId', subtag: 'PersonID', seq: 0, value: 'jdoe' },
  { tag: 'SitePersonId', subtag: 'Site', seq: 0, value: 'X-PORTAL' },
  { tag: 'SitePersonId', subtag: 'PersonID', seq: 1, value: 'u12345' },
  { tag: 'SitePersonId', subtag: 'Site', seq: 1, value: 'X-ORCID' },
  { tag: 'Abstract', subtag: null, seq: 0, value: null },
  { tag: 'ProjectTitle', subtag: null, seq: 0, value: 'Zürich \u2014 "quoted" \'text\'\nsecond line' },
];

const sortRows = (rows: readonly DataRow[]) =>
  [...rows].sort((a, b) =>
    JSON.stringify([a.tag, a.seq, a.subtag]).localeCompare(JSON.stringify([b.tag, b.seq, b.subtag])),
  );

async function incoming(
  db: Database,
  transRecId: number,
  packetId: number,
  type: NewPacket['type'],
  extra: Partial<NewPacket> = {},
) {
  const { packetRecId } = await writePacket(db, {
    transRecId,
    packetId,
    type,
    outgoing: false,
    rows: [{ tag: 'ProjectID', subtag: null, seq: 0, value: `p${transRecId}-${packetId}` }],
    ...extra,
  });
  return packetRecId;
}

describe.each(driverCases())('AMIE packets on $name', (driver) => {
  const note = skipNote(driver.available);

  it.skipIf(!driver.available)(
    `a packet with multi-valued and composite rows round trips, with its reply and expected reply${note}`,
    async () => {
      const { db, cleanup } = await driver.open();
      try {
        await initDatabase(db);
        const t = await openTransaction(db, { originatingSiteName: 'TGCDB', transactionId: 123456789, ...sites });
        expect(t).toMatchObject({
          originatingSiteName: 'TGCDB',
          transactionId: 123456789,
          state: 'in-progress',
          ...sites,
        });
        expect(t.ts).toBeInstanceOf(Date);
        expect(Math.abs(t.ts.getTime() - Date.now())).toBeLessThan(60_000);
        expect(await getTransaction(db, t.transRecId)).toEqual(t);

        const rpc = await writePacket(db, {
          transRecId: t.transRecId,
          packetId: 1,
          type: 'request_project_create',
          outgoing: false,
          rows: RPC_ROWS,
        });
        const got = await getPacket(db, rpc.packetRecId);
        expect(got).toBeDefined();
        expect(got!).toMatchObject({
          packetRecId: rpc.packetRecId,
          transRecId: t.transRecId,
          packetId: 1,
          type: 'request_project_create',
          typeId: 19,
          version: '1.0',
          state: 'in-progress',
          outgoing: false,
        });
        expect(got!.transaction).toEqual(t);
        expect(Math.abs(got!.ts.getTime() - Date.now())).toBeLessThan(60_000);
        expect(sortRows(got!.rows)).toEqual(sortRows(RPC_ROWS));

        // The reply and the state change of the packet it answers, in one transaction.
        const npc = await db.transaction(async (tx) => {
          const r = await writePacket(tx, {
            transRecId: t.transRecId,
            packetId: 1,
            type: 'notify_project_create',
            outgoing: true,
            rows: [{ tag: 'ProjectID', subtag: null, seq: 0, value: 'abc123' }],
            expectedReply: { type: 'data_project_create' },
          });
          await setPacketState(tx, rpc.packetRecId, 'completed');
          return r;
        });
        const { rows: er } = await db.query<{ packet_rec_id: number; type_id: string; timeout: number }>(
          'SELECT packet_rec_id, type_id, timeout FROM expected_reply_tbl',
        );
        expect(er.map((r) => [r.packet_rec_id, Number(r.type_id), r.timeout])).toEqual([[npc.packetRecId, 2, 30240]]);

        const itc = await writePacket(db, {
          transRecId: t.transRecId,
          packetId: 2,
          type: 'inform_transaction_complete',
          outgoing: true,
          rows: [],
          state: 'completed',
          version: '1.0',
          expectedReply: { type: 'inform_transaction_complete', timeoutMinutes: 60 },
        });
        const dpc = await incoming(db, t.transRecId, 2, 'data_project_create');
        const list = await listTransactionPackets(db, t.transRecId);
        expect(list.map((p) => [p.packetId, p.outgoing, p.type, p.state])).toEqual([
          [1, false, 'request_project_create', 'completed'],
          [1, true, 'notify_project_create', 'in-progress'],
          [2, false, 'data_project_create', 'in-progress'],
          [2, true, 'inform_transaction_complete', 'completed'],
        ]);
        expect(list.map((p) => p.packetRecId)).toEqual([rpc.packetRecId, npc.packetRecId, dpc, itc.packetRecId]);
        expect(list[3]!.rows).toEqual([]);
        expect(await getPacket(db, 999999)).toBeUndefined();
        expect(await getTransaction(db, 999999)).toBeUndefined();
        expect(await listTransactionPackets(db, 999999)).toEqual([]);

        await setTransactionState(db, t.transRecId, 'completed');
        expect((await getTransaction(db, t.transRecId))!.state).toBe('completed');
      } finally {
        await cleanup();
      }
    },
  );

  it.skipIf(!driver.available)(
    `findIncomingInProgress returns only in-progress incoming packets of workable transactions, in one round trip${note}`,
    async () => {
      const { db, cleanup } = await driver.open();
      try {
        await initDatabase(db);
        const open = (transactionId: number) =>
          openTransaction(db, { originatingSiteName: 'TGCDB', transactionId, ...sites });
        const t1 = await open(1);
        const t2 = await open(2);
        const t3 = await open(3);
        const t4 = await open(4);
        const a = await incoming(db, t1.transRecId, 1, 'request_project_create', { rows: RPC_ROWS });
        await incoming(db, t1.transRecId, 2, 'data_project_create', { state: 'completed' });
        await writePacket(db, {
          transRecId: t1.transRecId,
          packetId: 1,
          type: 'notify_project_create',
          outgoing: true,
          rows: [],
        });
        await incoming(db, t2.transRecId, 1, 'request_project_create');
        await setTransactionState(db, t2.transRecId, 'completed');
        const e = await incoming(db, t3.transRecId, 1, 'request_account_create');
        const f = await incoming(db, t4.transRecId, 1, 'request_account_create');
        // t4 must wait for t3.
        await addTransactionDependency(db, t4.transRecId, t3.transRecId);
        await addTransactionDependency(db, t4.transRecId, t3.transRecId);
        await expect(addTransactionDependency(db, t4.transRecId, t4.transRecId)).rejects.toThrow(
          'cannot depend on itself',
        );

        const before = db.roundTrips;
        const found = await findIncomingInProgress(db);
        expect(db.roundTrips - before).toBe(1);
        expect(found.map((p) => p.packetRecId)).toEqual([a, e]);
        expect(sortRows(found[0]!.rows)).toEqual(sortRows(RPC_ROWS));
        expect(found[0]!.transaction).toEqual(t1);
        expect(found[1]!.rows).toEqual([{ tag: 'ProjectID', subtag: null, seq: 0, value: `p${t3.transRecId}-1` }]);
        expect(found[1]!.transaction.transactionId).toBe(3);

        expect((await findIncomingInProgress(db, { limit: 1 })).map((p) => p.packetRecId)).toEqual([a]);
        expect(
          (await findIncomingInProgress(db, { types: ['request_account_create'] })).map((p) => p.packetRecId),
        ).toEqual([e]);
        expect((await findIncomingInProgress(db, { types: [] })).map((p) => p.packetRecId)).toEqual([]);
        expect((await findIncomingInProgress(db, { transRecId: t3.transRecId })).map((p) => p.packetRecId)).toEqual([
          e,
        ]);
        expect((await findIncomingInProgress(db, { transRecId: t4.transRecId })).map((p) => p.packetRecId)).toEqual([]);

        // Completing t3 releases t4.
        await setPacketState(db, e, 'completed');
        await setTransactionState(db, t3.transRecId, 'completed');
        expect((await findIncomingInProgress(db)).map((p) => p.packetRecId)).toEqual([a, f]);

        // Claiming with row locks inside a transaction.
        const claimed = await db.transaction((tx) => findIncomingInProgress(tx, { lock: true, limit: 1 }));
        expect(claimed.map((p) => p.packetRecId)).toEqual([a]);
      } finally {
        await cleanup();
      }
    },
  );

  it.skipIf(!driver.available)(
    `an unknown type_id is read back without crashing, with typeId kept${note}`,
    async () => {
      const { db, cleanup } = await driver.open();
      try {
        await initDatabase(db);
        const t = await openTransaction(db, { originatingSiteName: 'TGCDB', transactionId: 42, ...sites });
        await db.query(`INSERT INTO type_des (type_id, type_name) VALUES (99, 'request_something_new')`);
        const { rows } = await db.query<{ packet_rec_id: number }>(
          `INSERT INTO packet_tbl (trans_rec_id, packet_id, type_id, version, state_id, outgoing_flag)
         VALUES ($1, 1, 99, '1.0', 2, 0) RETURNING packet_rec_id`,
          [t.transRecId],
        );
        const id = rows[0]!.packet_rec_id;
        const p = await getPacket(db, id);
        expect(p).toMatchObject({ packetRecId: id, type: undefined, typeId: 99, rows: [] });
        const found = await findIncomingInProgress(db);
        expect(found.map((x) => [x.packetRecId, x.type, x.typeId])).toEqual([[id, undefined, 99]]);
        expect((await listTransactionPackets(db, t.transRecId))[0]!.typeId).toBe(99);
      } finally {
        await cleanup();
      }
    },
  );

  it.skipIf(!driver.available)(`bad input is refused with what to fix, and writes nothing${note}`, async () => {
    const { db, cleanup } = await driver.open();
    try {
      await initDatabase(db);
      const t = await openTransaction(db, { originatingSiteName: 'TGCDB', transactionId: 7, ...sites });
      const base: NewPacket = {
        transRecId: t.transRecId,
        packetId: 1,
        type: 'notify_project_create',
        outgoing: true,
        rows: [],
      };
      const dup = { tag: 'ProjectID', subtag: null, seq: 0, value: 'a' };
      await expect(writePacket(db, { ...base, rows: [dup, { ...dup, value: 'b' }] })).rejects.toThrow(
        'notify_project_create packet 1 of trans_rec_id ' + t.transRecId + ': tag ProjectID seq 0 appears twice',
      );
      await expect(
        writePacket(db, { ...base, rows: [{ tag: 'X'.repeat(33), subtag: null, seq: 0, value: 'a' }] }),
      ).rejects.toThrow(/data_tbl.tag is varchar\(32\)/);
      await expect(
        writePacket(db, { ...base, rows: [{ tag: 'ResourceList', subtag: null, seq: -1, value: 'a' }] }),
      ).rejects.toThrow('tag ResourceList has seq -1');
      await expect(writePacket(db, { ...base, type: 'no_such_type' as NewPacket['type'] })).rejects.toThrow(
        "unknown AMIE packet type 'no_such_type'",
      );
      await expect(
        writePacket(db, { ...base, expectedReply: { type: 'data_project_create', timeoutMinutes: 0 } }),
      ).rejects.toThrow('expected reply timeout must be a positive number of minutes');
      await expect(setPacketState(db, 424242, 'completed')).rejects.toBeInstanceOf(DatabaseError);
      await expect(setTransactionState(db, 424242, 'failed')).rejects.toThrow('no such row in transaction_tbl');

      // A packet that the database refuses (duplicate packet_id) leaves no data rows behind.
      await writePacket(db, { ...base, rows: [dup] });
      await expect(
        writePacket(db, { ...base, rows: [{ ...dup, tag: 'Other' }], expectedReply: { type: 'data_project_create' } }),
      ).rejects.toThrow();
      const counts = await db.query<{ p: number; d: number; e: number }>(
        `SELECT (SELECT count(*) FROM packet_tbl)::int AS p, (SELECT count(*) FROM data_tbl)::int AS d,
                (SELECT count(*) FROM expected_reply_tbl)::int AS e`,
      );
      expect(counts.rows[0]).toEqual({ p: 1, d: 1, e: 0 });
    } finally {
      await cleanup();
    }
  });
});
