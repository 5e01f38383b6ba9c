/**
 * `npm run bench`: prints one table of throughput figures, each measured in one run on this
 * machine. Needs a built tree (npm install builds it) and, for the PostgreSQL figures,
 * AMIE_TEST_DATABASE_URL naming a server where it may create databases.
 */
import { cpus } from 'node:os';
import { dispatchBenchmarks, type BenchRow } from './dispatch.js';

function formatRows(rows: BenchRow[]): string {
  const header = ['figure', 'items', 'seconds', 'items/s', 'round trips/item'];
  const body = rows.map((r) =>
    r.note
      ? [r.figure, '-', '-', '-', r.note]
      : [
          r.figure,
          String(r.count),
          r.seconds.toFixed(2),
          r.perSecond.toFixed(0),
          r.roundTripsPerItem === null ? '-' : r.roundTripsPerItem.toFixed(2),
        ],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

const rows: BenchRow[] = [];
console.log(
  `amie-toolkit benchmarks on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}`,
);
rows.push(...(await dispatchBenchmarks(Number(process.env.AMIE_BENCH_PACKETS ?? 10_000))));
try {
  // The usage reporter's figures, when that module is built.
  const usageModule = './usage.js'; // written with the usage reporter; absent before it
  const usage = (await import(usageModule)) as { usageBenchmarks?: () => Promise<BenchRow[]> };
  if (usage.usageBenchmarks) rows.push(...(await usage.usageBenchmarks()));
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
}
// Embedded database memory, and usage reporting at scale through `amie report-usage`.
rows.push(...(await (await import('./pglite.js')).pgliteBenchmarks()));
rows.push(...(await (await import('./usage-scale.js')).usageScaleBenchmarks()));
console.log(formatRows(rows));
