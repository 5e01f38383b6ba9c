/**
 * Hostile and stuck inputs of the usage reporter: job names that try to forge sacct lines, a sacct
 * that never answers, a usage lock someone else holds, a resend racing a run, and usage records
 * whose ids would collide across clusters and the runs of a requeued job. sacct is a stand-in
 * program (usage.sacctPath) that prints what real sacct would for the --format it is given; the
 * Usage API is the simulator's, over HTTP.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPglite } from '../../src/db/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { claimReportedJobs, initDatabase, listUnreportedJobs } from '../../src/store/index.js';
import {
  SACCT_FIELDS,
  SacctError,
  UsageConfigSchema,
  UsageRunBusyError,
  reportUsage,
  resendUsage,
  usageApiClient,
  withUsageLock,
  type ChargedJob,
  type UsageSink,
} from '../../src/usage/index.js';
import { SITE, outgoingPackets, quietLog } from '../helpers/amie.js';
import {
  databaseEachTest,
  freshPgDatabase,
  freshPgliteDatabase,
  initialisedPgliteDir,
  driverCase,
  type TestDatabase,
} from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import { CLI, plainLines, runAmie } from '../helpers/reliability.js';
import { startRestSimulator } from '../helpers/simulator.js';
import { sacctFields, sacctRecords } from '../helpers/sacct-lines.js';
import { processAlive } from '../../src/lockfile.js';

const API_KEY = 'test-usage-key-not-secret';
const WINDOW = { since: new Date('2024-03-01T00:00:00Z'), until: new Date('2024-03-02T00:00:00Z') };
const SUBMIT_EPOCH = Date.UTC(2024, 2, 1, 10) / 1000;

/** One job as Slurm keeps it, by sacct --format field name (JobName and Comment are the owner's text). */
type Job = Record<string, string>;

function job(o: Job & { JobID: string }): Job {
  return {
    ...sacctFields(o.JobID, {
      End: '2024-03-01T10:01:05',
      Elapsed: '00:01:00',
      ElapsedRaw: '60',
      AllocTRES: 'billing=4,cpu=4,gres/gpu=1,node=1',
    }),
    JobName: 'train',
    Comment: '',
    ...o,
  };
}

/** A line as `sacct -P --format=...` prints it: fields as stored, joined by `|`, nothing escaped. */
const lineOf = (j: Job, format: readonly string[]) => format.map((f) => j[f] ?? '').join('|');

/** 421 GPUs for a day: 10,104 GPU-hours, if anyone believed it. */
const FORGED = job({
  JobID: '99999',
  Start: '2024-03-01T00:00:00',
  End: '2024-03-02T00:00:00',
  Elapsed: '1-00:00:00',
  ElapsedRaw: '86400',
  AllocTRES: 'billing=1,cpu=1,gres/gpu=421,node=1',
  JobName: 'x',
});
/** A job name with a newline and a record-shaped tail, for the format asked now and with JobName at the end (as it was asked before). */
const FORGING_NAME = `x\n${lineOf(FORGED, SACCT_FIELDS)}\n${lineOf({ ...FORGED, JobID: '99998', JobIDRaw: '99998' }, [...SACCT_FIELDS, 'JobName'])}`;

let dir: string;
let sim: RestSimulator;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'amie-hostile-usage-'));
  sim = await startRestSimulator({ site: SITE, apiKey: API_KEY });
});
afterAll(async () => {
  await sim?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  sim.usage.reset();
  sim.clearFaults();
});

let scripts = 0;
/** An executable stand-in for sacct; `body` is a shell script. */
function fakeSacct(body: string): string {
  const path = join(dir, `sacct-${++scripts}`);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** A stand-in that prints `jobs` the way real sacct does: exactly the fields --format asks for. */
function sacctPrinting(jobs: Job[]): string {
  const data = join(dir, `jobs-${++scripts}.json`);
  writeFileSync(data, JSON.stringify(jobs));
  const path = join(dir, `sacct-${++scripts}`);
  writeFileSync(
    path,
    `#!${process.execPath}\n` +
      `const jobs = JSON.parse(require('node:fs').readFileSync(${JSON.stringify(data)}, 'utf8'));\n` +
      `const format = process.argv.find((a) => a.startsWith('--format=')).slice('--format='.length).split(',');\n` +
      `for (const j of jobs) process.stdout.write(format.map((f) => j[f] ?? '').join('|') + '\\n');\n`,
  );
  chmodSync(path, 0o755);
  return path;
}

const usageConfig = (extra: Record<string, unknown> = {}) =>
  UsageConfigSchema.parse({
    projects: { abc123: 'p-abc123' },
    usageApi: { url: sim.usageUrl, apiKeyEnv: 'AMIE_USAGE_API_KEY', maxRetries: 2 },
    ...extra,
  });

describe('job names that try to forge usage', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('[12.10] a job name holding a newline and a record-shaped tail charges nothing: only the real job is reported', async () => {
    const sacctPath = sacctPrinting([job({ JobID: '5001', JobName: FORGING_NAME, Comment: FORGING_NAME })]);
    const s = await reportUsage(t.db, { site: SITE, usage: usageConfig({ sacctPath }), ...WINDOW, log: quietLog });
    expect(s).toMatchObject({ jobsSeen: 1, reported: 1, failed: 0 });
    expect(s.gpuHoursPerProject).toEqual({ 'p-abc123': 60 / 3600 });
    const packets = await outgoingPackets(t.db);
    expect(packets.map((p) => (p.body.JobIdentity as Array<Record<string, string>>)[0]!.LocalJobID)).toEqual(['5001']);
    // No user text reaches the usage records at all.
    expect(JSON.stringify(packets)).not.toContain('99999');
  });

  /**
   * Malformed corpus: sacct output in which a job name's newline split a record. Whatever the
   * tail holds, a line without exactly the fields asked for is counted as unreadable and never
   * charged, and the jobs around it are charged exactly.
   */
  const TAILS: Record<string, string> = {
    'a record in the old format (JobName last: one field too many)': lineOf(FORGED, [...SACCT_FIELDS, 'JobName']),
    'a record one field short': lineOf(FORGED, SACCT_FIELDS.slice(1)),
    'a record with a | inside a field': lineOf({ ...FORGED, User: 'ali|ce' }, SACCT_FIELDS),
    'two records on one line': `${lineOf(FORGED, SACCT_FIELDS)}${lineOf(FORGED, SACCT_FIELDS)}`,
    'only separators (as many as a record has)': '|'.repeat(SACCT_FIELDS.length - 1),
    'the bare rest of the name': 'x',
    'a carriage return and a record': `\r${lineOf(FORGED, [...SACCT_FIELDS, 'JobName'])}`,
    'a record after a NUL': `\u0000${lineOf(FORGED, [...SACCT_FIELDS, 'JobName'])}`,
    'a 1 MB line': 'A|'.repeat(512 * 1024),
    'several tail lines': `${lineOf(FORGED, [...SACCT_FIELDS, 'JobName'])}\n${lineOf(FORGED, [...SACCT_FIELDS, 'JobName', 'Comment'])}\nrest`,
  };

  it('[12.10] malformed corpus: newline-bearing job names split into lines that are counted as unreadable, never charged', async () => {
    const lines: string[] = [];
    let hostile = 0;
    Object.values(TAILS).forEach((tail, i) => {
      lines.push(lineOf(job({ JobID: String(6000 + i) }), SACCT_FIELDS));
      const tailLines = tail.split('\n');
      hostile += tailLines.length;
      lines.push(...tailLines);
    });
    const s = await reportUsage(t.db, {
      site: SITE,
      usage: usageConfig(),
      ...WINDOW,
      records: await sacctRecords(lines),
      log: quietLog,
    });
    const n = Object.keys(TAILS).length;
    expect(s).toMatchObject({ jobsSeen: n, reported: n });
    expect(s.skipped).toEqual({ 'unreadable sacct line': hostile });
    expect(s.gpuHoursPerProject['p-abc123']).toBeCloseTo((n * 60) / 3600, 9);
  });
});

describe('sacct text named like prototype properties', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('[12.1] a TRES, partition or Slurm account named __proto__/constructor/toString/hasOwnProperty is plain data', async () => {
    const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    const lines = names.flatMap((name, i) => [
      // Charged: a TRES and a partition with the name (the partition has no multiplier of its own).
      lineOf(
        job({ JobID: String(7000 + i), Partition: name, AllocTRES: `${name}=3,cpu=4,gres/gpu=2,node=1` }),
        SACCT_FIELDS,
      ),
      // Not charged: a Slurm account with the name, mapped to no project.
      lineOf(job({ JobID: String(7100 + i), Account: name }), SACCT_FIELDS),
    ]);
    const usage = usageConfig({ charge: { unit: 'gpu-hours', partitionMultipliers: { gpu: 2 } } });
    const s = await reportUsage(t.db, {
      site: SITE,
      usage,
      ...WINDOW,
      records: await sacctRecords(lines),
      log: quietLog,
    });
    expect(s).toMatchObject({ jobsSeen: 8, reported: 4 });
    // 4 jobs x 2 GPUs x 60 s, multiplier 1.
    expect(s.gpuHoursPerProject['p-abc123']).toBeCloseTo((4 * 2 * 60) / 3600, 9);
    expect(Object.keys(s.unmappedAccounts).sort()).toEqual([...names].sort());
    for (const name of names) expect(Object.getOwnPropertyDescriptor(s.unmappedAccounts, name)?.value).toBe(1);
  });
});

describe('a sacct that never answers', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('[12.15] is stopped after usage.sacctTimeoutSeconds: the run fails naming the setting and releases the lock; the next run reports', async () => {
    const pidFile = join(dir, 'hung.pid');
    const hung = fakeSacct(
      `echo $$ > '${pidFile}'\necho '${lineOf(job({ JobID: '7001' }), SACCT_FIELDS)}'\nexec sleep 1000`,
    );
    const started = Date.now();
    const err = await reportUsage(t.db, {
      site: SITE,
      usage: usageConfig({ sacctPath: hung, sacctTimeoutSeconds: 1 }),
      ...WINDOW,
      log: quietLog,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SacctError);
    expect((err as Error).message).toMatch(
      /^sacct printed nothing for 1 s and was stopped \(usage\.sacctTimeoutSeconds\) \(command: /,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(processAlive(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
    const { rows } = await t.db.query<{ status: string; reported: number }>(
      'SELECT status, reported FROM amie_toolkit.usage_runs',
    );
    // The job read before the hang was still in an unwritten batch: the next run reports it.
    expect(rows).toEqual([{ status: 'failed', reported: 0 }]);

    const ok = fakeSacct(
      `echo '${lineOf(job({ JobID: '7001' }), SACCT_FIELDS)}'\necho '${lineOf(job({ JobID: '7002' }), SACCT_FIELDS)}'`,
    );
    const s = await reportUsage(t.db, {
      site: SITE,
      usage: usageConfig({ sacctPath: ok, sacctTimeoutSeconds: 1 }),
      ...WINDOW,
      log: quietLog,
    });
    expect(s).toMatchObject({ reported: 2, alreadyReported: 0 });
  }, 20_000);

  it('[12.15] the time the reporter spends writing batches does not count against sacct', async () => {
    const lines = [7101, 7102, 7103].map((id) => `echo '${lineOf(job({ JobID: String(id) }), SACCT_FIELDS)}'`);
    const sacctPath = fakeSacct(lines.join('\n'));
    const slowSink: UsageSink = {
      name: 'amie-db',
      async writeBatch(jobs: readonly ChargedJob[]) {
        await new Promise((r) => setTimeout(r, 1500));
        return { reported: [...jobs], alreadyReported: 0, failed: [] };
      },
    };
    const s = await reportUsage(t.db, {
      site: SITE,
      usage: usageConfig({ sacctPath, sacctTimeoutSeconds: 1, batchSize: 1 }),
      ...WINDOW,
      sinkImpl: slowSink,
      log: quietLog,
    });
    expect(s.reported).toBe(3);
  }, 20_000);
});

describe('the usage lock on the embedded database', () => {
  it('[12.15] a second run in the same process is refused, naming the holder and how long it has held the lock', async () => {
    const t = await freshPgliteDatabase({ init: true });
    try {
      await withUsageLock(t.db, 'amie report-usage', async () => {
        const err = await reportUsage(t.db, {
          site: SITE,
          usage: usageConfig(),
          ...WINDOW,
          records: [],
          log: quietLog,
        }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UsageRunBusyError);
        expect((err as Error).message).toMatch(
          new RegExp(
            `^the usage lock of ${t.db.description.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is held by amie report-usage in this process \\(pid ${process.pid}\\) for \\d+s; nothing was done$`,
          ),
        );
        const client = usageApiClient(SITE, usageConfig().usageApi!, API_KEY);
        await expect(resendUsage(t.db, { site: SITE, client, limit: 10 })).rejects.toThrow(
          /held by amie report-usage in this process/,
        );
      });
    } finally {
      await t.cleanup();
    }
  });
});

describe.skipIf(!hasPostgres())(`the usage lock on PostgreSQL, seen from the command line${pgSkipNote}`, () => {
  let t: TestDatabase;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with npm run build`);
  });
  beforeEach(async () => {
    t = await freshPgDatabase();
    await initDatabase(t.db);
  });
  afterEach(() => t?.cleanup());

  it('[12.15][12.16] while a run hangs in sacct, report-usage and usage resend exit 1 with one line naming the holder and how long', async () => {
    const pidFile = join(dir, 'holder.pid');
    const hung = fakeSacct(`echo $$ > '${pidFile}'\nexec sleep 1000`);
    const config = join(dir, 'pg-lock.yaml');
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { url: "${t.url}" }\nlog: { level: warn }\n` +
        `usage:\n  sacctPath: ${join(dir, 'never-run')}\n  projects: { abc123: p-abc123 }\n` +
        `  usageApi: { url: "${sim.usageUrl}", apiKeyEnv: AMIE_USAGE_API_KEY }\n`,
    );
    const stop = new AbortController();
    const holder = reportUsage(t.db, {
      site: SITE,
      usage: usageConfig({ sacctPath: hung }),
      ...WINDOW,
      log: quietLog,
      signal: stop.signal,
    }).catch((e: unknown) => e);
    try {
      const deadline = Date.now() + 10_000;
      while (!existsSync(pidFile)) {
        if (Date.now() > deadline) throw new Error('the stand-in sacct never started');
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 1100)); // so the lock has been held for at least a second
      const busy = new RegExp(
        `^amie: the usage lock of \\S+ is held by "amie report-usage pid ${process.pid} on ${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" ` +
          `\\(PostgreSQL backend pid \\d+(, client \\S+)?\\) for [1-9]\\d*s; nothing was done$`,
      );
      const [report, resend] = await Promise.all([
        runAmie(['-c', config, 'report-usage']).done,
        runAmie(['-c', config, 'usage', 'resend'], { AMIE_USAGE_API_KEY: API_KEY }).done,
      ]);
      for (const r of [report, resend]) {
        expect(r.code).toBe(1);
        expect(plainLines(r.stderr)).toHaveLength(1);
        expect(plainLines(r.stderr)[0]).toMatch(busy);
        expect(r.stdout).toBe('');
      }
      expect(sim.usage.received).toHaveLength(0);
    } finally {
      stop.abort(new Error('test over'));
      await holder;
    }
    // The lock went with the run: the next one gets it.
    const s = await reportUsage(t.db, { site: SITE, usage: usageConfig(), ...WINDOW, records: [], log: quietLog });
    expect(s.runId).not.toBeNull();
  }, 60_000);
});

describe('amie usage resend', () => {
  it('[12.16] --job picks the records before --limit counts them', async () => {
    const path = join(dir, 'resend-db');
    await initialisedPgliteDir(path);
    const db = await openPglite({ path });
    try {
      for (const id of ['7001', '7002', '7003'])
        sim.usage.refuse.set(`delta:${id}:${SUBMIT_EPOCH}`, 'unknown LocalProjectID');
      const ends = ['2024-03-01T11:00:00', '2024-03-01T12:00:00', '2024-03-01T13:00:00'];
      const records = await sacctRecords(
        ['7001', '7002', '7003'].map((id, i) => lineOf(job({ JobID: id, End: ends[i]! }), SACCT_FIELDS)),
      );
      const s = await reportUsage(db, {
        site: SITE,
        usage: usageConfig({ sink: 'usage-api' }),
        apiKey: API_KEY,
        ...WINDOW,
        records,
        log: quietLog,
      });
      expect(s.failed).toBe(3);
    } finally {
      await db.close();
    }
    sim.usage.refuse.clear();
    const config = join(dir, 'resend.yaml');
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: "${path}" }\nlog: { level: warn }\n` +
        `usage:\n  projects: { abc123: p-abc123 }\n  usageApi: { url: "${sim.usageUrl}", apiKeyEnv: AMIE_USAGE_API_KEY }\n`,
    );
    const r = await runAmie(['-c', config, 'usage', 'resend', '--job', '7003', '--limit', '1'], {
      AMIE_USAGE_API_KEY: API_KEY,
    }).done;
    expect(r.stdout.trim()).toBe('resent 1: accepted 1, refused 0');
    expect(r.code).toBe(0);
    expect(sim.usage.accepted.map((x) => x.LocalRecordID)).toEqual([`delta:7003:${SUBMIT_EPOCH}`]);
  }, 60_000);
});

describe('usage record identity', () => {
  const t = databaseEachTest(driverCase('pglite'));
  const apiRun = async (lines: string[]) =>
    reportUsage(t.db, {
      site: SITE,
      usage: usageConfig({ sink: 'usage-api' }),
      apiKey: API_KEY,
      ...WINDOW,
      records: await sacctRecords(lines),
      log: quietLog,
    });

  it('[13.7] the same job id on two clusters and the two runs of a requeued job are three records to the Usage API', async () => {
    const lines = [
      // The first run, requeued after a minute: its own accounting record (sacct --duplicates).
      lineOf(
        job({
          JobID: '5001',
          State: 'REQUEUED',
          Submit: '2024-03-01T09:00:00',
          Start: '2024-03-01T09:00:05',
          End: '2024-03-01T09:01:05',
        }),
        SACCT_FIELDS,
      ),
      lineOf(job({ JobID: '5001' }), SACCT_FIELDS),
      lineOf(job({ JobID: '5001', Cluster: 'bridges' }), SACCT_FIELDS),
    ];
    const s = await apiRun(lines);
    expect(s).toMatchObject({ jobsSeen: 3, reported: 3, failed: 0 });
    const ids = sim.usage.accepted.map((x) => x.LocalRecordID).sort();
    expect(ids).toEqual([
      `bridges:5001:${SUBMIT_EPOCH}`,
      `delta:5001:${SUBMIT_EPOCH - 3600}`,
      `delta:5001:${SUBMIT_EPOCH}`,
    ]);
    for (const r of sim.usage.accepted) expect(r.LocalReference).toBe(r.LocalRecordID);
    expect(await apiRun(lines)).toMatchObject({ reported: 0, alreadyReported: 3 });
  });

  it('[13.7] a resend carries the LocalRecordID of the first POST', async () => {
    const id = `delta:5101:${SUBMIT_EPOCH}`;
    sim.usage.refuse.set(id, 'unknown LocalProjectID');
    expect(await apiRun([lineOf(job({ JobID: '5101' }), SACCT_FIELDS)])).toMatchObject({ failed: 1 });
    sim.usage.refuse.clear();
    const client = usageApiClient(SITE, usageConfig().usageApi!, API_KEY);
    expect(await resendUsage(t.db, { site: SITE, client, limit: 10 })).toEqual({ resent: 1, reported: 1, failed: [] });
    expect(sim.usage.received.map((p) => p.body.Records[0]!.LocalRecordID)).toEqual([id, id]);
  });

  it('[13.7] after an upgrade, rows an older version wrote keep their meaning: reported stays reported, a pending record is sent as it was stored', async () => {
    const row = (jobId: string, record: unknown) => ({
      cluster: 'delta',
      jobId,
      submitTime: new Date(SUBMIT_EPOCH * 1000),
      startTime: new Date('2024-03-01T10:00:05Z'),
      endTime: new Date('2024-03-01T10:01:05Z'),
      account: 'abc123',
      projectId: 'p-abc123',
      userLogin: 'alice',
      charge: 0.016667,
      chargeUnit: 'gpu-hours',
      sink: 'usage-api',
      record,
    });
    // What the previous version left: LocalRecordID was the bare job id.
    const old = (jobId: string) => ({
      Username: 'alice',
      LocalProjectID: 'p-abc123',
      LocalRecordID: jobId,
      Resource: SITE.resource,
      SubmitTime: '2024-03-01T10:00:00Z',
      StartTime: '2024-03-01T10:00:05Z',
      EndTime: '2024-03-01T10:01:05Z',
      Charge: 0.016667,
      Attributes: { NodeCount: 1, CpuCoreCount: 4, JobName: 'train' },
      LocalReference: `delta:${jobId}:${SUBMIT_EPOCH}`,
    });
    await claimReportedJobs(t.db, [row('5201', old('5201'))], { status: 'reported', runId: null });
    await claimReportedJobs(t.db, [row('5202', old('5202'))], { status: 'pending', runId: null });

    const s = await apiRun(['5201', '5202'].map((id) => lineOf(job({ JobID: id }), SACCT_FIELDS)));
    expect(s).toMatchObject({ reported: 1, alreadyReported: 1, failed: 0 });
    // The pending record may already be on the server under its old id: sent again exactly so.
    expect(sim.usage.received.flatMap((p) => p.body.Records)).toEqual([old('5202')]);
    expect(await listUnreportedJobs(t.db)).toEqual([]);
  });

  it('[13.7] NPU packets carry the same per-run id as RecordID', async () => {
    const s = await reportUsage(t.db, {
      site: SITE,
      usage: usageConfig(),
      ...WINDOW,
      records: await sacctRecords([
        lineOf(job({ JobID: '5301', State: 'REQUEUED', Submit: '2024-03-01T09:00:00' }), SACCT_FIELDS),
        lineOf(job({ JobID: '5301' }), SACCT_FIELDS),
      ]),
      log: quietLog,
    });
    expect(s.reported).toBe(2);
    const ids = (await outgoingPackets(t.db))
      .map((p) => (p.body.RecordIdentity as Array<Record<string, string>>)[0]!.RecordID)
      .sort();
    expect(ids).toEqual([`delta:5301:${SUBMIT_EPOCH - 3600}`, `delta:5301:${SUBMIT_EPOCH}`]);
  });
});
