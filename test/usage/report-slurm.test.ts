import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execa } from 'execa';
import { PacketBody } from '../../src/protocol/index.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { SITE, outgoingPackets, quietLog } from '../helpers/amie.js';
import { freshPgliteDatabase, type TestDatabase } from '../helpers/db.js';
import {
  SLURM_TEST_CLUSTER,
  ensureRootAccount,
  hasSlurm,
  slurmSkipNote,
  submitJob,
  waitForJobs,
} from '../helpers/slurm.js';

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
    t = await freshPgliteDatabase({ init: true });
    await ensureRootAccount(ACCOUNT);
    // sacct's window works in whole seconds; start a little before the first submit.
    since = new Date(Date.now() - 5000);
    ids = await Promise.all([
      submitJob({ account: ACCOUNT, gpus: 2, seconds: 3 }),
      submitJob({ account: ACCOUNT, gpus: 1, seconds: 2 }),
      submitJob({ account: ACCOUNT, gpus: 0, seconds: 2 }),
    ]);
    await waitForJobs(ids, 90_000);
    const r = await execa(
      'sacct',
      ['-a', '-X', '-n', '-P', '-j', ids.join(','), '--format', 'JobID,ElapsedRaw,AllocTRES'],
      { stdin: 'ignore' },
    );
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
  const run = () =>
    reportUsage(t.db, { site: SITE, usage: usage(), since, until: new Date(Date.now() + 60_000), log: quietLog });

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

describe.skipIf(!slurm)(`a job name that forges a sacct line, on the Slurm test cluster${slurmSkipNote()}`, () => {
  const account = `forge-${process.pid}`;
  const project = 'p-forge-test';
  const FORGED_LINE = [
    '99998',
    '99998',
    SLURM_TEST_CLUSTER,
    'root',
    account,
    'batch',
    'COMPLETED',
    '2024-03-01T00:00:00',
    '2024-03-01T00:00:00',
    '2024-03-02T00:00:00',
    '1-00:00:00',
    '86400',
    '1',
    '1',
    'billing=1,cpu=1,gres/gpu=421,node=1',
    'x',
  ].join('|');
  const sacctName = async (jobId: string) =>
    (await execa('sacct', ['-a', '-X', '-n', '-P', '-j', jobId, '--format', 'JobName'], { stdin: 'ignore' })).stdout;
  let t: TestDatabase;
  let since: Date;
  let id: string;

  beforeAll(async () => {
    t = await freshPgliteDatabase({ init: true });
    await ensureRootAccount(account);
    since = new Date(Date.now() - 5000);
    // A record-shaped tail in the fields the reporter used to ask for (JobName last): 421 GPUs for
    // a day, 10,104 GPU-hours, charged to the same project. (slurmdbd keeps 255 bytes of a name.)
    const name = `x\n${FORGED_LINE}`;
    const r = await execa(
      'sbatch',
      [
        '--parsable',
        '-J',
        name,
        '-A',
        account,
        '--gres=gpu:1',
        '-n',
        '1',
        '-t',
        '1',
        '-o',
        '/dev/null',
        '-e',
        '/dev/null',
        '--chdir',
        '/tmp',
        '--wrap',
        'sleep 2',
      ],
      { stdin: 'ignore', cwd: '/tmp', timeout: 30_000 },
    );
    id = r.stdout.trim().split(';')[0]!;
    await waitForJobs([id], 90_000);
    // slurmdbd may show a placeholder name for a moment after the job ended.
    for (let i = 0; i < 100 && !(await sacctName(id)).startsWith('x\n'); i++)
      await new Promise((res) => setTimeout(res, 200));
  }, 120_000);
  afterAll(async () => {
    await t?.cleanup();
  });

  it('[12.10] Slurm keeps the newline in the name, and only the real job is charged', async () => {
    // What sacct prints when asked for the name: the tail is a line of its own.
    expect((await sacctName(id)).split('\n')).toEqual(['x', FORGED_LINE]);

    const usage = UsageConfigSchema.parse({ projects: { [account]: project } });
    const s = await reportUsage(t.db, {
      site: SITE,
      usage,
      since,
      until: new Date(Date.now() + 60_000),
      log: quietLog,
    });
    const el = await execa('sacct', ['-a', '-X', '-n', '-P', '-j', id, '--format', 'ElapsedRaw'], { stdin: 'ignore' });
    expect(s.gpuHoursPerProject[project]).toBeCloseTo(Number(el.stdout.trim()) / 3600, 6);
    const ours = (await outgoingPackets(t.db))
      .map((p) => PacketBody.fromJSON(p.body).toJSON())
      .filter((b) => b.ProjectID === project);
    expect(ours.map((b) => (b.JobIdentity as Array<Record<string, string>>)[0]!.LocalJobID)).toEqual([id]);
  });
});
