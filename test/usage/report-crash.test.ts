import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliSiteEachTest, requireBuiltCli, runAmie } from '../helpers/cli.js';
import { driverCases } from '../helpers/db.js';
import { fakeSacct, sacctJob } from '../helpers/sacct-lines.js';

const JOBS = 25;

requireBuiltCli();

const amie = (args: string[]) => runAmie(args, { AMIE_LOG_LEVEL: 'info' });

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(driverCases())('amie report-usage killed between batches on $name', (driver) => {
  const s = cliSiteEachTest(driver, { prefix: 'amie-usage-crash-', init: true });
  let config: string;
  let release: string;
  beforeEach(async () => {
    if (!driver.available) return;
    const dir = s.site.dir;
    config = s.site.config;
    release = join(dir, 'release');
    // A stand-in for sacct: prints the jobs, then blocks until the test lets it finish, so the
    // reporter has committed exactly the full batches when it is killed.
    const lines = Array.from({ length: JOBS }, (_, i) =>
      sacctJob(String(9000 + i), { AllocTRES: 'cpu=4,gres/gpu=1,node=1' }),
    );
    const sacct = fakeSacct(dir, lines, { waitFor: release });
    s.site.writeConfig([`usage:\n  batchSize: 10\n  sacctPath: ${sacct}\n  projects:\n    abc123: p-abc123\n`]);
  });
  afterEach(() => {
    if (release) writeFileSync(release, '');
  });
  const run = it.skipIf(!driver.available);

  run('SIGKILL after two committed batches, then a rerun: every job reported exactly once', async () => {
    const args = ['-c', config, 'report-usage', '--since', '2024-03-01', '--until', '2024-03-02'];
    const first = amie(args);
    await until(() => (first.stderr().match(/"msg":"usage batch written"/g) ?? []).length >= 2, 30_000, 'two batches');
    first.child.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');

    writeFileSync(release, '');
    const second = await amie(args).done;
    expect(second.stderr).not.toContain('"level":50');
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`jobs seen ${JOBS}, reported 5, already reported 20, failed 0`);

    await s.site.withDb(async (db) => {
      const { rows } = await db.query<{ packets: number; jobs: number; distinct_jobs: number; runs: string }>(
        `SELECT (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 1) AS packets,
                (SELECT count(*)::int FROM amie_toolkit.reported_jobs) AS jobs,
                (SELECT count(DISTINCT value)::int FROM data_tbl WHERE tag = 'JobIdentity') AS distinct_jobs,
                (SELECT string_agg(status, ',' ORDER BY run_id) FROM amie_toolkit.usage_runs) AS runs`,
      );
      // The killed run never finished: it stays 'running' and does not move the next default window.
      expect(rows[0]).toEqual({ packets: JOBS, jobs: JOBS, distinct_jobs: JOBS, runs: 'running,finished' });
    });
  });
});
