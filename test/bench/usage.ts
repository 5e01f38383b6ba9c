/**
 * Usage reporting benchmark (not a test): `npm run bench`, or on its own after a build with
 * `node dist/test/bench/usage.js [lines] [jobs]`.
 *
 * 1. Parse and charge synthetic sacct lines (default 1,000,000): lines per second, peak memory.
 *    Memory must stay flat: lines stream through, nothing holds the window.
 * 2. Report synthetic jobs (default 100,000) through the amie-db sink into an embedded
 *    database, and into a fresh database on the server in AMIE_TEST_DATABASE_URL when set:
 *    jobs per second.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { openPglite, type Database } from '../../src/db/index.js';
import { freshPgDatabase } from '../helpers/db.js';
import type { BenchRow } from './dispatch.js';
import { BENCH_ACCOUNTS, sacctLines } from '../helpers/sacct-lines.js';
import { initDatabase } from '../../src/store/index.js';
import { chargeJob } from '../../src/usage/charge.js';
import { UsageConfigSchema } from '../../src/usage/index.js';
import { reportUsage } from '../../src/usage/report.js';
import { isSacctSkip, parseSacctStream } from '../../src/usage/sacct.js';

const ACCOUNTS = BENCH_ACCOUNTS;

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function memorySampler(): { stop: () => { rss: number; heap: number } } {
  let rss = 0;
  let heap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heap = Math.max(heap, m.heapUsed);
  };
  sample();
  const timer = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { rss, heap };
    },
  };
}

export async function benchParseAndCharge(
  lines: number,
): Promise<{ seconds: number; linesPerSecond: number; peakRss: number; peakHeap: number }> {
  const mem = memorySampler();
  const started = process.hrtime.bigint();
  let jobs = 0;
  let charged = 0;
  let total = 0;
  for await (const r of parseSacctStream(sacctLines(lines))) {
    if (isSacctSkip(r)) continue;
    jobs++;
    const c = chargeJob(r, { unit: 'gpu-hours' });
    if ('charge' in c) {
      charged++;
      total += c.charge;
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peak = mem.stop();
  const linesPerSecond = lines / seconds;
  console.log(
    `parse + charge: ${lines} sacct lines in ${seconds.toFixed(2)} s = ${Math.round(linesPerSecond)} lines/s ` +
      `(${jobs} jobs, ${charged} charged, ${Math.round(total)} GPU-hours); peak RSS ${mb(peak.rss)}, peak heap ${mb(peak.heap)}`,
  );
  return { seconds, linesPerSecond, peakRss: peak.rss, peakHeap: peak.heap };
}

export async function benchAmieDbSink(
  jobs: number,
  driver: 'pglite' | 'pg' = 'pglite',
): Promise<{ reported: number; seconds: number; jobsPerSecond: number; roundTrips: number }> {
  const pg = driver === 'pg' ? await freshPgDatabase() : undefined;
  const db: Database = pg ? pg.db : await openPglite();
  try {
    await initDatabase(db);
    const usage = UsageConfigSchema.parse({ projects: Object.fromEntries(ACCOUNTS.map((a) => [a, `p-${a}`])) });
    // Only GPU jobs, so every line becomes a packet.
    async function* gpuJobs() {
      let n = 0;
      for await (const r of parseSacctStream(sacctLines(jobs * 2))) {
        if (isSacctSkip(r) || r.gpus === 0) continue;
        yield r;
        if (++n >= jobs) return;
      }
    }
    const started = process.hrtime.bigint();
    const trips = db.roundTrips;
    const s = await reportUsage(db, {
      site: { name: 'BENCH', resource: 'bench.example.org', remoteSite: 'TGCDB' },
      usage,
      since: new Date(Date.UTC(2024, 2, 1)),
      until: new Date(Date.UTC(2024, 5, 1)),
      records: gpuJobs(),
      log: pino({ level: 'silent' }),
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const jobsPerSecond = s.reported / seconds;
    console.log(
      `amie-db sink (${db.kind}): ${s.reported} jobs as NPU packets in ${seconds.toFixed(2)} s = ${Math.round(jobsPerSecond)} jobs/s, ` +
        `${db.roundTrips - trips} database round trips`,
    );
    return { reported: s.reported, seconds, jobsPerSecond, roundTrips: db.roundTrips - trips };
  } finally {
    if (pg) await pg.cleanup();
    else await db.close();
  }
}

/** The rows `npm run bench` prints (see run.ts); sizes from AMIE_BENCH_SACCT_LINES and AMIE_BENCH_USAGE_JOBS. */
export async function usageBenchmarks(): Promise<BenchRow[]> {
  const lines = Number(process.env.AMIE_BENCH_SACCT_LINES ?? 1_000_000);
  const jobs = Number(process.env.AMIE_BENCH_USAGE_JOBS ?? 100_000);
  const rows: BenchRow[] = [];
  const p = await benchParseAndCharge(lines);
  rows.push({
    figure: 'sacct lines parsed + charged',
    count: lines,
    seconds: p.seconds,
    perSecond: p.linesPerSecond,
    roundTripsPerItem: null,
  });
  rows.push({
    figure: 'sacct parse peak memory',
    count: 0,
    seconds: 0,
    perSecond: 0,
    roundTripsPerItem: null,
    note: `RSS ${mb(p.peakRss)}, heap ${mb(p.peakHeap)}`,
  });
  const drivers: Array<'pglite' | 'pg'> = process.env.AMIE_TEST_DATABASE_URL ? ['pglite', 'pg'] : ['pglite'];
  for (const d of drivers) {
    const r = await benchAmieDbSink(jobs, d);
    rows.push({
      figure: `usage jobs -> NPU packets (${d})`,
      count: r.reported,
      seconds: r.seconds,
      perSecond: r.jobsPerSecond,
      roundTripsPerItem: r.roundTrips / r.reported,
    });
  }
  return rows;
}

export async function runUsageBench(lines = 1_000_000, jobs = 100_000): Promise<void> {
  await benchParseAndCharge(lines);
  await benchAmieDbSink(jobs, 'pglite');
  if (process.env.AMIE_TEST_DATABASE_URL) await benchAmieDbSink(jobs, 'pg');
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const lines = Number(process.argv[2] ?? 1_000_000);
  const jobs = Number(process.argv[3] ?? 100_000);
  await runUsageBench(lines, jobs);
}
