/**
 * A million jobs already in reported_jobs must not slow the next day's run: every statement a
 * run makes on that table finds the jobs of its own window through an index. Checked on a real
 * PostgreSQL server with the table holding 1,000,000 rows (analysed, as autovacuum leaves it):
 * each statement of a report-usage run (amie-db sink, Usage API sink against the simulator's
 * Usage API, a dry run and a rerun of the same window) is EXPLAINed before it runs, and no plan
 * may read reported_jobs with a sequential scan.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, Queryable, QueryResult } from '../../src/db/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { UsageApiClient } from '../../src/usage/api-client.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { parseSacctStream } from '../../src/usage/sacct.js';
import { UsageApiSink } from '../../src/usage/sinks/usage-api.js';
import { SITE, initTestDatabase, quietLog } from '../helpers/amie.js';
import { freshPgDatabase, type TestDatabase } from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import { BENCH_ACCOUNTS, sacctLines, seedReportedJobs } from '../helpers/sacct-lines.js';

const BACKLOG = 1_000_000;
const API_KEY = 'backlog-test-key';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

function seqScansOn(node: PlanNode, table: string): number {
  const here = /Seq Scan/.test(node['Node Type']) && node['Relation Name'] === table ? 1 : 0;
  return here + (node.Plans ?? []).reduce((n, p) => n + seqScansOn(p, table), 0);
}

/**
 * The database with every statement that names reported_jobs EXPLAINed (same parameters, same
 * connection, not executed) before it runs; the plans are collected in `plans`.
 */
function explaining(db: Database, plans: Array<{ sql: string; plan: PlanNode }>): Database {
  const wrap = (q: Queryable): Queryable => ({
    async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      if (/reported_jobs/.test(sql) && /^\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b/i.test(sql)) {
        const { rows } = await q.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
          `EXPLAIN (FORMAT JSON) ${sql}`,
          params,
        );
        const raw = rows[0]!['QUERY PLAN'];
        const parsed = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: PlanNode }>;
        plans.push({ sql, plan: parsed[0]!.Plan });
      }
      return q.query<R>(sql, params);
    },
    exec: (sql) => q.exec(sql),
  });
  const top = wrap(db);
  return {
    kind: db.kind,
    description: db.description,
    get roundTrips() {
      return db.roundTrips;
    },
    query: (sql, params) => top.query(sql, params),
    exec: (sql) => top.exec(sql),
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    close: () => db.close(),
  };
}

const usage = (sink: 'amie-db' | 'usage-api', url?: string) =>
  UsageConfigSchema.parse({
    sink,
    projects: Object.fromEntries(BENCH_ACCOUNTS.map((a) => [a, `p-${a}`])),
    ...(url ? { usageApi: { url, apiKeyEnv: 'UNUSED', allowInsecureHttp: true } } : {}),
  });

/** One day of the synthetic cluster: jobs numbered from `firstJob`, submitted from `start`. */
function day(firstJob: number, start: Date, lines = 3000) {
  return parseSacctStream(sacctLines(lines, { firstJob, start }));
}

describe.skipIf(!hasPostgres())(`reported_jobs with a million-job backlog${pgSkipNote}`, () => {
  let t: TestDatabase;
  let sim: RestSimulator;
  beforeAll(async () => {
    t = await freshPgDatabase();
    await initTestDatabase(t.db);
    // A year of reported jobs, as earlier runs left them (job ids below the ones the runs read).
    await seedReportedJobs(t.db, BACKLOG);
    sim = await RestSimulator.start({ site: SITE, apiKey: API_KEY, log: quietLog });
  }, 600_000);
  afterAll(async () => {
    await sim?.stop();
    await t?.cleanup();
  });

  it('the next run, its rerun and a dry run read reported_jobs through indexes only (amie-db sink)', async () => {
    const plans: Array<{ sql: string; plan: PlanNode }> = [];
    const db = explaining(t.db, plans);
    const start = new Date(Date.UTC(2024, 2, 1));
    const opts = { site: SITE, usage: usage('amie-db'), since: start, until: new Date(Date.UTC(2024, 2, 2)) };
    const first = await reportUsage(db, { ...opts, records: day(2_000_000, start), log: quietLog });
    expect(first.reported).toBeGreaterThan(1000);
    const again = await reportUsage(db, { ...opts, records: day(2_000_000, start), log: quietLog });
    expect(again.reported).toBe(0);
    expect(again.alreadyReported).toBe(first.reported);
    const dry = await reportUsage(db, { ...opts, dryRun: true, records: day(2_000_000, start), log: quietLog });
    expect(dry.reported).toBe(0);
    expect(plans.length).toBeGreaterThan(10);
    // The check itself sees a whole-table read when there is one (no index on user_login).
    const control: Array<{ sql: string; plan: PlanNode }> = [];
    await explaining(t.db, control).query(`SELECT count(*) FROM amie_toolkit.reported_jobs WHERE user_login = $1`, [
      'user7',
    ]);
    expect(seqScansOn(control[0]!.plan, 'reported_jobs')).toBeGreaterThan(0);
    const scans = plans.filter((p) => seqScansOn(p.plan, 'reported_jobs') > 0).map((p) => p.sql);
    expect(scans).toEqual([]);
  }, 300_000);

  it('the Usage API sink claims and records its jobs through indexes only', async () => {
    const plans: Array<{ sql: string; plan: PlanNode }> = [];
    const db = explaining(t.db, plans);
    const start = new Date(Date.UTC(2024, 3, 1));
    const client = new UsageApiClient({ url: sim.usageUrl, site: SITE.name, apiKey: API_KEY, allowInsecureHttp: true });
    const r = await reportUsage(db, {
      site: SITE,
      usage: usage('usage-api', sim.usageUrl),
      since: start,
      until: new Date(Date.UTC(2024, 3, 2)),
      sinkImpl: new UsageApiSink(db, client, SITE, quietLog),
      records: day(3_000_000, start),
      log: quietLog,
    });
    expect(r.reported).toBeGreaterThan(1000);
    expect(r.failed).toBe(0);
    const scans = plans.filter((p) => seqScansOn(p.plan, 'reported_jobs') > 0).map((p) => p.sql);
    expect(scans).toEqual([]);
  }, 300_000);
});
