import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import {
  ensureSlurmAccount,
  ensureSlurmUser,
  hasSlurm,
  slurmSkipNote,
  submitJob,
  waitForJobs,
} from '../helpers/slurm.js';

describe.runIf(hasSlurm())(`Slurm test cluster${slurmSkipNote()}`, () => {
  it('records allocated pretend GPUs in sacct for jobs charged to a fresh account', async () => {
    const account = `amt${randomBytes(4).toString('hex')}`;
    const login = 'amietestuser';
    await ensureSlurmAccount(account);
    await ensureSlurmAccount(account); // a second call must be harmless
    await ensureSlurmUser(login, account);
    await ensureSlurmUser(login, account);

    const twoGpus = await submitJob({ account, user: login, gpus: 2, seconds: 2 });
    const oneGpu = await submitJob({ account, user: login, gpus: 1, seconds: 2 });
    const cpuOnly = await submitJob({ account, user: login, gpus: 0, seconds: 2 });
    const states = await waitForJobs([twoGpus, oneGpu, cpuOnly], 60_000);
    expect([...states.values()]).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);

    const { stdout } = await execa('sacct', [
      '-a',
      '-X',
      '-n',
      '-P',
      '-j',
      [twoGpus, oneGpu, cpuOnly].join(','),
      '--format',
      'JobID,Account,AllocTRES,ElapsedRaw',
    ]);
    const rows = new Map(
      stdout
        .trim()
        .split('\n')
        .map((line) => {
          const [id, acct, tres, elapsed] = line.split('|');
          return [id!, { acct, tres: tres!.split(','), elapsed: Number(elapsed) }];
        }),
    );
    for (const id of [twoGpus, oneGpu, cpuOnly]) {
      expect(rows.get(id)?.acct).toBe(account);
      expect(rows.get(id)?.elapsed).toBeGreaterThanOrEqual(1);
    }
    expect(rows.get(twoGpus)?.tres).toContain('gres/gpu=2');
    expect(rows.get(oneGpu)?.tres).toContain('gres/gpu=1');
    expect(rows.get(cpuOnly)?.tres.some((t) => t.startsWith('gres/gpu'))).toBe(false);
  });
});
