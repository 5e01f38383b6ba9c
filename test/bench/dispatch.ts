/**
 * Throughput of `amie process` with the registry handler: 10,000 pending request_account_create
 * transactions answered by one and four processes on PostgreSQL and one on the embedded
 * database; and the batch-size sweep, 2,000 of them at each `process.batchSize` of
 * BATCH_SIZES by one and four processes, each four-process figure with its ratio to one
 * process (overlap must cost nothing). Each figure is measured in one run, wall clock from
 * start to the last process' exit (start-up included), with the database round trips the
 * processes report.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPglite, type Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { RegistryHandler } from '../../handlers/registry.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { SITE, quietLog, rpcTags, seedIncoming, seedRacs } from '../helpers/amie.js';
import { freshPgDatabase } from '../helpers/db.js';
import { CLI } from '../helpers/cli-path.js';

const HANDLER = process.env.AMIE_BENCH_HANDLER ?? 'registry';
const HANDLER_LABEL = HANDLER.includes('/') ? 'custom handler' : `${HANDLER} handler`;

export interface BenchRow {
  figure: string;
  /** 0 when the row has no measured items (a skipped figure, a memory figure): shown as '-'. */
  count: number;
  seconds: number;
  perSecond: number;
  roundTripsPerItem: number | null;
  /** Shown in the last column: a skip reason, memory, a ratio to another row. */
  note?: string;
}

/** The row of a figure that needs PostgreSQL, when the environment has none. */
export function skippedWithoutPostgres(figure: string): BenchRow {
  return {
    figure,
    count: 0,
    seconds: 0,
    perSecond: 0,
    roundTripsPerItem: null,
    note: 'skipped: set AMIE_TEST_DATABASE_URL',
  };
}

/** The batch sizes the sweep compares; `process.batchSize` defaults to one of them. */
export const BATCH_SIZES = [10, 50, 200, 500] as const;

interface RunFinished {
  msg: string;
  answered: number;
  round_trips: number;
}

/**
 * One `amie process`: what its "run finished" line reports, or nothing answered when it found
 * another run of its scope at work and left (its one statement is not counted).
 */
function runProcess(config: string): Promise<RunFinished> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, '-c', config, 'process'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    let stdout = '';
    let finished: RunFinished | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      const lines = (tail + chunk).split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('"run finished"')) finished = JSON.parse(line) as RunFinished;
      }
    });
    child.on('close', (code) => {
      if (!finished && code === 0 && stdout.startsWith('another `amie process`')) {
        finished = { msg: 'left', answered: 0, round_trips: 0 };
      }
      if (finished && (code === 0 || code === 1)) resolvePromise(finished);
      else reject(new Error(`amie process exited ${code}: ${tail}`));
    });
  });
}

async function measure(
  figure: string,
  packets: number,
  processes: number,
  database: { url?: string; path?: string },
  batchSize = 500,
): Promise<BenchRow> {
  const dir = mkdtempSync(join(tmpdir(), 'amie-bench-'));
  const config = join(dir, 'amie.yaml');
  writeFileSync(
    config,
    [
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }`,
      database.url ? `database: { url: "${database.url}" }` : `database: { path: "${database.path}" }`,
      `handler: ${HANDLER}`,
      `process: { batchSize: ${batchSize} }`,
      'log: { level: info }', // as operators run it: one line per packet
    ].join('\n'),
  );
  try {
    const started = process.hrtime.bigint();
    const runs = await Promise.all(Array.from({ length: processes }, () => runProcess(config)));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const answered = runs.reduce((a, r) => a + r.answered, 0);
    const trips = runs.reduce((a, r) => a + r.round_trips, 0);
    if (answered !== packets) throw new Error(`${figure}: ${answered} of ${packets} packets answered`);
    return { figure, count: packets, seconds, perSecond: packets / seconds, roundTripsPerItem: trips / packets };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The project the RACs name, created the way a site gets it: an RPC answered by the registry. */
async function seeded(db: Database, packets: number) {
  await initDatabase(db);
  await seedIncoming(db, 'request_project_create', rpcTags({ ProjectID: 'p-abc123', RecordID: 'bench-rpc' }));
  const registry = new RegistryHandler({ db, log: quietLog, site: SITE, options: {}, dryRun: false });
  const made = await new Dispatcher(db, registry, quietLog).runOnce();
  if (made.answered !== 1) throw new Error(`could not create the benchmark project: ${JSON.stringify(made.results)}`);
  await seedRacs(db, packets);
}

export async function dispatchBenchmarks(packets = 10_000): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  if (process.env.AMIE_TEST_DATABASE_URL) {
    for (const processes of [1, 4]) {
      const t = await freshPgDatabase();
      try {
        await seeded(t.db, packets);
        rows.push(
          await measure(
            `amie process, ${HANDLER_LABEL}, PostgreSQL, ${processes} process${processes > 1 ? 'es' : ''}`,
            packets,
            processes,
            { url: t.url },
          ),
        );
      } finally {
        await t.cleanup();
      }
    }
    rows[1]!.note = `${(rows[1]!.perSecond / rows[0]!.perSecond).toFixed(2)}x one process`;
  } else {
    rows.push(skippedWithoutPostgres('amie process on PostgreSQL'));
  }
  const dir = mkdtempSync(join(tmpdir(), 'amie-bench-pglite-'));
  try {
    const path = join(dir, 'db');
    const db = await openPglite({ path });
    await seeded(db, packets);
    await db.close();
    rows.push(await measure(`amie process, ${HANDLER_LABEL}, embedded PGlite, 1 process`, packets, 1, { path }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** Runs of each sweep figure, one and four processes in turn: the figure is their median. */
const SWEEP_REPEATS = Number(process.env.AMIE_BENCH_SWEEP_REPEATS ?? 3);

/**
 * 2,000 pending RACs (a busy day's backlog) per run, answered at each batch size by one and by
 * four overlapping processes, each run on a fresh database. A run takes a second or two, so one
 * busy moment of the machine moved a single run by a fifth: each figure is the median of
 * SWEEP_REPEATS runs, one and four processes taking turns, and the four's note gives the range
 * of their ratios to the one-process run next to them. Needs PostgreSQL (AMIE_TEST_DATABASE_URL).
 */
export async function batchSizeSweep(packets = 2000): Promise<BenchRow[]> {
  if (!process.env.AMIE_TEST_DATABASE_URL) {
    return [skippedWithoutPostgres('batch-size sweep')];
  }
  const rows: BenchRow[] = [];
  for (const batchSize of BATCH_SIZES) {
    const runs: Record<1 | 4, BenchRow[]> = { 1: [], 4: [] };
    for (let repeat = 0; repeat < SWEEP_REPEATS; repeat++) {
      for (const processes of [1, 4] as const) {
        const t = await freshPgDatabase();
        try {
          await seeded(t.db, packets);
          runs[processes].push(
            await measure(
              `batchSize ${batchSize}, PostgreSQL, ${processes} process${processes > 1 ? 'es' : ''}`,
              packets,
              processes,
              { url: t.url },
              batchSize,
            ),
          );
        } finally {
          await t.cleanup();
        }
      }
    }
    const [one, four] = [median(runs[1]), median(runs[4])];
    const ratios = runs[4].map((r, i) => r.perSecond / runs[1][i]!.perSecond);
    four.note =
      `${(four.perSecond / one.perSecond).toFixed(2)}x one process` +
      (ratios.length > 1
        ? ` (median of ${ratios.length}; ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`
        : '');
    rows.push(one, four);
  }
  return rows;
}

/** The run of median duration. */
function median(runs: BenchRow[]): BenchRow {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[runs.length >> 1]!;
}
