import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execa } from 'execa';
import { PacketBody } from '../../src/protocol/index.js';
import { UsageConfigSchema } from '../../src/usage/config.js';
import { reportUsage } from '../../src/usage/report.js';
import { SITE, initTestDatabase, outgoingPackets, quietLog } from '../helpers/amie.js';
import { freshPgliteDatabase, type TestDatabase } from '../helpers/db.js';
import { ensureSlurmAccount, ensureSlurmUser, hasSlurm, slurmSkipNote, submitJob, waitForJobs } from '../helpers/slurm.js';

const slurm = hasSlurm();
const ACCOUNT = `usage-${process.pid}`;
const PROJECT = 'p-usage-test';

describe.skipIf(!slurm)(`usage reporter against the Slurm test cluster${slurmSkipNote()}`, () => {
  let t: TestDatabase;
  let since: Date;
  let ids: string[];
  /** job id → ElapsedRaw × GPUs / 3600 as sacct itself reports them. */
  const expected = new Map<string, number>();

  beforeAll(async () => {
    t = await freshPgliteDatabase();
    await initTestDatabase(t.db);
    await ensureSlurmAccount(ACCOUNT);
    await ensureSlurmUser('root', ACCOUNT);
    // sacct's window works in whole seconds; start a little before the first submit.
    since = new Date(Date.now() - 5000);
    ids = await Promise.all([
      submitJob({ account: ACCOUNT, gpus: 2, seconds: 3 }),
      submitJob({ account: ACCOUNT, gpus: 1, seconds: 2 }),
      submitJob({ account: ACCOUNT, gpus: 0, seconds: 2 }),
    ]);
    await waitForJobs(ids, 90_000);
    const r = await execa('sacct', ['-a', '-X', '-n', '-P', '-j', ids.join(','), '--format', 'JobID,ElapsedRaw,AllocTRES'], { stdin: 'ignore' });
    for (const line of r.stdout.split('\n').filter(Boolean)) {
      const [id, elapsed, tres] = line.split('|');
      const gpus = Number(/gres\/gpu=(\d+)/.exec(tres ?? '')?.[1] ?? 0);
      expected.set(id!, (Number(elapsed) * gpus) / 3600);
    }
  }, 120_000);
  afterAll(async () => {
    await t?.cleanup();
  });

  const usage = () => UsageConfigSchema.parse({ projects: { [ACCOUNT]: PROJECT } });
  const run = () => reportUsage(t.db, { site: SITE, usage: usage(), since, until: new Date(Date.now() + 60_000), log: quietLog });

  it('reports the GPU jobs with charge = ElapsedRaw × GPUs / 3600 and skips the CPU job', async () => {
    const s = await run();
    expect(s.reported).toBe(2);
    expect(s.skipped['zero charge (no GPUs)']).toBeGreaterThanOrEqual(1);
    const packets = (await outgoingPackets(t.db)).map((p) => PacketBody.fromJSON(p.body).toJSON());
    const ours = packets.filter((b) => b.ProjectID === PROJECT);
    expect(ours).toHaveLength(2);
    for (const b of ours) {
      const jobId = (b.JobIdentity as Array<Record<string, string>>)[0]!.LocalJobID!;
      expect(ids).toContain(jobId);
      expect(expected.get(jobId)).toBeGreaterThan(0);
      expect(Number(b.Charge)).toBeCloseTo(expected.get(jobId)!, 6);
      expect(b.UserLogin).toBe('root');
      expect(b.MachineName).toBe(SITE.resource);
      expect(b.WallDuration).toMatch(/^PT\d+S$/);
    }
    const total = [...expected.values()].reduce((a, b) => a + b, 0);
    expect(s.gpuHoursPerProject[PROJECT]).toBeCloseTo(total, 6);
  });

  it('a second run reports nothing new', async () => {
    const s = await run();
    expect(s.reported).toBe(0);
    expect(s.alreadyReported).toBeGreaterThanOrEqual(2);
    expect((await outgoingPackets(t.db)).length).toBe(2);
  });
});
