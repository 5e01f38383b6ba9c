import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import type { IncomingMessage } from 'node:http';
import { listUnreportedJobs } from '../../src/store/index.js';
import { UsageApiClient, UsageApiError, splitComputeBatches, type ComputeRecord } from '../../src/usage/api-client.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { UsageApiSink } from '../../src/usage/sinks/usage-api.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { SITE, outgoingPackets, quietLog } from '../helpers/amie.js';
import { driverCases, type TestDatabase, databaseEachTest } from '../helpers/db.js';
import { computeRecord, startRestSimulator } from '../helpers/simulator.js';
import { sacctJob, sacctRecords } from '../helpers/sacct-lines.js';

const API_KEY = 'test-key-not-secret';

interface Posted {
  headers: IncomingMessage['headers'];
  bytes: number;
  body: { UsageType: string; Records: ComputeRecord[] };
}

/**
 * The simulator's Usage API (the one `amie simulate --serve-rest` serves): it checks XA-SITE and
 * XA-API-KEY, refuses bodies over 1024 KiB with 413 as the real one does, keeps every POST, and
 * plays the failures a test asks for.
 */
let sim: RestSimulator;
const api = {
  get url(): string {
    return sim.usageUrl;
  },
  get posted(): Posted[] {
    return sim.usage.received as unknown as Posted[];
  },
  /** Every record the server loaded. */
  get accepted(): ComputeRecord[] {
    return sim.usage.accepted as unknown as ComputeRecord[];
  },
  /** Records (by LocalRecordID) the server always refuses, with the reason. */
  get invalid(): Map<string, string> {
    return sim.usage.refuse;
  },
  /** The next POST usage/ gets this answer instead (or none: the client's timeout must fire). */
  failNext(answer: { status: number; body?: unknown } | 'hang'): void {
    sim.inject(
      answer === 'hang' ? { api: 'usage', method: 'POST', hang: true } : { api: 'usage', method: 'POST', ...answer },
    );
  },
};

/** Compute record `i`, its JobName `nameBytes` long. */
function record(i: number, nameBytes = 10): ComputeRecord {
  return computeRecord(i, {
    Attributes: { NodeCount: 1, CpuCoreCount: 4, JobName: 'x'.repeat(nameBytes), Queue: 'gpu' },
    LocalReference: `delta:${1000 + i}:1709287200`,
  });
}

beforeAll(async () => {
  sim = await startRestSimulator({ site: SITE, apiKey: API_KEY });
});
afterAll(() => sim.stop());
beforeEach(() => {
  sim.usage.reset();
  sim.clearFaults();
});

const client = (extra: Partial<ConstructorParameters<typeof UsageApiClient>[0]> = {}) =>
  new UsageApiClient({ url: api.url, site: SITE.name, apiKey: API_KEY, retryBaseMs: 5, timeoutMs: 2000, ...extra });

describe('Usage API client', () => {
  it('posts compute records with XA-SITE and XA-API-KEY and accepts them', async () => {
    const v = await client().postCompute([record(1), record(2)]);
    expect(v.map((x) => x.accepted)).toEqual([true, true]);
    expect(api.posted).toHaveLength(1);
    expect(api.posted[0]!.headers['xa-site']).toBe(SITE.name);
    expect(api.posted[0]!.headers['content-type']).toBe('application/json');
    expect(api.posted[0]!.body.UsageType).toBe('compute');
  });

  it('retries a 500 and then succeeds', async () => {
    const retries: string[] = [];
    api.failNext({ status: 500, body: { message: 'database is restarting' } });
    const v = await client({ onRetry: (r) => retries.push(r.reason) }).postCompute([record(1)]);
    expect(v[0]!.accepted).toBe(true);
    expect(api.posted).toHaveLength(2);
    expect(retries).toEqual(['HTTP 500: database is restarting']);
  });

  it('retries a request that times out', async () => {
    api.failNext('hang');
    const v = await client({ timeoutMs: 300 }).postCompute([record(1)]);
    expect(v[0]!.accepted).toBe(true);
    expect(api.posted).toHaveLength(2);
  });

  it('gives up after the bounded retries with an error naming the endpoint and the last failure, never the key', async () => {
    for (let i = 0; i < 3; i++) api.failNext({ status: 503, body: { message: 'maintenance' } });
    const err = await client({ maxRetries: 2 })
      .postCompute([record(1)])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageApiError);
    expect((err as Error).message).toBe(`POST ${api.url}usage/ failed after 3 attempts: HTTP 503: maintenance`);
    expect((err as Error).message).not.toContain(API_KEY);
  });

  it('marks the records named in ValidationFailedRecords failed with their reason, the rest accepted', async () => {
    api.invalid.set('1002', 'LocalProjectID p-abc123 is not a project on this resource');
    const v = await client().postCompute([record(1), record(2), record(3)]);
    expect(v.map((x) => [x.accepted, x.reason])).toEqual([
      [true, undefined],
      [false, 'LocalProjectID p-abc123 is not a project on this resource'],
      [true, undefined],
    ]);
  });

  it('a 4xx answer fails every record of that body with the server message, without retrying', async () => {
    api.failNext({ status: 400, body: { message: 'Records[0].Charge must be a number' } });
    const v = await client().postCompute([record(1), record(2)]);
    expect(
      v.every(
        (x) => !x.accepted && x.reason === 'HTTP 400: Records[0].Charge must be a number' && x.httpStatus === 400,
      ),
    ).toBe(true);
    expect(api.posted).toHaveLength(1);
  });

  it('splits by serialized size so every body stays under the limit', async () => {
    const records = Array.from({ length: 60 }, (_, i) => record(i, 40_000)); // ~2.4 MB in all
    const v = await client({ maxBatchBytes: 512 * 1024 }).postCompute(records);
    expect(v.every((x) => x.accepted)).toBe(true);
    expect(api.posted.length).toBeGreaterThanOrEqual(5);
    for (const p of api.posted) expect(p.bytes).toBeLessThanOrEqual(512 * 1024);
    expect(api.posted.flatMap((p) => p.body.Records.map((r) => r.LocalRecordID))).toEqual(
      records.map((r) => r.LocalRecordID),
    );
  });

  it('halves a body the server still finds too large (413)', async () => {
    api.failNext({ status: 413, body: { message: 'too large' } });
    const v = await client().postCompute([record(1), record(2), record(3), record(4)]);
    expect(v.every((x) => x.accepted)).toBe(true);
    expect(api.posted.map((p) => p.body.Records.length)).toEqual([4, 2, 2]);
  });

  it('splitComputeBatches honours the count limit too', () => {
    expect(splitComputeBatches([1, 2, 3, 4, 5], 1_000_000, 2).map((b) => b.length)).toEqual([2, 2, 1]);
  });
});

/** The jobs of `ids`, each alice's GPU hour on 2024-03-01, as the reader makes them of sacct's lines. */
const records = (ids: string[]) => sacctRecords(ids.map((id) => sacctJob(id)));

describe.each(driverCases())('usage-api sink on $name', (driver) => {
  const t = databaseEachTest(driver);
  const run = it.skipIf(!driver.available);
  const usage = () =>
    UsageConfigSchema.parse({
      sink: 'usage-api',
      projects: { abc123: 'p-abc123' },
      usageApi: { url: api.url, apiKeyEnv: 'AMIE_USAGE_API_KEY', maxRetries: 3 },
    });
  const window = { since: new Date('2024-03-01T00:00:00Z'), until: new Date('2024-03-02T00:00:00Z') };
  const sink = (db: TestDatabase['db']) => new UsageApiSink(db, client({ maxRetries: 3 }), SITE, quietLog);
  /** `amie report-usage` over the window, sacct having printed the jobs `ids`. */
  const report = async (ids: string[]) =>
    reportUsage(t.db, {
      site: SITE,
      usage: usage(),
      ...window,
      records: await records(ids),
      sinkImpl: sink(t.db),
      log: quietLog,
    });

  run('reports accepted records once, stores refused ones with the reason, and resends them', async () => {
    api.invalid.set('delta:7002:1709287200', 'unknown LocalProjectID');
    api.failNext({ status: 500, body: { message: 'try later' } });
    const s = await report(['7001', '7002', '7003']);
    expect(s).toMatchObject({ sink: 'usage-api', reported: 2, failed: 1 });
    expect(s.failures).toEqual([{ jobId: '7002', projectId: 'p-abc123', reason: 'unknown LocalProjectID' }]);
    expect(api.posted[1]!.body.Records[0]).toMatchObject({
      Username: 'alice',
      LocalProjectID: 'p-abc123',
      LocalRecordID: 'delta:7001:1709287200',
      Resource: SITE.resource,
      SubmitTime: '2024-03-01T10:00:00Z',
      Charge: 2,
      Attributes: { NodeCount: 1, CpuCoreCount: 4, Memory: 8192, Queue: 'gpu' },
    });
    expect(await outgoingPackets(t.db)).toHaveLength(0);

    const failed = await listUnreportedJobs(t.db, { status: 'failed' });
    expect(failed.map((f) => [f.jobId, f.reason, f.apiStatus])).toEqual([['7002', 'unknown LocalProjectID', 200]]);

    // A rerun over the same window sends nothing already accepted, and does not resend failed ones on its own.
    const posts = api.posted.length;
    const again = await report(['7001', '7002', '7003']);
    expect(again).toMatchObject({ reported: 0, alreadyReported: 3, failed: 0 });
    expect(api.posted.length).toBe(posts);

    api.invalid.clear();
    const r = await sink(t.db).resend(failed);
    expect(r).toEqual({ reported: 1, failed: [] });
    expect(await listUnreportedJobs(t.db)).toEqual([]);
    expect(api.accepted.map((x) => x.LocalRecordID).sort()).toEqual([
      'delta:7001:1709287200',
      'delta:7002:1709287200',
      'delta:7003:1709287200',
    ]);
  });

  run(
    'a server that stays down fails the run; the claimed records stay pending and the next run sends them',
    async () => {
      for (let i = 0; i < 4; i++) api.failNext({ status: 502, body: { message: 'bad gateway' } });
      await expect(report(['8001', '8002'])).rejects.toThrow(/failed after 4 attempts: HTTP 502: bad gateway/);
      expect((await listUnreportedJobs(t.db, { status: 'pending' })).map((p) => p.jobId)).toEqual(['8001', '8002']);
      const s = await report(['8001', '8002']);
      expect(s).toMatchObject({ reported: 2, alreadyReported: 0 });
      expect(await listUnreportedJobs(t.db)).toEqual([]);
    },
  );
});
