/**
 * A requeued job on the Slurm test cluster: each run is an accounting record of its own (a new
 * Submit time), the earlier one in state REQUEUED and shown by sacct only with --duplicates. Every
 * run used its GPUs, so every run is reported, exactly once, under an id of its own.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execa } from 'execa';
import { PacketBody } from '../../src/protocol/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { SITE, outgoingPackets, quietLog } from '../helpers/amie.js';
import { freshPgliteDatabase, type TestDatabase } from '../helpers/db.js';
import { ensureRootAccount, hasSlurm, slurmSkipNote, submitJob, waitForJobs } from '../helpers/slurm.js';
import { startRestSimulator } from '../helpers/simulator.js';

const slurm = hasSlurm();
const ACCOUNT = `requeue-${process.pid}`;
const PROJECT = 'p-requeue-test';
const API_KEY = 'test-usage-key-not-secret';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function squeueState(id: string): Promise<string> {
  const r = await execa('squeue', ['-h', '-j', id, '-o', '%T'], { stdin: 'ignore', reject: false, timeout: 15_000 });
  return r.stdout.trim();
}

async function until(what: string, ms: number, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe.skipIf(!slurm)(`a requeued GPU job on the Slurm test cluster${slurmSkipNote()}`, () => {
  let t: TestDatabase;
  let sim: RestSimulator;
  let since: Date;
  let id: string;
  /** Each run of the job as `sacct --duplicates` lists it: Submit, State, GPU-hours. */
  let runs: Array<{ submit: string; state: string; gpuHours: number }>;

  beforeAll(async () => {
    t = await freshPgliteDatabase({ init: true });
    sim = await startRestSimulator({ site: SITE, apiKey: API_KEY });
    await ensureRootAccount(ACCOUNT);
    since = new Date(Date.now() - 5000);
    id = await submitJob({ account: ACCOUNT, gpus: 2, seconds: 4 });
    await until(`job ${id} to run`, 60_000, async () => (await squeueState(id)) === 'RUNNING');
    await sleep(2000); // so the first run has used its GPUs for a while
    await execa('scontrol', ['requeue', id], { stdin: 'ignore', timeout: 15_000 });
    // Slurm holds a requeued job back for a while before it may start again; not in a test.
    await until(`job ${id} to be pending again`, 30_000, async () => (await squeueState(id)) === 'PENDING');
    // slurmd dates the revocation of the first run's credential to the second: a relaunch within
    // that same second is refused as "already killed" and the run ends FAILED. So the next second.
    await sleep(1100);
    await execa('scontrol', ['update', `JobId=${id}`, 'StartTime=now'], { stdin: 'ignore', timeout: 15_000 });
    await waitForJobs([id], 90_000);

    const r = await execa(
      'sacct',
      ['-a', '-X', '-n', '-P', '--duplicates', '-j', id, '--format', 'Submit,State,ElapsedRaw,AllocTRES'],
      {
        stdin: 'ignore',
        env: { TZ: 'UTC', SLURM_TIME_FORMAT: '%Y-%m-%dT%H:%M:%S' },
      },
    );
    runs = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [submit, state, elapsed, tres] = line.split('|');
        const gpus = Number(/gres\/gpu=(\d+)/.exec(tres ?? '')?.[1] ?? 0);
        return { submit: submit!, state: state!.split(' ')[0]!, gpuHours: (Number(elapsed) * gpus) / 3600 };
      });
  }, 240_000);
  afterAll(async () => {
    await sim?.stop();
    await t?.cleanup();
  });

  const usage = (extra: Record<string, unknown> = {}) =>
    UsageConfigSchema.parse({
      projects: { [ACCOUNT]: PROJECT },
      usageApi: { url: sim.usageUrl, apiKeyEnv: 'AMIE_USAGE_API_KEY' },
      ...extra,
    });
  const window = () => ({ since, until: new Date(Date.now() + 60_000) });

  it('[13.7] sacct shows the earlier run only with --duplicates, as REQUEUED with a Submit of its own', async () => {
    expect(runs.map((r) => r.state)).toEqual(['REQUEUED', 'COMPLETED']);
    expect(new Set(runs.map((r) => r.submit)).size).toBe(2);
    expect(runs[0]!.gpuHours).toBeGreaterThan(0);
    const plain = await execa('sacct', ['-a', '-X', '-n', '-P', '-j', id, '--format', 'State'], { stdin: 'ignore' });
    expect(plain.stdout.trim()).toBe('COMPLETED');
  });

  it('[13.7] every run is reported once, each with its own record id, and a rerun adds nothing', async () => {
    const s = await reportUsage(t.db, { site: SITE, usage: usage(), ...window(), log: quietLog });
    expect(s.reported).toBe(2);
    const total = runs.reduce((a, r) => a + r.gpuHours, 0);
    expect(s.gpuHoursPerProject[PROJECT]).toBeCloseTo(total, 6);
    const ours = (await outgoingPackets(t.db))
      .map((p) => PacketBody.fromJSON(p.body).toJSON())
      .filter((b) => b.ProjectID === PROJECT);
    expect(ours.map((b) => (b.JobIdentity as Array<Record<string, string>>)[0]!.LocalJobID)).toEqual([id, id]);
    const recordIds = ours.map((b) => (b.RecordIdentity as Array<Record<string, string>>)[0]!.RecordID);
    expect(new Set(recordIds).size).toBe(2);
    expect(ours.map((b) => Number(b.Charge)).sort()).toEqual(runs.map((r) => Number(r.gpuHours.toFixed(6))).sort());

    const again = await reportUsage(t.db, { site: SITE, usage: usage(), ...window(), log: quietLog });
    expect(again).toMatchObject({ reported: 0, alreadyReported: 2 });
  });

  it('[13.7] the Usage API gets both runs as two records (same job id, two LocalRecordIDs)', async () => {
    // A database of its own: the books of which runs were reported are shared by both sinks.
    const other = await freshPgliteDatabase({ init: true });
    try {
      const s = await reportUsage(other.db, {
        site: SITE,
        usage: usage({ sink: 'usage-api' }),
        apiKey: API_KEY,
        ...window(),
        log: quietLog,
      });
      expect(s).toMatchObject({ reported: 2, failed: 0 });
    } finally {
      await other.cleanup();
    }
    const ids = sim.usage.accepted.map((r) => String(r.LocalRecordID));
    expect(ids).toHaveLength(2);
    expect(new Set(ids).size).toBe(2);
    for (const rid of ids) expect(rid).toMatch(new RegExp(`^amietest:${id}:\\d+$`));
  });
});
