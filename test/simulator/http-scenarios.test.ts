import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RegistryHandler } from '../../handlers/registry.js';
import type { Database } from '../../src/db/index.js';
import { Dispatcher, type HandlerContext, type IncomingPacket, type PacketContext } from '../../src/dispatch/index.js';
import { listAccounts, listPeople, type RegistryAccount } from '../../src/registry/index.js';
import {
  EXTRA_CHECKS,
  OFFICIAL_SCENARIOS,
  formatScenarioReport,
  runScenarios,
  type ScenarioReport,
} from '../../src/simulator/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { restSourceFor } from '../../src/simulator/rest-site.js';
import { TablesSource, type PacketSource } from '../../src/sources/index.js';
import { SITE, quietLog } from '../helpers/amie.js';
import { driverCases, freshPgliteDatabase, type TestDatabase } from '../helpers/db.js';
import { startRestSimulator } from '../helpers/simulator.js';

const KEY = 'scenario-key-not-secret';
const simulation = { site: SITE, maxRounds: 6 };

function failures(r: ScenarioReport): string {
  return r.checks
    .filter((c) => !c.ok)
    .map((c) => c.message)
    .join('\n');
}

function expectPassed(reports: ScenarioReport[]): void {
  for (const r of reports)
    expect(failures(r), `${r.name}\n${formatScenarioReport(r, { verbose: true }).join('\n')}`).toBe('');
  expect(reports.every((r) => r.passed)).toBe(true);
}

const context = (db: Database): HandlerContext<any> => ({ db, log: quietLog, site: SITE, options: {}, dryRun: false });

describe.each(driverCases())('the scenarios over the HTTP simulator, site database on $name', (driver) => {
  let site: TestDatabase;
  let sim: RestSimulator;
  beforeEach(async () => {
    if (!driver.available) return;
    site = await driver.open({ init: true });
    sim = await startRestSimulator({ site: SITE, apiKey: KEY });
  });
  afterEach(async () => {
    await sim?.stop();
    await site?.cleanup();
  });
  const run = it.skipIf(!driver.available);

  run('the registry handler passes the four official scenarios and the extra checks through the REST API', async () => {
    const dispatcher = new Dispatcher(
      restSourceFor(sim, KEY, site.db, quietLog),
      new RegistryHandler(context(site.db)),
      quietLog,
      { maxErrorDeferrals: 1 },
    );
    const reports = await runScenarios(sim.db, dispatcher, [...OFFICIAL_SCENARIOS, ...EXTRA_CHECKS], simulation);
    expectPassed(reports);

    // Everything went over HTTP: the site's tables saw no packet; its registry has the people.
    const { rows } = await site.db.query<{ n: number }>('SELECT count(*)::int AS n FROM packet_tbl');
    expect(rows[0]!.n).toBe(0);
    const people = await listPeople(site.db, { includeMerged: true });
    expect(people.map((p) => p.lastName)).toContain("O'Brien-Ní Dhomhnaill");
    expect(people.filter((p) => p.mergedInto !== null)).toHaveLength(1);
    expect((await listAccounts(site.db)).length).toBeGreaterThan(0);

    // Each reply was POSTed once: the server never refused one as a duplicate or as invalid.
    const posts = sim.requests.filter((r) => r.api === 'amie' && r.method === 'POST');
    expect(posts.length).toBeGreaterThan(20);
    expect(posts.filter((r) => r.status !== 200)).toEqual([]);
  });
});

/** A site's own handler: the registry with the site's ids, and its account work recorded. */
class SiteHandler extends RegistryHandler {
  readonly accountWork: string[] = [];
  override assignProjectId(packet: IncomingPacket<'request_project_create'>): string {
    return `p-${packet.tags.GrantNumber.trim().toLowerCase()}`;
  }
  override assignPersonId(login: string): string {
    return `u-${login}`;
  }
  override async setAccountActive(account: RegistryAccount, active: boolean, _ctx: PacketContext): Promise<void> {
    this.accountWork.push(
      `${active ? 'activate' : 'inactivate'} ${account.personId.startsWith('u-') ? 'u-…' : account.personId}`,
    );
  }
}

const NEW_PROJECT = [
  'request_project_create -> notify_project_create',
  'data_project_create -> inform_transaction_complete Success',
];
const NEW_ACCOUNT = [
  'request_account_create -> notify_account_create',
  'data_account_create -> inform_transaction_complete Success',
];
/** What each scenario's conversation must be, packet in -> reply out, whatever the source. */
const CONVERSATIONS = {
  request_project_reactivate: [
    ...NEW_PROJECT,
    'request_project_inactivate -> notify_project_inactivate',
    'inform_transaction_complete -> (closes)',
    'request_project_reactivate -> notify_project_reactivate',
    'inform_transaction_complete -> (closes)',
  ],
  request_account_reactivate: [
    ...NEW_PROJECT,
    ...NEW_ACCOUNT,
    'request_account_inactivate -> notify_account_inactivate',
    'inform_transaction_complete -> (closes)',
    ...NEW_ACCOUNT,
  ],
  request_person_merge: [
    ...NEW_PROJECT,
    ...NEW_ACCOUNT,
    ...NEW_ACCOUNT,
    'request_person_merge -> inform_transaction_complete Success',
  ],
  request_user_modify: [
    ...NEW_PROJECT,
    'request_user_modify -> inform_transaction_complete Success',
    'request_user_modify -> inform_transaction_complete Success',
  ],
  record_id_repeat: [...NEW_PROJECT, ...NEW_PROJECT],
  supplement: [...NEW_PROJECT, ...NEW_PROJECT],
  known_pi: [...NEW_PROJECT, ...NEW_PROJECT],
  invalid_packet: ['request_project_create -> inform_transaction_complete Failure'],
};

describe('one handler class, either source', () => {
  const opened: Array<{ stop(): Promise<void> }> = [];
  afterEach(async () => {
    for (const o of opened.splice(0).reverse()) await o.stop();
  });

  // Changing `source:` is all a site does to move to the REST API: the same class, the same results.
  it.each(['tables', 'rest'] as const)('a site handler class passes every scenario with source: %s', async (source) => {
    const site = await freshPgliteDatabase({ init: true });
    opened.push({ stop: () => site.cleanup() });
    let centralDb: Database = site.db;
    let packetSource: PacketSource = new TablesSource(site.db);
    if (source === 'rest') {
      const sim = await startRestSimulator({ site: SITE, apiKey: KEY });
      opened.push(sim);
      centralDb = sim.db;
      packetSource = restSourceFor(sim, KEY, site.db, quietLog);
    }
    const handler = new SiteHandler(context(site.db));
    const dispatcher = new Dispatcher(packetSource, handler, quietLog, { maxErrorDeferrals: 1 });
    const reports = await runScenarios(centralDb, dispatcher, [...OFFICIAL_SCENARIOS, ...EXTRA_CHECKS], simulation);
    expectPassed(reports);
    // Over the REST API the site answers central's closing ITC with a success ITC; the tables only take it.
    const expected = (line: string) =>
      source === 'rest' ? line.replace('-> (closes)', '-> inform_transaction_complete Success') : line;
    expect(Object.fromEntries(reports.map((r) => [r.name, r.conversation.map((c) => `${c.in} -> ${c.out}`)]))).toEqual(
      Object.fromEntries(Object.entries(CONVERSATIONS).map(([name, lines]) => [name, lines.map(expected)])),
    );
    // The site's own ids went out in the replies, and its account work was done.
    const ids = reports.flatMap((r) => r.conversation.map((c) => c.ids)).join(' ');
    expect(ids).toMatch(/ProjectID=p-tg-/);
    expect(ids).toMatch(/UserPersonID=u-/);
    expect(ids).not.toMatch(/ProjectID=TG-/);
    // Project inactivate/reactivate (the PI's account), then account inactivate and the reactivating RAC.
    expect(handler.accountWork).toEqual(['inactivate u-…', 'activate u-…', 'inactivate u-…', 'activate u-…']);
  });
});
