/**
 * A database with what the status page shows, made the way a site makes it: AMIE scenarios
 * answered by the registry handler, a request refused with a failure whose PI's name holds a
 * script, a packet a handler keeps deferring, and usage records of two projects (one over its
 * allocation), some not accepted.
 */
import { RegistryHandler } from '../../handlers/registry.js';
import type { Database } from '../../src/db/index.js';
import { Dispatcher, defer, type HandlerContext } from '../../src/dispatch/index.js';
import { runScenarios, type ScenarioName } from '../../src/simulator/index.js';
import { SITE, initTestDatabase, quietLog, racTags, seedIncoming } from '../helpers/amie.js';

export const HOSTILE_PI = '<script>alert(1)</script>';
export const HOSTILE_PROJECT = '<b>p-evil</b>';
export const HOSTILE_USER = '<img src=x onerror=alert(2)>';
export const DEFER_REASON = 'waiting for <approval> & "sign-off"';

/** Scenarios enough for every outcome the page draws; all eight take long on a busy machine. */
const SCENARIOS: ScenarioName[] = ['request_account_reactivate', 'supplement', 'invalid_packet'];

/** Keeps every account request waiting, as a site waiting for a person to approve does. */
class Approver extends RegistryHandler {
  override async request_account_create() {
    return defer(DEFER_REASON);
  }
}

const context = (db: Database): HandlerContext<any> => ({ db, log: quietLog, site: SITE, options: {}, dryRun: false });

export interface SeededReport {
  /** ProjectID → charge reported (accepted) since the start of its allocation. */
  used: Map<string, number>;
  /** ProjectID → its allocation. */
  allocation: Map<string, number>;
  stuckPacketRecId: number;
  failedPacketRecId: number;
}

export async function seedReportData(db: Database): Promise<SeededReport> {
  await initTestDatabase(db);
  const dispatcher = new Dispatcher(db, new RegistryHandler(context(db)), quietLog, {
    handlerName: 'registry',
    maxErrorDeferrals: 1,
  });
  const reports = await runScenarios(db, dispatcher, SCENARIOS, { site: SITE, maxRounds: 6 });
  const failed = reports.filter((r) => !r.passed).map((r) => r.name);
  if (failed.length) throw new Error(`scenarios failed while seeding: ${failed.join(', ')}`);

  // A supplement of a project the site does not have: answered with a failure naming it.
  const refused = await seedIncoming(db, 'request_project_create', {
    AllocationType: 'supplement',
    GrantNumber: 'TG-NOSUCH',
    ProjectID: HOSTILE_PROJECT,
    PfosNumber: '1234567',
    PiFirstName: HOSTILE_PI,
    PiLastName: `O'Neil & "Sons"`,
    PiOrganization: 'Example University',
    PiOrgCode: '0012345',
    PiEmail: 'pi@example.edu',
    PiGlobalID: '70099',
    StartDate: '2026-07-01',
    EndDate: '2027-06-30',
    ResourceList: [SITE.resource],
    RecordID: 'rec-report-1',
    ServiceUnitsAllocated: '100',
  });
  await dispatcher.runOnce();

  const stuck = await seedIncoming(db, 'request_account_create', racTags(7, { UserFirstName: HOSTILE_USER }));
  await new Dispatcher(db, new Approver(context(db)), quietLog, { handlerName: 'registry' }).runOnce();

  const { rows: projects } = await db.query<{ project_id: string; service_units: string }>(
    `SELECT project_id, service_units::text FROM amie_toolkit.projects ORDER BY project_id LIMIT 2`,
  );
  if (projects.length < 2) throw new Error('the scenarios left fewer than two projects');
  const [a, b] = projects as [(typeof projects)[0], (typeof projects)[0]];
  await db.query(`UPDATE amie_toolkit.projects SET start_date = current_date - 20 WHERE project_id = ANY($1::text[])`, [
    [a.project_id, b.project_id],
  ]);
  // [project, days ago, charge, status]
  const jobs: Array<[string, number, number, string]> = [
    [a.project_id, 3, 1000, 'reported'],
    [a.project_id, 2, 2500, 'reported'],
    [a.project_id, 1, 500, 'reported'],
    [b.project_id, 2, 30000, 'reported'],
    [b.project_id, 1, 30000, 'reported'],
    [b.project_id, 1, 700, 'failed'],
    [a.project_id, 1, 900, 'pending'],
    // Before the allocation started: not counted against it.
    [a.project_id, 40, 99999, 'reported'],
  ];
  await db.query(
    `INSERT INTO amie_toolkit.reported_jobs
       (cluster, job_id, submit_time, end_time, account, project_id, user_login, charge, charge_unit, sink, status, reason)
     SELECT 'demo', 'job-' || n, now() - make_interval(days => d) - interval '2 hours', now() - make_interval(days => d),
            p, p, 'someone', c, 'gpu-hours', 'usage-api', s, CASE WHEN s = 'failed' THEN 'refused' END
       FROM unnest($1::text[], $2::int[], $3::numeric[], $4::text[]) WITH ORDINALITY AS j(p, d, c, s, n)`,
    [jobs.map((j) => j[0]), jobs.map((j) => j[1]), jobs.map((j) => j[2]), jobs.map((j) => j[3])],
  );
  return {
    used: new Map([
      [a.project_id, 4000],
      [b.project_id, 60000],
    ]),
    allocation: new Map(projects.map((p) => [p.project_id, Number(p.service_units)])),
    stuckPacketRecId: stuck.packetRecId,
    failedPacketRecId: refused.packetRecId,
  };
}
