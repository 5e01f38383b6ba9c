/**
 * `npm run bench`: prints one table of figures taken on this machine: start-up time beside bare
 * node, throughput of `amie process`, the batch-size sweep, and the usage reporter's. Needs a
 * built tree (npm install builds it) and, for the PostgreSQL figures, AMIE_TEST_DATABASE_URL
 * naming a server where it may create databases.
 */
import { cpus } from 'node:os';
import { batchSizeSweep, dispatchBenchmarks, type BenchRow } from './dispatch.js';
import { startupBenchmarks } from './startup.js';

function formatRows(rows: BenchRow[]): string {
  const header = ['figure', 'items', 'seconds', 'items/s', 'round trips/item', 'note'];
  const body = rows.map((r) => [
    r.figure,
    r.count ? String(r.count) : '-',
    r.count ? r.seconds.toFixed(2) : '-',
    r.perSecond ? r.perSecond.toFixed(0) : '-',
    r.roundTripsPerItem === null ? '-' : r.roundTripsPerItem.toFixed(2),
    r.note ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

const rows: BenchRow[] = [];
console.log(
  `amie-toolkit benchmarks on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}`,
);
const started = Date.now();
rows.push(...(await startupBenchmarks()));
rows.push(...(await dispatchBenchmarks(Number(process.env.AMIE_BENCH_PACKETS ?? 10_000))));
rows.push(...(await batchSizeSweep(Number(process.env.AMIE_BENCH_SWEEP_PACKETS ?? 2000))));
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
console.log(`(bench took ${((Date.now() - started) / 1000).toFixed(0)} s)`);
