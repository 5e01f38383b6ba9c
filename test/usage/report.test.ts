import { describe, it, expect } from 'vitest';
import { PacketBody, validateBody } from '../../src/protocol/index.js';
import { lastUsageRunUntil } from '../../src/store/index.js';
import { UsageConfigSchema, type UsageConfig } from '../../src/usage/index.js';
import { formatUsageSummary, reportUsage, resolveUsageWindow } from '../../src/usage/report.js';
import { parseSacctStream, type SacctRecord } from '../../src/usage/sacct.js';
import { AmieDbSink } from '../../src/usage/sinks/amie-db.js';
import type { ChargedJob, UsageSink } from '../../src/usage/sinks/types.js';
import { SITE, outgoingPackets, quietLog } from '../helpers/amie.js';
import { driverCases, databaseEachTest } from '../helpers/db.js';

/** One sacct line in the parser's field order. */
function line(o: {
  id: string;
  account?: string;
  user?: string;
  gpus?: number;
  elapsed?: number;
  submit?: string;
  start?: string;
  end?: string;
  state?: string;
  cpus?: number;
}): string {
  const gpus = o.gpus ?? 1;
  const tres = `billing=4,cpu=${o.cpus ?? 4}${gpus ? `,gres/gpu=${gpus}` : ''},mem=8G,node=1`;
  return [
    o.id,
    o.id,
    'delta',
    o.user ?? 'alice',
    o.account ?? 'abc123',
    'gpu',
    o.state ?? 'COMPLETED',
    o.submit ?? '2024-03-01T10:00:00',
    o.start ?? '2024-03-01T10:00:05',
    o.end ?? '2024-03-01T11:00:05',
    '01:00:00',
    String(o.elapsed ?? 3600),
    '1',
    String(o.cpus ?? 4),
    tres,
  ].join('|');
}

async function collect(lines: string[]): Promise<SacctRecord[]> {
  const out: SacctRecord[] = [];
  for await (const r of parseSacctStream(lines)) out.push(r);
  return out;
}

function usageConfig(extra: Record<string, unknown> = {}): UsageConfig {
  return UsageConfigSchema.parse({ projects: { abc123: 'p-abc123', XYZ789: 'p-xyz789' }, ...extra });
}

const WINDOW = { since: new Date('2024-03-01T00:00:00Z'), until: new Date('2024-03-02T00:00:00Z') };

const MIXED = [
  line({ id: '1001', gpus: 2, elapsed: 3600 }),
  line({ id: '1002', gpus: 1, elapsed: 5400, user: 'bob' }),
  line({ id: '1003', gpus: 4, elapsed: 900, account: 'xyz789' }),
  line({ id: '1004', gpus: 0, elapsed: 3600 }), // CPU job: zero GPU-hours
  line({ id: '1005', gpus: 2, account: 'nobody' }),
  line({ id: '1006', gpus: 2, account: 'nobody' }),
  line({ id: '1007', state: 'RUNNING', end: 'Unknown' }),
  'garbage',
];

describe.each(driverCases())('usage reporter on $name', (driver) => {
  const t = databaseEachTest(driver);
  const run = it.skipIf(!driver.available);

  const report = async (lines: string[], extra: Partial<Parameters<typeof reportUsage>[1]> = {}) =>
    reportUsage(t.db, {
      site: SITE,
      usage: usageConfig(),
      ...WINDOW,
      records: await collect(lines),
      log: quietLog,
      ...extra,
    });

  run('writes one NPU packet per charged job with the tags of the protocol, and skips the rest by reason', async () => {
    const s = await report(MIXED);
    expect(s).toMatchObject({ jobsSeen: 6, reported: 3, alreadyReported: 0, failed: 0, sink: 'amie-db' });
    expect(s.skipped).toEqual({
      'zero charge (no GPUs)': 1,
      'unmapped Slurm account nobody': 2,
      'not finished yet': 1,
      'unreadable sacct line': 1,
    });
    expect(s.unmappedAccounts).toEqual({ nobody: 2 });
    expect(s.gpuHoursPerProject).toEqual({ 'p-abc123': 3.5, 'p-xyz789': 1 });
    expect(formatUsageSummary(s).join('\n')).toContain('p-abc123: 3.5 GPU-hours');

    const out = await outgoingPackets(t.db);
    expect(out).toHaveLength(3);
    for (const p of out) {
      expect(p).toMatchObject({ type_name: 'notify_project_usage', packetId: 1, state_id: '2' });
      expect(validateBody('notify_project_usage', PacketBody.fromJSON(p.body))).toEqual([]);
    }
    const first = out.find((p) => (p.body.JobIdentity as Array<Record<string, string>>)[0]!.LocalJobID === '1001')!;
    expect(first.body).toMatchObject({
      UsageType: 'normal',
      ProjectID: 'p-abc123',
      MachineName: SITE.resource,
      UserLogin: 'alice',
      SubmitTime: '2024-03-01T10:00:00Z',
      StartTime: '2024-03-01T10:00:05Z',
      EndTime: '2024-03-01T11:00:05Z',
      WallDuration: 'PT3600S',
      NodeCount: '1',
      Processors: '2',
      Queue: 'gpu',
      Charge: '2',
    });
    const ids = first.body.RecordIdentity as Array<Record<string, string>>;
    expect(ids[0]!.RecordID).toBe('delta:1001:1709287200');
    expect(ids[0]!.CreateTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);

    const { rows: tx } = await t.db.query<{
      originating_site_name: string;
      local_site_name: string;
      remote_site_name: string;
      state_id: string;
    }>('SELECT originating_site_name, local_site_name, remote_site_name, state_id::text FROM transaction_tbl');
    expect(tx).toHaveLength(3);
    for (const r of tx)
      expect(r).toEqual({
        originating_site_name: SITE.name,
        local_site_name: SITE.name,
        remote_site_name: SITE.remoteSite,
        state_id: '2',
      });
    const { rows: replies } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM expected_reply_tbl e JOIN type_des d ON d.type_id = e.type_id
        WHERE d.type_name = 'inform_transaction_complete' AND e.timeout = 30240`,
    );
    expect(replies[0]!.n).toBe(3);
    const { rows: jobs } = await t.db.query<{ job_id: string; packet_rec_id: number; charge: string; status: string }>(
      'SELECT job_id, packet_rec_id, charge::text, status FROM amie_toolkit.reported_jobs ORDER BY job_id',
    );
    expect(jobs.map((j) => [j.job_id, j.charge, j.status])).toEqual([
      ['1001', '2', 'reported'],
      ['1002', '1.5', 'reported'],
      ['1003', '1', 'reported'],
    ]);
    expect(new Set(jobs.map((j) => j.packet_rec_id)).size).toBe(3);
    expect(jobs.every((j) => out.some((p) => p.packet_rec_id === j.packet_rec_id))).toBe(true);
  });

  run('a rerun over the same window reports nothing new', async () => {
    await report(MIXED);
    const again = await report(MIXED);
    expect(again).toMatchObject({ jobsSeen: 6, reported: 0, alreadyReported: 3 });
    expect(again.chargePerProject).toEqual({});
    expect(await outgoingPackets(t.db)).toHaveLength(3);
  });

  run('a requeued job (same id, new submit time) is a new record; the same submit time is not', async () => {
    await report([line({ id: '2001', gpus: 1 })]);
    const s = await report([
      line({ id: '2001', gpus: 1 }),
      line({
        id: '2001',
        gpus: 1,
        submit: '2024-03-01T12:00:00',
        start: '2024-03-01T12:00:01',
        end: '2024-03-01T13:00:01',
      }),
    ]);
    expect(s).toMatchObject({ reported: 1, alreadyReported: 1 });
  });

  run('the registry mapping wins over the config map and is read once per run', async () => {
    await t.db.exec(`
      ALTER TABLE amie_toolkit.projects ADD COLUMN IF NOT EXISTS slurm_account text;
      INSERT INTO amie_toolkit.people (person_id, first_name, last_name) VALUES ('u-1', 'Ann', 'Lee');
      INSERT INTO amie_toolkit.projects (project_id, grant_number, pi_person_id, resource, slurm_account)
        VALUES ('p-reg1', 'TG-REG1', 'u-1', 'cluster.example.org', 'abc123'),
               ('p-reg2', 'TG-REG2', 'u-1', 'cluster.example.org', 'nobody');`);
    const s = await report(MIXED);
    expect(s.gpuHoursPerProject).toEqual({ 'p-reg1': 3.5, 'p-reg2': 4, 'p-xyz789': 1 });
    expect(s.unmappedAccounts).toEqual({});
  });

  run('a dry run counts what it would report and writes nothing', async () => {
    await report(MIXED.slice(0, 1));
    const before = t.db.roundTrips;
    const s = await report(MIXED, { dryRun: true });
    expect(s).toMatchObject({ dryRun: true, runId: null, reported: 2, alreadyReported: 1 });
    expect(t.db.roundTrips - before).toBeLessThan(10);
    expect(await outgoingPackets(t.db)).toHaveLength(1);
    const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM amie_toolkit.usage_runs');
    expect(rows[0]!.n).toBe(1);
  });

  run('writes a batch in one transaction of a few statements, not a round trip per job or tag', async () => {
    const lines = Array.from({ length: 250 }, (_, i) => line({ id: String(3000 + i), gpus: 1 + (i % 4) }));
    const records = await collect(lines);
    const before = t.db.roundTrips;
    const s = await reportUsage(t.db, {
      site: SITE,
      usage: usageConfig({ batchSize: 100 }),
      ...WINDOW,
      records,
      log: quietLog,
    });
    expect(s.reported).toBe(250);
    // Three batches of BEGIN, two statements, COMMIT; plus the run's own bookkeeping.
    expect(t.db.roundTrips - before).toBeLessThanOrEqual(3 * 4 + 8);
    const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM data_tbl');
    expect(rows[0]!.n).toBe(250 * 15);
  });

  run('a crash between batches and a rerun report each job once', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => line({ id: String(4000 + i), gpus: 1 }));
    const real = new AmieDbSink(t.db, SITE);
    let batches = 0;
    const crashing: UsageSink = {
      name: 'amie-db',
      async writeBatch(jobs: readonly ChargedJob[], runId: number | null) {
        if (++batches === 3) throw new Error('simulated crash');
        return real.writeBatch(jobs, runId);
      },
    };
    await expect(report(lines, { usage: usageConfig({ batchSize: 10 }), sinkImpl: crashing })).rejects.toThrow(
      'simulated crash',
    );
    expect(await outgoingPackets(t.db)).toHaveLength(20);
    const s = await report(lines, { usage: usageConfig({ batchSize: 10 }) });
    expect(s).toMatchObject({ reported: 10, alreadyReported: 20 });
    const { rows } = await t.db.query<{ n: number; distinct: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT v.value)::int AS distinct FROM data_tbl v WHERE v.tag = 'JobIdentity'`,
    );
    expect(rows[0]).toEqual({ n: 30, distinct: 30 });
    const { rows: runs } = await t.db.query<{ status: string }>(
      'SELECT status FROM amie_toolkit.usage_runs ORDER BY run_id',
    );
    expect(runs.map((r) => r.status)).toEqual(['failed', 'finished']);
  });

  run('without --since a run continues from the last finished run, minus the overlap', async () => {
    const first = await resolveUsageWindow(t.db, {
      sink: 'amie-db',
      overlapHours: 24,
      firstRunDays: 7,
      now: WINDOW.until,
    });
    expect(first).toEqual({ since: new Date('2024-02-24T00:00:00Z'), until: WINDOW.until, sinceFrom: 'first-run' });
    await report([line({ id: '5001' })]);
    expect(await lastUsageRunUntil(t.db, 'amie-db')).toEqual(WINDOW.until);
    const next = await resolveUsageWindow(t.db, {
      sink: 'amie-db',
      overlapHours: 6,
      firstRunDays: 7,
      now: new Date('2024-03-03T00:00:00Z'),
    });
    expect(next).toEqual({
      since: new Date('2024-03-01T18:00:00Z'),
      until: new Date('2024-03-03T00:00:00Z'),
      sinceFrom: 'last-run',
    });
    // Another sink keeps its own position.
    const other = await resolveUsageWindow(t.db, {
      sink: 'usage-api',
      overlapHours: 6,
      firstRunDays: 1,
      now: WINDOW.until,
    });
    expect(other.sinceFrom).toBe('first-run');
  });
});

describe('usage config', () => {
  it('defaults to the amie-db sink and GPU-hours', () => {
    expect(UsageConfigSchema.parse({})).toMatchObject({
      sink: 'amie-db',
      charge: 'gpu-hours',
      projects: {},
      overlapHours: 24,
      firstRunDays: 7,
    });
  });
  it('the usage-api sink needs usageApi', () => {
    const r = UsageConfigSchema.safeParse({ sink: 'usage-api' });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['usageApi']);
  });
  it('refuses an API key in place of the name of its variable', () => {
    const r = UsageConfigSchema.safeParse({
      usageApi: { url: 'https://usage.example.org/', apiKeyEnv: 'sk-123/abc=' },
    });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.message).toContain('NAME of an environment variable');
  });
});
