/**
 * Memory of the embedded database: the PostgreSQL settings every PGlite start uses, and the
 * data-directory template a new embedded database is made from.
 *
 * PGlite's own way to create a database runs initdb in a second PostgreSQL instance beside the
 * first one, each with at least 128 MB of WebAssembly memory, plus a full copy of the second
 * one's memory that initdb restores before each of its postgres runs: about 700 MB at the peak
 * for a database of 40 MB. The result of that initdb is always the same for one PGlite version,
 * so it is made once, at build time (`npm run build:template`, part of `npm run build`), and
 * kept as a compressed tarball beside the compiled code. A new database is then that tarball
 * unpacked (into the data directory, or into memory), and opening it costs what opening any
 * embedded database costs. Without a template for the installed PGlite version (another
 * version, or a tree built with `tsc` alone), PGlite's initdb is used as before.
 *
 * Run directly (`node dist/src/db/pglite-template.js [--force]`), this file writes the template
 * when there is none for the installed version.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { gunzipSync } from 'node:zlib';
import { processAlive } from '../lockfile.js';
import { toolkitPackage } from '../package-root.js';

/**
 * PostgreSQL settings given at every start of an embedded database (`-c name=value`, so they
 * override what a database's postgresql.conf says, also in databases made by older versions).
 * PGlite is one backend in one process: the defaults of a server for 100 connections only cost
 * memory. shared_buffers is touched in full at start (128 MB by default); the rest sizes the
 * shared tables of connections, locks, WAL senders and autovacuum workers PGlite never has.
 * Reads past shared_buffers come from the operating system's file cache.
 */
export const PGLITE_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['shared_buffers', '16MB'],
  ['max_connections', '5'],
  ['autovacuum_worker_slots', '1'],
  ['max_wal_senders', '0'],
  ['max_replication_slots', '0'],
  ['max_prepared_transactions', '0'],
];

/**
 * PostgreSQL in PGlite is 9 MB of WebAssembly, compiled at every start. By default V8 compiles
 * it with its baseline compiler and then recompiles the hot functions with its optimising one
 * in background threads: measured on a 2-core machine, an `amie status` on an embedded database
 * took 1.0 s, 1.5 s of CPU and 215 MB; baseline only, 0.55 s, 0.7 s and 135 MB. A run of
 * 3,000 packets is still faster baseline only (3.3 s against 4.1 s); from about 6,000 packets
 * in one run the optimised code wins (10,000: 9.8 s against 8.6 s), and such sites belong on
 * PostgreSQL anyway. The flag holds for the whole process and must be set before PGlite's
 * first start; setting it again changes nothing. A process started with `--no-liftoff-only`
 * keeps the optimising compiler: a long run, or the test suite's workers (hundreds of databases
 * each, the WebAssembly compiled once per worker: 4% less CPU for the suite).
 */
export function compilePgliteBaselineOnly(): void {
  if (process.execArgv.includes('--no-liftoff-only')) return;
  setFlagsFromString('--liftoff-only');
}

/** PGLITE_SETTINGS as postgres (and initdb) arguments. */
export function pgliteSettingArgs(): string[] {
  return PGLITE_SETTINGS.flatMap(([name, value]) => ['-c', `${name}=${value}`]);
}

/** The installed PGlite's version: a template is only used by the version that made it. */
export function pgliteVersion(): string {
  const require = createRequire(import.meta.url);
  // The package's exports do not list package.json; its main file sits in dist/ beside it.
  const main = require.resolve('@electric-sql/pglite');
  const pkg = JSON.parse(readFileSync(resolve(dirname(main), '..', 'package.json'), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('@electric-sql/pglite: package.json has no version');
  return pkg.version;
}

/** Where the template of this PGlite version lives: `dist/pglite-template-<version>.tar.gz` in the toolkit's directory. */
export function pgliteTemplatePath(version = pgliteVersion()): string {
  return join(toolkitPackage().root, 'dist', `pglite-template-${version}.tar.gz`);
}

/** The template of the installed PGlite version, or undefined when none was built. */
export function findPgliteTemplate(): string | undefined {
  try {
    const path = pgliteTemplatePath();
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs PGlite's initdb once, in memory, and writes the resulting data directory as a gzip
 * tarball to `file` (by way of a temporary file, so a reader never sees half of it).
 */
export async function writePgliteTemplate(file = pgliteTemplatePath()): Promise<string> {
  const { PGlite } = await import('@electric-sql/pglite');
  compilePgliteBaselineOnly();
  const db = await PGlite.create({ initDbStartParams: pgliteSettingArgs() });
  try {
    // initdb also makes template0 and template1, which only CREATE DATABASE reads. An embedded
    // database is one database that nothing creates others from, so they are dropped: every new
    // database then unpacks 500 files (26 MB) instead of 1,100 (40 MB).
    await db.exec(`UPDATE pg_database SET datistemplate = false WHERE datname IN ('template0', 'template1')`);
    await db.exec('DROP DATABASE template0');
    await db.exec('DROP DATABASE template1');
    // Data files written through, so the tarball needs no WAL replay when it is opened.
    await db.exec('CHECKPOINT');
    const blob = await db.dumpDataDir('gzip');
    mkdirSync(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, Buffer.from(await blob.arrayBuffer()));
    renameSync(tmp, file);
  } finally {
    await db.close();
  }
  return file;
}

/**
 * The template as PGlite's `loadDataDir` takes it (for an in-memory database), already
 * uncompressed: PGlite would first try it as a plain tarball, then decompress it in a stream,
 * which made each in-memory open 0.15 s slower.
 */
export function readPgliteTemplate(file: string): Blob {
  return new Blob([gunzipSync(readFileSync(file))]);
}

/**
 * Unpacks the template into a new data directory `dataDir`, which must not exist or be empty.
 * It is unpacked beside it first and renamed into place, so a crash leaves no half database.
 * The tarball is the toolkit's own, but it is still read as outside data: regular files and
 * directories only, every path inside the target.
 */
export function unpackPgliteTemplate(file: string, dataDir: string): void {
  const tar = gunzipSync(readFileSync(file));
  const staging = `${dataDir}.new-${process.pid}`;
  removeAbandonedStaging(dataDir);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    for (const entry of tarEntries(tar)) {
      const rel = normalize(entry.name.replace(/^\/+/, ''));
      const target = resolve(staging, rel);
      if (rel === '.' || rel === '') continue;
      if (!target.startsWith(staging + sep)) throw new Error(`${file}: entry "${entry.name}" is outside the directory`);
      if (entry.type === 'dir') mkdirSync(target, { recursive: true, mode: 0o700 });
      else {
        mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
        writeFileSync(target, entry.data, { mode: 0o600 });
      }
    }
    if (!existsSync(join(staging, 'PG_VERSION'))) throw new Error(`${file}: not a PostgreSQL data directory`);
    // An empty directory (made by hand, or by an earlier mkdir) is replaced; anything else is kept.
    if (existsSync(dataDir) && readdirSync(dataDir).length === 0) rmSync(dataDir, { recursive: true });
    renameSync(staging, dataDir);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

/** Staging directories (`<dataDir>.new-<pid>`) that a killed `db init` left behind: their process is gone. */
function removeAbandonedStaging(dataDir: string): void {
  const prefix = `${basename(dataDir)}.new-`;
  let siblings: string[];
  try {
    siblings = readdirSync(dirname(dataDir));
  } catch {
    return;
  }
  for (const name of siblings) {
    const pid = name.startsWith(prefix) ? name.slice(prefix.length) : '';
    if (/^[1-9]\d*$/.test(pid) && !processAlive(Number(pid))) {
      rmSync(join(dirname(dataDir), name), { recursive: true, force: true });
    }
  }
}

interface TarEntry {
  name: string;
  type: 'file' | 'dir';
  data: Buffer;
}

/** The entries of a ustar archive (as PGlite's dumpDataDir writes them). */
function* tarEntries(tar: Buffer): Generator<TarEntry> {
  const text = (start: number, length: number) => {
    const field = tar.subarray(start, start + length);
    const end = field.indexOf(0);
    return field.subarray(0, end === -1 ? length : end).toString('utf8');
  };
  let offset = 0;
  while (offset + 512 <= tar.length) {
    // Two zero blocks end the archive; one is enough to stop.
    if (tar.subarray(offset, offset + 512).every((b) => b === 0)) return;
    const name = text(offset, 100);
    const prefix = text(offset + 345, 155);
    const size = parseInt(text(offset + 124, 12).trim() || '0', 8);
    const flag = String.fromCharCode(tar[offset + 156] ?? 0);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`tar entry "${name}": bad size`);
    const start = offset + 512;
    if (start + size > tar.length) throw new Error(`tar entry "${name}": truncated`);
    const full = prefix ? `${prefix}/${name}` : name;
    if (flag === '5') yield { name: full, type: 'dir', data: Buffer.alloc(0) };
    else if (flag === '0' || flag === '\0') yield { name: full, type: 'file', data: tar.subarray(start, start + size) };
    else throw new Error(`tar entry "${full}": type "${flag}" is not a file or directory`);
    offset = start + Math.ceil(size / 512) * 512;
  }
}

/** Whether this module is the program run (`node pglite-template.js`), not a library import. */
function runDirectly(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false; // argv[1] is no file (node -e, a test runner): imported
  }
}

if (runDirectly()) {
  // Once per PGlite version: `--force` writes it again.
  const path = pgliteTemplatePath();
  if (existsSync(path) && !process.argv.includes('--force')) console.log(`embedded database template: ${path}`);
  else console.log(`embedded database template written: ${await writePgliteTemplate(path)}`);
}
