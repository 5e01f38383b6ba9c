/**
 * Packets of another resource or another site are not this configuration's: they are never
 * claimed (state unchanged, no audit row, no reply), with the AMIE tables and the REST API as
 * the source, on PGlite and PostgreSQL; several configurations sharing one database each answer
 * their own resource's packets; `amie packets list --foreign` shows the others and `amie process`
 * warns when they have waited long.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type SiteConfig } from '../../src/config/index.js';
import { openPglite, type Database } from '../../src/db/index.js';
import { Dispatcher, type IncomingPacket, type PacketContext } from '../../src/dispatch/index.js';
import type { Logger } from '../../src/log.js';
import { AmieRestClient, RestSource } from '../../src/sources/index.js';
import { countForeignWaiting } from '../../src/store/index.js';
import { NacHandler, SITE, auditOf, packetState, quietLog, racTags, seedIncoming } from '../helpers/amie.js';
import { driverCases, databaseEachTest, initialisedPgliteDir } from '../helpers/db.js';
import { racBody } from '../sources/fake-amie-rest.js';
import { amieInProcess } from '../helpers/cli.js';
import { restApiEachTest } from '../helpers/simulator.js';

const RES_A = 'cluster-a.example.org';
const RES_B = 'cluster-b.example.org';
/** One site, two resources, each answered by its own configuration (the two forms of the key). */
const SITE_A: SiteConfig = { name: SITE.name, resource: RES_A, remoteSite: SITE.remoteSite };
const SITE_B: SiteConfig = { name: SITE.name, resource: RES_B, resources: [RES_B], remoteSite: SITE.remoteSite };
const IN_PROGRESS = 2;

/** Answers RACs and DPCs; leaves every other type unhandled. */
class SiteHandler extends NacHandler {
  override async data_project_create(_p: IncomingPacket<'data_project_create'>, _ctx: PacketContext) {}
}

const handlerFor = (db: Database, site: SiteConfig, log: Logger = quietLog) =>
  new SiteHandler({ db, log, site, options: {}, dryRun: false });

/** Left untouched: still in progress, never audited, never answered. */
async function expectUntouched(db: Database, packetRecId: number): Promise<void> {
  expect(await packetState(db, packetRecId)).toBe(IN_PROGRESS);
  expect(await auditOf(db, packetRecId)).toEqual([]);
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM packet_tbl r JOIN packet_tbl p ON p.trans_rec_id = r.trans_rec_id
      WHERE p.packet_rec_id = $1 AND r.outgoing_flag = 1 AND r.packet_id > p.packet_id`,
    [packetRecId],
  );
  expect(rows[0]!.n).toBe(0);
}

const taken = (summary: { results: Array<{ packetRecId: number }> }) =>
  summary.results.map((r) => r.packetRecId).sort((x, y) => x - y);

describe.each(driverCases())('[14.4] foreign packets, AMIE tables on $name', (driver) => {
  const t = databaseEachTest(driver);
  const run = it.skipIf(!driver.available);

  run(
    '[14.4] two configurations sharing one database each answer only their resource; another site is nobody’s',
    async () => {
      const a = await seedIncoming(t.db, 'request_account_create', racTags(1, { ResourceList: [RES_A] }));
      // ResourceList is compared trimmed and in any case.
      const aShouted = await seedIncoming(
        t.db,
        'request_account_create',
        racTags(2, { ResourceList: [` ${RES_A.toUpperCase()} `] }),
      );
      const b = await seedIncoming(t.db, 'request_account_create', racTags(3, { ResourceList: [RES_B] }));
      const otherSite = await seedIncoming(t.db, 'request_account_create', racTags(4, { ResourceList: [RES_A] }), {
        site: 'OTHERSITE',
      });

      expect(await countForeignWaiting(t.db, SITE_A, 0)).toBe(2);
      expect(await countForeignWaiting(t.db, SITE_A, 3_600_000)).toBe(0);

      const first = await new Dispatcher(t.db, handlerFor(t.db, SITE_A), quietLog).runOnce();
      expect(taken(first)).toEqual([a.packetRecId, aShouted.packetRecId]);
      expect(first.answered).toBe(2);
      await expectUntouched(t.db, b.packetRecId);
      await expectUntouched(t.db, otherSite.packetRecId);

      const second = await new Dispatcher(t.db, handlerFor(t.db, SITE_B), quietLog).runOnce();
      expect(taken(second)).toEqual([b.packetRecId]);
      expect(await auditOf(t.db, b.packetRecId)).toEqual([
        { outcome: 'reply', reason: null, reply_type: 'notify_account_create' },
      ]);
      await expectUntouched(t.db, otherSite.packetRecId);

      // Nothing more for either; the other site's packet still waits, and is counted.
      expect((await new Dispatcher(t.db, handlerFor(t.db, SITE_A), quietLog).runOnce()).taken).toBe(0);
      expect(await countForeignWaiting(t.db, SITE_B, 0)).toBe(1);
    },
  );

  run('[14.4] a DPC or ITC takes the resource of the RPC that opened its transaction', async () => {
    const rpcTags = (resource: string) => ({ ProjectID: 'TG-X', GrantNumber: 'TG-X', ResourceList: [resource] });
    const inTransactionOf = async (resource: string) => {
      const rpc = await seedIncoming(t.db, 'request_project_create', rpcTags(resource), { state: 'completed' });
      await seedIncoming(
        t.db,
        'notify_project_create',
        { ProjectID: 'TG-X' },
        { transRecId: rpc.transRecId, packetId: 2, outgoing: true, state: 'completed' },
      );
      const dpc = await seedIncoming(
        t.db,
        'data_project_create',
        { ProjectID: 'TG-X', PersonID: 'p1', DnList: ['/CN=x'] },
        { transRecId: rpc.transRecId, packetId: 3 },
      );
      return dpc;
    };
    const dpcA = await inTransactionOf(RES_A);
    const dpcB = await inTransactionOf(RES_B);
    const dpcB2 = await inTransactionOf(RES_B);
    const itcB = await seedIncoming(
      t.db,
      'inform_transaction_complete',
      { StatusCode: 'Success', DetailCode: '1', Message: 'OK' },
      {
        transRecId: dpcB2.transRecId,
        packetId: 5,
      },
    );

    const a = await new Dispatcher(t.db, handlerFor(t.db, SITE_A), quietLog, {
      types: ['data_project_create', 'inform_transaction_complete'],
    }).runOnce();
    expect(taken(a)).toEqual([dpcA.packetRecId]);
    for (const p of [dpcB, dpcB2, itcB]) await expectUntouched(t.db, p.packetRecId);

    const b = await new Dispatcher(t.db, handlerFor(t.db, SITE_B), quietLog, {
      types: ['data_project_create', 'inform_transaction_complete'],
    }).runOnce();
    expect(taken(b)).toEqual([dpcB.packetRecId, dpcB2.packetRecId, itcB.packetRecId]);
  });

  run(
    '[14.4] a missing or blank ResourceList: malformed for this site (failed by validation), not taken from another site',
    async () => {
      const blank = await seedIncoming(t.db, 'request_account_create', racTags(1, { ResourceList: ['  '] }));
      const missing = racTags(2);
      delete missing.ResourceList;
      const none = await seedIncoming(t.db, 'request_account_create', missing);
      const otherBlank = await seedIncoming(t.db, 'request_account_create', racTags(3, { ResourceList: [''] }), {
        site: 'OTHERSITE',
      });
      // A person's packets carry no resource: the site's, whichever of its configurations runs first.
      const urm = await seedIncoming(t.db, 'request_user_modify', {
        ActionType: 'replace',
        PersonID: 'p1',
        FirstName: 'A',
        LastName: 'B',
      });

      const summary = await new Dispatcher(t.db, handlerFor(t.db, SITE_A), quietLog).runOnce();
      expect(taken(summary)).toEqual([blank.packetRecId, none.packetRecId, urm.packetRecId]);
      expect(summary.invalid).toBe(2);
      expect((await auditOf(t.db, blank.packetRecId))[0]).toMatchObject({
        outcome: 'invalid',
        reply_type: 'inform_transaction_complete',
      });
      await expectUntouched(t.db, otherBlank.packetRecId);
    },
  );
});

describe.each(driverCases())('[14.4] foreign packets, REST source on $name', (driver) => {
  const t = databaseEachTest(driver);
  const rest = restApiEachTest(driver);
  const run = it.skipIf(!driver.available);

  const source = () =>
    new RestSource(
      t.db,
      new AmieRestClient({
        url: rest.api.url,
        site: rest.api.site,
        apiKey: rest.api.apiKey,
        timeoutMs: 2000,
        retries: 0,
      }),
      rest.log,
    );
  const rows = async (sql: string, params: unknown[] = []) =>
    (await t.db.query<Record<string, unknown>>(sql, params)).rows;
  const touchedLocally = async (id: number) => ({
    stored: (await rows('SELECT state FROM amie_toolkit.rest_packets WHERE packet_rec_id = $1', [id])).map(
      (r) => r.state,
    ),
    audit: (await rows(`SELECT outcome FROM amie_toolkit.audit WHERE source = 'rest' AND packet_rec_id = $1`, [id]))
      .length,
  });

  run(
    '[14.4] two configurations sharing one database each answer only their resource; the others stay on the server untouched',
    async () => {
      const a = rest.api.addIncoming(
        'request_account_create',
        racBody(1, { ResourceList: [RES_A], AllocatedResource: RES_A }),
      );
      const b = rest.api.addIncoming(
        'request_account_create',
        racBody(2, { ResourceList: [RES_B], AllocatedResource: RES_B }),
      );
      // A server listing a packet of another site (a shared key, a server bug) does not make it ours.
      const otherSite = rest.api.addIncoming(
        'request_account_create',
        racBody(3, { ResourceList: [RES_A], AllocatedResource: RES_A }),
        {
          header: { local_site_name: 'OTHERSITE', packet_timestamp: '2020-01-01T00:00:00Z' },
        },
      );
      // A DPC of B's transaction, whose RPC was answered before this database existed.
      const rpcB = rest.api.addIncoming(
        'request_project_create',
        { ResourceList: [RES_B], GrantNumber: 'TG-1', ProjectID: 'TG-1' },
        { header: { packet_state: 'completed' } },
      );
      const dpcB = rest.api.addIncoming(
        'data_project_create',
        { ProjectID: 'TG-1', PersonID: 'p1', DnList: ['/CN=x'] },
        { transRecId: rpcB.transRecId },
      );

      const first = await new Dispatcher(source(), handlerFor(t.db, SITE_A, rest.log), rest.log).runOnce();
      expect(taken(first)).toEqual([a.packetRecId]);
      expect(rest.api.posts.map((p) => (p.body as { header: { in_reply_to: number } }).header.in_reply_to)).toEqual([
        a.packetRecId,
      ]);
      for (const id of [b.packetRecId, otherSite.packetRecId, dpcB.packetRecId]) {
        expect(rest.api.packets.get(id)!.header.packet_state).toBe('in-progress');
        expect(rest.api.packets.get(id)!.header.client_state).toBeNull();
        expect(await touchedLocally(id)).toEqual({ stored: [], audit: 0 });
      }
      // The long-waiting one is warned about; the others only noted.
      const warnings = rest.lines
        .map((l) => JSON.parse(l) as { level: number; msg: string; packet_rec_ids?: number[] })
        .filter((l) => l.level === 40);
      expect(
        warnings
          .filter((w) => /another site or resource have waited over 24 h/.test(w.msg))
          .map((w) => w.packet_rec_ids),
      ).toEqual([[otherSite.packetRecId]]);

      const second = await new Dispatcher(source(), handlerFor(t.db, SITE_B, rest.log), rest.log).runOnce();
      expect(taken(second)).toEqual([b.packetRecId, dpcB.packetRecId]);
      expect(rest.api.repliesTo(b.packetRecId)).toHaveLength(1);
      expect(rest.api.repliesTo(dpcB.packetRecId)).toHaveLength(1);
      expect(await touchedLocally(otherSite.packetRecId)).toEqual({ stored: [], audit: 0 });
      expect(rest.api.repliesTo(otherSite.packetRecId)).toHaveLength(0);
    },
  );
});

describe('[14.4] amie packets list --foreign and the warning of amie process', () => {
  const HANDLER = resolve('test/fixtures/handlers/account-handler.js');
  let dir: string;
  const ids: Record<string, number> = {};
  const amie = (args: string[]) => amieInProcess(['-c', join(dir, 'amie.yaml'), ...args], { env: { ...process.env } });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amie-foreign-'));
    writeFileSync(
      join(dir, 'amie.yaml'),
      `site: { name: ${SITE.name}, resources: [${RES_A}, extra.example.org] }\ndatabase: { path: ./db }\nhandler: { module: "${HANDLER}" }\nlog: { level: warn }\n`,
    );
    await initialisedPgliteDir(join(dir, 'db'));
    const db = await openPglite({ path: join(dir, 'db') });
    ids.a = (await seedIncoming(db, 'request_account_create', racTags(1, { ResourceList: [RES_A] }))).packetRecId;
    ids.b = (await seedIncoming(db, 'request_account_create', racTags(2, { ResourceList: [RES_B] }))).packetRecId;
    ids.other = (
      await seedIncoming(db, 'request_account_create', racTags(3, { ResourceList: [RES_A] }), { site: 'OTHERSITE' })
    ).packetRecId;
    // B's packet has waited two days.
    await db.query(`UPDATE packet_tbl SET ts = ts - interval '2 days' WHERE packet_rec_id = $1`, [ids.b]);
    await db.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('[14.4] site.resources is read, its first entry standing for site.resource', async () => {
    const config = await loadConfig(join(dir, 'amie.yaml'));
    expect(config.site).toMatchObject({ resource: RES_A, resources: [RES_A, 'extra.example.org'] });
  });

  it('[14.4] process answers this resource only and warns about the foreign packet that waited long; list --foreign shows both others', async () => {
    const before = await amie(['packets', 'list', '--foreign', '--json']);
    expect(before.code, before.stderr).toBe(0);
    expect((JSON.parse(before.stdout) as Array<{ packetRecId: number }>).map((r) => r.packetRecId)).toEqual([
      ids.other,
      ids.b,
    ]);

    const processed = await amie(['process']);
    expect(processed.code, processed.stderr).toBe(0);
    expect(processed.stdout).toMatch(/1 packet\(s\): 1 answered/);
    expect(processed.stderr).toMatch(/1 pending packet\(s\) of another site or resource have waited over 24 h/);
    expect(processed.stderr).toMatch(/amie packets list --foreign/);

    const after = await amie(['packets', 'list', '--foreign', '--json']);
    expect((JSON.parse(after.stdout) as Array<{ packetRecId: number }>).map((r) => r.packetRecId)).toEqual([
      ids.other,
      ids.b,
    ]);
    const all = await amie(['packets', 'list', '--direction', 'in', '--state', 'in-progress', '--json']);
    expect((JSON.parse(all.stdout) as Array<{ packetRecId: number }>).map((r) => r.packetRecId)).toEqual([
      ids.other,
      ids.b,
    ]);
  });
});
