/**
 * Start-up time of the commands cron and monitoring run every few minutes: `amie status` and
 * `amie process` with nothing to do on PostgreSQL, timed side by side with a bare `node -e 0`
 * on the same machine (taken in turn, so that a busy moment slows all three alike). Each figure
 * is the median wall clock of AMIE_BENCH_STARTUP_RUNS runs (default 21: a machine whose speed drifts moves a median of 10), spawn to exit.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDatabase } from '../../src/store/index.js';
import { SITE } from '../helpers/amie.js';
import { freshPgDatabase } from '../helpers/db.js';
import { skippedWithoutPostgres, type BenchRow } from './dispatch.js';
import { CLI } from '../helpers/cli-path.js';

/** Milliseconds from spawn to exit; a failed run is an error, not a fast figure. */
function timed(args: string[]): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // 1 is a verdict too (status WARNING); anything else means the command did not run.
      if (code === 0 || code === 1) resolvePromise(ms);
      else reject(new Error(`node ${args.join(' ')} exited ${code}: ${stderr.slice(-500)}`));
    });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export async function startupBenchmarks(runs = Number(process.env.AMIE_BENCH_STARTUP_RUNS ?? 21)): Promise<BenchRow[]> {
  if (!process.env.AMIE_TEST_DATABASE_URL) {
    return [skippedWithoutPostgres('start-up')];
  }
  const t = await freshPgDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'amie-bench-startup-'));
  try {
    await initDatabase(t.db);
    const config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      [
        `site: { name: ${SITE.name}, resource: ${SITE.resource} }`,
        `database: { url: "${t.url}" }`,
        'handler: registry',
      ].join('\n'),
    );
    const commands: Array<{ figure: string; args: string[] }> = [
      { figure: 'start-up: node -e 0 (bare node)', args: ['-e', '0'] },
      { figure: 'start-up: amie status, PostgreSQL, nothing pending', args: [CLI, '-c', config, 'status'] },
      { figure: 'start-up: amie process, PostgreSQL, nothing pending', args: [CLI, '-c', config, 'process'] },
    ];
    // One run of each first, unmeasured: the first `process` records the first pass (so that
    // `status` answers OK), and the files are in the page cache for every measured run.
    for (const c of commands) await timed(c.args);
    const times = commands.map(() => [] as number[]);
    for (let i = 0; i < runs; i++) {
      for (const [k, c] of commands.entries()) times[k]!.push(await timed(c.args));
    }
    const bare = median(times[0]!);
    return commands.map((c, k) => {
      const ms = median(times[k]!);
      return {
        figure: c.figure,
        count: runs,
        seconds: ms / 1000,
        perSecond: 0,
        roundTripsPerItem: null,
        note: `median ${ms.toFixed(0)} ms${k === 0 ? '' : `, ${(ms / bare).toFixed(1)}x bare node`}`,
      };
    });
  } finally {
    await t.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}
