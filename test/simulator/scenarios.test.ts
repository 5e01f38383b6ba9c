import { describe, it, expect } from 'vitest';
import { Dispatcher, type HandlerContext, type IncomingPacket, type PacketContext } from '../../src/dispatch/index.js';
import { RegistryHandler, type RegistryOptionsInput } from '../../handlers/registry.js';
import {
  EXTRA_CHECKS,
  OFFICIAL_SCENARIOS,
  formatScenarioReport,
  resolveScenarioNames,
  runScenario,
  runScenarios,
  type ScenarioReport,
} from '../../src/simulator/index.js';
import { listAccounts, listPeople } from '../../src/registry/index.js';
import { driverCases, type TestDatabase, databaseEachTest } from '../helpers/db.js';
import { SITE, quietLog } from '../helpers/amie.js';

const context = (db: TestDatabase['db']): HandlerContext<any> => ({
  db,
  log: quietLog,
  site: SITE,
  options: {},
  dryRun: false,
});
const simulation = { site: SITE, maxRounds: 6 };

function dispatcherFor(
  db: TestDatabase['db'],
  Handler: typeof RegistryHandler<RegistryOptionsInput> = RegistryHandler,
) {
  return new Dispatcher(db, new Handler(context(db)), quietLog, { maxErrorDeferrals: 1 });
}

function failures(r: ScenarioReport): string {
  return r.checks
    .filter((c) => !c.ok)
    .map((c) => c.message)
    .join('\n');
}

/** Forgets the UserPersonID a NAC must carry. */
class NacWithoutPersonId extends RegistryHandler {
  override async request_account_create(p: IncomingPacket<'request_account_create'>, ctx: PacketContext) {
    const reply = (await super.request_account_create(p, ctx)) as Record<string, unknown>;
    delete reply.UserPersonID;
    return reply as never;
  }
}

/** Answers a RAC about another project than the one it names. */
class WrongProjectId extends RegistryHandler {
  override async request_account_create(p: IncomingPacket<'request_account_create'>, ctx: PacketContext) {
    const reply = (await super.request_account_create(p, ctx)) as Record<string, unknown>;
    return { ...reply, ProjectID: 'p-somewhere-else' } as never;
  }
}

/** Never decides anything. */
class Procrastinator extends RegistryHandler {
  override async request_project_create() {
    return (await import('../../src/dispatch/index.js')).defer('waiting for a person to approve');
  }
}

describe.each(driverCases())('simulator with the registry handler on $name', (driver) => {
  const t = databaseEachTest(driver);
  const run = it.skipIf(!driver.available);

  run(
    'passes the four official scenarios and the extra checks, twice on the same database',
    async () => {
      const dispatcher = dispatcherFor(t.db);
      for (let pass = 0; pass < 2; pass++) {
        const reports = await runScenarios(t.db, dispatcher, resolveScenarioNames('all'), simulation);
        expect(reports.map((r) => r.name)).toEqual([...OFFICIAL_SCENARIOS, ...EXTRA_CHECKS]);
        for (const r of reports)
          expect(failures(r), `${r.name}\n${formatScenarioReport(r, { verbose: true }).join('\n')}`).toBe('');
        expect(reports.every((r) => r.passed)).toBe(true);
      }
      const { rows } = await t.db.query<{ state: string; n: number }>(
        `SELECT s.state_name AS state, count(*)::int AS n FROM transaction_tbl t JOIN state_des s USING (state_id) GROUP BY 1`,
      );
      // What the scenarios did is in the registry: names arrive intact, a person was merged away,
      // and the reactivated account is active again.
      const people = await listPeople(t.db, { includeMerged: true });
      expect(people.map((p) => p.lastName)).toContain("O'Brien-Ní Dhomhnaill");
      expect(people.filter((p) => p.mergedInto !== null)).toHaveLength(2);
      const accounts = await listAccounts(t.db);
      expect(accounts.length).toBeGreaterThan(0);
      expect(accounts.every((a) => a.active)).toBe(true);
      // Every transaction ended; only the invalid packets' transactions failed.
      expect(Object.fromEntries(rows.map((r) => [r.state, r.n]))).toEqual({ completed: 2 * 20, failed: 2 });
    },
    120_000,
  );
});

describe('simulator verdicts on broken handlers (pglite)', () => {
  const t = databaseEachTest(driverCases()[0]!);

  it('fails request_account_reactivate when the NAC has no UserPersonID, naming the tag', async () => {
    const report = await runScenario(
      t.db,
      dispatcherFor(t.db, NacWithoutPersonId),
      'request_account_reactivate',
      simulation,
    );
    expect(report.passed).toBe(false);
    expect(failures(report)).toMatch(/request_account_create .*failure ITC.*UserPersonID: required tag is missing/);
    expect(failures(report)).toContain('later steps were not sent');
    // The RAC's transaction ended; the scenario sent nothing after it.
    expect(report.conversation.map((r) => r.in)).toEqual([
      'request_project_create',
      'data_project_create',
      'request_account_create',
    ]);
  });

  it('fails when the NAC answers about another ProjectID than the RAC names', async () => {
    const report = await runScenario(t.db, dispatcherFor(t.db, WrongProjectId), 'request_person_merge', simulation);
    expect(report.passed).toBe(false);
    expect(failures(report)).toMatch(
      /notify_account_create \(packet_id 2\) has inconsistent ids: ProjectID is "p-somewhere-else", expected "TG-SIM\w+" \(the ProjectID of the request_account_create\)/,
    );
  });

  it('fails, without hanging, when the handler defers for ever, and leaves the transaction failed', async () => {
    const report = await runScenario(t.db, dispatcherFor(t.db, Procrastinator), 'request_user_modify', simulation);
    expect(report.passed).toBe(false);
    expect(failures(report)).toContain(
      'not finished after 6 rounds of the dispatcher; the site left its request_project_create in progress (defer: waiting for a person to approve)',
    );
    const { rows } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM transaction_tbl WHERE state_id = 2`,
    );
    expect(rows[0]!.n).toBe(0);
  });

  it('fails invalid_packet when the site accepts a packet missing required tags', async () => {
    // Validation happens in the dispatcher; a site that bypasses it is played by a runner that answers blindly.
    const { writePacket, listTransactionPackets, setPacketState } = await import('../../src/store/index.js');
    const { PacketBody } = await import('../../src/protocol/index.js');
    const blind = {
      async runOnce() {
        const { rows } = await t.db.query<{ trans_rec_id: number; packet_rec_id: number }>(
          `SELECT trans_rec_id, packet_rec_id FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 2`,
        );
        for (const r of rows) {
          const packets = await listTransactionPackets(t.db, r.trans_rec_id);
          await setPacketState(t.db, r.packet_rec_id, 'completed');
          await writePacket(t.db, {
            transRecId: r.trans_rec_id,
            packetId: packets.length + 1,
            type: 'notify_project_create',
            outgoing: true,
            rows: PacketBody.fromTags({
              GrantNumber: 'TG-X',
              PfosNumber: '1',
              PiOrgCode: '1',
              PiPersonID: 'x',
              PiRemoteSiteLogin: 'x',
              ProjectID: 'TG-X',
              ProjectTitle: 'x',
              ResourceList: [SITE.resource],
              ServiceUnitsAllocated: '1',
              StartDate: '2026-01-01',
            }).toRows(),
          });
        }
        return { results: [] };
      },
    };
    const report = await runScenario(t.db, blind, 'invalid_packet', simulation);
    expect(report.passed).toBe(false);
    expect(failures(report)).toContain(
      'the site answered an invalid request_project_create with notify_project_create instead of a failure ITC',
    );
  });
});

describe('scenario names', () => {
  it('knows its scenario names', () => {
    expect(resolveScenarioNames('all')).toHaveLength(8);
    expect(resolveScenarioNames('supplement,known_pi')).toEqual(['supplement', 'known_pi']);
    expect(() => resolveScenarioNames('request_project_create')).toThrow(
      /unknown scenario "request_project_create"; expected all or one of request_project_reactivate/,
    );
  });
});
