import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SITE } from '../helpers/amie.js';
import { amieInProcess, cleanEnv } from '../helpers/cli.js';
import { initialisedPgliteDir } from '../helpers/db.js';
import { fakeSacct, sacctJob } from '../helpers/sacct-lines.js';

describe('amie report-usage and amie usage on the command line', () => {
  let dir: string;
  let config: string;
  const amie = (...args: string[]) =>
    amieInProcess(['-c', config, ...args], { cwd: dir, env: cleanEnv({ AMIE_LOG_LEVEL: 'warn' }), trimmed: true });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amie-usage-cli-'));
    const tres = { AllocTRES: 'cpu=4,gres/gpu=2,node=1' };
    const sacct = fakeSacct(dir, [sacctJob('1001', tres), sacctJob('1002', { ...tres, Account: 'other' })]);
    config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\n` +
        `usage:\n  sacctPath: ${sacct}\n  projects: { abc123: p-abc123 }\n`,
    );
    await initialisedPgliteDir(join(dir, 'db'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a dry run shows what it would report, by project, and writes nothing', async () => {
    const r = await amie('report-usage', '--dry-run', '--since', '2024-03-01', '--until', '2024-03-02');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('dry run, nothing written');
    expect(r.stdout).toContain('jobs seen 2, would report 1, already reported 0, failed 0, skipped 1');
    expect(r.stdout).toContain('skipped 1: unmapped Slurm account other');
    expect(r.stdout).toContain('p-abc123: 2 GPU-hours');
    const again = await amie('report-usage', '--since', '2024-03-01', '--until', '2024-03-02', '--json');
    expect(JSON.parse(again.stdout)).toMatchObject({ reported: 1, runId: 1 });
  });

  it('a run without --since continues from the last one and finds nothing new', async () => {
    const r = await amie('report-usage');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('(continuing from the last run)');
    expect(r.stdout).toContain('reported 0, already reported 1');
  });

  it('amie usage failed lists nothing when nothing was refused', async () => {
    const r = await amie('usage', 'failed');
    expect(r).toMatchObject({ code: 0, stdout: '(none)' });
  });

  it('bad options and a missing usageApi are configuration errors (exit 2) naming what to fix', async () => {
    const since = await amie('report-usage', '--since', 'yesterday');
    expect(since.code).toBe(2);
    expect(since.stderr).toContain('--since: expected an ISO 8601 time');
    const sink = await amie('report-usage', '--sink', 'usage-api');
    expect(sink.code).toBe(2);
    expect(sink.stderr).toContain('usage.usageApi: missing');
  });
});
