/**
 * Usage reporting at scale, measured as a site runs it: `amie report-usage` in a child process
 * (its peak RSS its own), reading a stand-in sacct that prints synthetic lines (fake-sacct.ts).
 *
 * 1. AMIE_BENCH_REPORT_LINES lines (default 100,000, so that `npm run bench` stays within five
 *    minutes; the README's figures are for 1,000,000) through the amie-db sink, and through the
 *    usage-api sink into the simulator's Usage API on loopback: lines/s and peak RSS.
 * 2. The next day's run (AMIE_BENCH_DAY_LINES lines, default 20,000) with an empty reported_jobs
 *    table and with AMIE_BENCH_BACKLOG (default 1,000,000) jobs already in it: the two must take
 *    about as long, since a run looks up only the jobs of its own window.
 *
 * On the PostgreSQL server in AMIE_TEST_DATABASE_URL when set (a fresh database per figure),
 * else on the embedded database. Run on its own after a build:
 * `node dist/test/bench/usage-scale.js [lines]`.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openPglite } from '../../src/db/index.js';
import { RestSimulator } from '../../src/simulator/http.js';
import { initDatabase } from '../../src/store/index.js';
import { quietLog } from '../helpers/amie.js';
import { freshPgDatabase } from '../helpers/db.js';
import { BENCH_ACCOUNTS, seedReportedJobs } from '../helpers/sacct-lines.js';
import type { BenchRow } from './dispatch.js';
import { CLI } from '../helpers/cli-path.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const PROBE = pathToFileURL(join(HERE, 'rss-probe.js')).href;
const FAKE_SACCT = join(HERE, 'fake-sacct.js');
const SITE = { name: 'BENCH', resource: 'bench.example.org' };
const API_KEY = 'bench-usage-key';

export interface CliRun {
  seconds: number;
  /** Peak resident memory of the child, bytes. */
  peakRss: number;
  stdout: string;
}

/** Runs the compiled `amie` with `args` in a child, measuring wall time and its own peak RSS. */
export async function runAmieMeasured(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<CliRun> {
  const dir = mkdtempSync(join(tmpdir(), 'amie-bench-rss-'));
  const rssFile = join(dir, 'rss');
  try {
    const started = process.hrtime.bigint();
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (done, fail) => {
        const child = spawn(process.execPath, ['--import', PROBE, CLI, ...args], {
          cwd: cwd ?? dir,
          env: { ...process.env, ...env, AMIE_BENCH_RSS_FILE: rssFile },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
        child.on('error', fail);
        child.on('close', (c) => done({ code: c, stdout: out, stderr: err }));
      },
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (code !== 0) throw new Error(`amie ${args.join(' ')} exited ${code}: ${stderr.trim() || stdout.trim()}`);
    const kib = readFileSync(rssFile, 'utf8').trim().split('\n').map(Number);
    return { seconds, peakRss: Math.max(...kib) * 1024, stdout };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;

/** A fresh database another process can open: a server database's URL, or an embedded directory. */
async function freshDatabase(work: string, name: string) {
  if (process.env.AMIE_TEST_DATABASE_URL) {
    const t = await freshPgDatabase();
    await initDatabase(t.db);
    return { kind: 'pg' as const, db: t.db, config: `  url: ${JSON.stringify(t.url)}`, cleanup: t.cleanup };
  }
  const path = join(work, name);
  const db = await openPglite({ path });
  await initDatabase(db);
  return {
    kind: 'pglite' as const,
    db,
    config: `  path: ${JSON.stringify(path)}`,
    // The child opens the directory itself: the bench lets go of it first.
    release: () => db.close(),
    cleanup: async () => {},
  };
}

/**
 * One `amie report-usage` over `lines` stand-in sacct lines, jobs numbered from `firstJob`.
 * Returns the run's figures and its summary.
 */
async function reportUsageRun(
  work: string,
  database: string,
  sink: 'amie-db' | 'usage-api',
  lines: number,
  firstJob: number,
  usageUrl?: string,
): Promise<CliRun & { reported: number; jobsSeen: number }> {
  const sacct = join(work, `sacct-${firstJob}`);
  writeFileSync(
    sacct,
    `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(FAKE_SACCT)} ${lines} ${firstJob} 2024-03-01T00:00:00Z\n`,
  );
  chmodSync(sacct, 0o755);
  const config = join(work, `amie-${sink}-${firstJob}.yaml`);
  writeFileSync(
    config,
    [
      'site:',
      `  name: ${SITE.name}`,
      `  resource: ${SITE.resource}`,
      'database:',
      database,
      'handler: registry',
      'usage:',
      `  sink: ${sink}`,
      `  sacctPath: ${JSON.stringify(sacct)}`,
      '  projects:',
      ...BENCH_ACCOUNTS.map((a) => `    ${a}: p-${a}`),
      ...(usageUrl ? ['  usageApi:', `    url: ${usageUrl}`, '    apiKeyEnv: AMIE_BENCH_USAGE_KEY'] : []),
      '',
    ].join('\n'),
  );
  const run = await runAmieMeasured(
    ['-c', config, 'report-usage', '--since', '2024-01-01', '--until', '2025-01-01', '--json'],
    { AMIE_BENCH_USAGE_KEY: API_KEY, AMIE_DATABASE_URL: '' },
    work,
  );
  const summary = JSON.parse(run.stdout) as { reported: number; jobsSeen: number; failed: number };
  if (summary.failed > 0) throw new Error(`report-usage (${sink}): ${summary.failed} records refused`);
  return { ...run, reported: summary.reported, jobsSeen: summary.jobsSeen };
}

function linesRow(figure: string, lines: number, r: CliRun & { reported: number }): BenchRow {
  return {
    figure,
    count: lines,
    seconds: r.seconds,
    perSecond: lines / r.seconds,
    roundTripsPerItem: null,
  };
}

/** The rows `npm run bench` prints (see run.ts). */
export async function usageScaleBenchmarks(): Promise<BenchRow[]> {
  const lines = Number(process.env.AMIE_BENCH_REPORT_LINES ?? 100_000);
  const dayLines = Number(process.env.AMIE_BENCH_DAY_LINES ?? 20_000);
  const backlog = Number(process.env.AMIE_BENCH_BACKLOG ?? 1_000_000);
  const work = mkdtempSync(join(tmpdir(), 'amie-bench-usage-'));
  const rows: BenchRow[] = [];
  const say = (s: string) => console.log(s);
  try {
    // 1. The whole window through each sink.
    for (const sink of ['amie-db', 'usage-api'] as const) {
      const d = await freshDatabase(work, `db-${sink}`);
      // The simulator's Usage API, on loopback; it forgets the bodies it keeps for tests as it goes.
      const sim =
        sink === 'usage-api' ? await RestSimulator.start({ site: SITE, apiKey: API_KEY, log: quietLog }) : undefined;
      const forget = sim ? setInterval(() => sim.usage.received.splice(0), 1000) : undefined;
      try {
        await d.release?.();
        const r = await reportUsageRun(work, d.config, sink, lines, 2_000_000, sim?.usageUrl);
        if (sim && sim.usage.loaded.size !== r.reported)
          throw new Error(`usage-api: ${r.reported} reported but the simulator loaded ${sim.usage.loaded.size}`);
        say(
          `report-usage ${sink} (${d.kind}): ${lines} sacct lines, ${r.reported} jobs reported in ${r.seconds.toFixed(1)} s = ` +
            `${Math.round(lines / r.seconds)} lines/s; peak RSS ${mb(r.peakRss)}`,
        );
        rows.push(linesRow(`report-usage sacct lines -> ${sink} (${d.kind})`, lines, r));
        rows.push({
          figure: `report-usage ${sink} (${d.kind}) peak RSS`,
          count: 0,
          seconds: 0,
          perSecond: 0,
          roundTripsPerItem: null,
          note: `${mb(r.peakRss)} for ${lines} lines`,
        });
      } finally {
        if (forget) clearInterval(forget);
        await sim?.stop();
        await d.cleanup();
      }
    }

    // 2. The next day's run with no backlog and with `backlog` jobs already reported.
    for (const seeded of [0, backlog]) {
      const d = await freshDatabase(work, `db-backlog-${seeded}`);
      try {
        if (seeded > 0) {
          const t0 = Date.now();
          await seedReportedJobs(d.db, seeded);
          say(`reported_jobs seeded with ${seeded} jobs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        }
        await d.release?.();
        const r = await reportUsageRun(work, d.config, 'amie-db', dayLines, 5_000_000);
        say(
          `next-day report-usage amie-db (${d.kind}), ${seeded} jobs already reported: ${dayLines} lines in ${r.seconds.toFixed(2)} s ` +
            `= ${Math.round(dayLines / r.seconds)} lines/s`,
        );
        rows.push(linesRow(`next-day run, ${seeded} jobs backlog (${d.kind})`, dayLines, r));
      } finally {
        await d.cleanup();
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2]) process.env.AMIE_BENCH_REPORT_LINES = process.argv[2];
  for (const r of await usageScaleBenchmarks()) console.log(JSON.stringify(r));
}
