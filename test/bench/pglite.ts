/**
 * Peak resident memory of the embedded database as the commands use it, each measured in a
 * child process of its own (rss-probe.ts): `amie db init` creating a new database, an idle
 * `amie process` (nothing pending), and `amie demo`. Run on its own after a build with
 * `node dist/test/bench/pglite.js`.
 */
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPgliteTemplate } from '../../src/db/pglite-template.js';
import type { BenchRow } from './dispatch.js';
import { runAmieMeasured } from './usage-scale.js';

export interface PgliteMemory {
  dbInit: number;
  idleProcess: number;
  demo: number;
  seconds: { dbInit: number; idleProcess: number; demo: number };
}

export async function measurePgliteMemory(): Promise<PgliteMemory> {
  const work = mkdtempSync(join(tmpdir(), 'amie-bench-pglite-'));
  try {
    writeFileSync(
      join(work, 'amie.yaml'),
      'site:\n  name: BENCH\n  resource: bench.example.org\ndatabase:\n  path: db\nhandler: registry\n',
    );
    // AMIE_DATABASE_URL would send the commands to a server: these figures are the embedded database's.
    const env = { AMIE_DATABASE_URL: '' };
    const init = await runAmieMeasured(['-c', 'amie.yaml', 'db', 'init'], env, work);
    const idle = await runAmieMeasured(['-c', 'amie.yaml', 'process'], env, work);
    const demo = await runAmieMeasured(['demo'], env, work);
    return {
      dbInit: init.peakRss,
      idleProcess: idle.peakRss,
      demo: demo.peakRss,
      seconds: { dbInit: init.seconds, idleProcess: idle.seconds, demo: demo.seconds },
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;

/** The rows `npm run bench` prints (see run.ts): peak RSS as the note, wall time as seconds. */
export async function pgliteBenchmarks(): Promise<BenchRow[]> {
  const m = await measurePgliteMemory();
  const template = findPgliteTemplate() ? '' : ' (no template built: PGlite initdb)';
  const row = (figure: string, rss: number, seconds: number): BenchRow => ({
    figure,
    count: 1,
    seconds,
    perSecond: 1 / seconds,
    roundTripsPerItem: null,
    note: `peak RSS ${mb(rss)}, ${seconds.toFixed(1)} s`,
  });
  return [
    row(`embedded db init peak RSS${template}`, m.dbInit, m.seconds.dbInit),
    row('embedded idle process peak RSS', m.idleProcess, m.seconds.idleProcess),
    row(`embedded demo peak RSS${template}`, m.demo, m.seconds.demo),
  ];
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const r of await pgliteBenchmarks()) console.log(`${r.figure}: ${r.note}`);
}
