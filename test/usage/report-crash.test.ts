import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { openPglite, type Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { SITE } from '../helpers/amie.js';
import { driverCases, type TestDatabase } from '../helpers/db.js';

const CLI = resolve('dist/src/cli/main.js');
const JOBS = 25;

function amie(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, AMIE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (res) => child.on('close', (code, signal) => res({ code, signal, stdout, stderr })),
  );
  return { child, done, stderr: () => stderr };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(driverCases())('amie report-usage killed between batches on $name', (driver) => {
  let dir: string;
  let t: TestDatabase | undefined;
  let config: string;
  let release: string;
  beforeEach(async () => {
    if (!driver.available) return;
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with npx tsc -p . (npm test does it)`);
    dir = mkdtempSync(join(tmpdir(), 'amie-usage-crash-'));
    config = join(dir, 'amie.yaml');
    release = join(dir, 'release');
    // A stand-in for sacct: prints the jobs, then blocks until the test lets it finish, so the
    // reporter has committed exactly the full batches when it is killed.
    const lines = Array.from({ length: JOBS }, (_, i) =>
      [
        String(9000 + i),
        String(9000 + i),
        'delta',
        'alice',
        'abc123',
        'gpu',
        'COMPLETED',
        '2024-03-01T10:00:00',
        '2024-03-01T10:00:05',
        '2024-03-01T11:00:05',
        '01:00:00',
        '3600',
        '1',
        '4',
        'cpu=4,gres/gpu=1,node=1',
      ].join('|'),
    );
    writeFileSync(join(dir, 'jobs.txt'), `${lines.join('\n')}\n`);
    const sacct = join(dir, 'sacct');
    writeFileSync(
      sacct,
      `#!/bin/sh\ncat '${join(dir, 'jobs.txt')}'\nwhile [ ! -e '${release}' ]; do sleep 0.1; done\n`,
    );
    chmodSync(sacct, 0o755);
    let database: string;
    if (driver.name === 'pg') {
      t = await driver.open();
      await initDatabase(t.db);
      database = `  url: ${t.url}`;
    } else {
      const db = await openPglite({ path: join(dir, 'db') });
      await initDatabase(db);
      await db.close();
      database = `  path: ${join(dir, 'db')}`;
    }
    writeFileSync(
      config,
      `site:\n  name: ${SITE.name}\n  resource: ${SITE.resource}\ndatabase:\n${database}\n` +
        `usage:\n  batchSize: 10\n  sacctPath: ${sacct}\n  projects:\n    abc123: p-abc123\n`,
    );
  });
  afterEach(async () => {
    if (release) writeFileSync(release, '');
    await t?.cleanup();
    t = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
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

    const db: Database = t ? t.db : await openPglite({ path: join(dir, 'db') });
    try {
      const { rows } = await db.query<{ packets: number; jobs: number; distinct_jobs: number; runs: string }>(
        `SELECT (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 1) AS packets,
                (SELECT count(*)::int FROM amie_toolkit.reported_jobs) AS jobs,
                (SELECT count(DISTINCT value)::int FROM data_tbl WHERE tag = 'JobIdentity') AS distinct_jobs,
                (SELECT string_agg(status, ',' ORDER BY run_id) FROM amie_toolkit.usage_runs) AS runs`,
      );
      // The killed run never finished: it stays 'running' and does not move the next default window.
      expect(rows[0]).toEqual({ packets: JOBS, jobs: JOBS, distinct_jobs: JOBS, runs: 'running,finished' });
    } finally {
      if (!t) await db.close();
    }
  });
});
