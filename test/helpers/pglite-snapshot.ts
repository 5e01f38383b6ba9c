/**
 * Vitest global setup: makes the embedded databases the tests start from, once per run.
 * A new PGlite database spends seconds in initdb; loading a dump of one skips that. So this
 * writes two dumps (a new empty database, and one after `initDatabase`: AMIE tables and
 * toolkit migrations) and a data directory of the second for tests that spawn the CLI,
 * and hands their paths to the test files (see test/helpers/db.ts). It also chooses where the
 * run's temporary directories go (useMemoryScratch).
 */
import { PGlite } from '@electric-sql/pglite';
import { mkdtempSync, openAsBlob, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { openPglite } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { processAlive } from '../../src/lockfile.js';

export interface PgliteSnapshots {
  /** Dump of a new database, as initdb leaves it. */
  empty: string;
  /** Dump of a database after initDatabase. */
  initialised: string;
  /** Data directory of a database after initDatabase, to copy where a test's config names one. */
  initialisedDir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteSnapshots: PgliteSnapshots;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  const scratch = useMemoryScratch();
  const dir = mkdtempSync(join(tmpdir(), 'amie-test-snapshots-'));
  const snapshots: PgliteSnapshots = {
    empty: join(dir, 'empty.tar'),
    initialised: join(dir, 'initialised.tar'),
    initialisedDir: join(dir, 'initialised'),
  };
  // A new database as the toolkit makes one (its template, or initdb), then dumped.
  const emptyDir = join(dir, 'empty');
  await (await openPglite({ path: emptyDir })).close();
  const blank = await PGlite.create(emptyDir);
  try {
    writeFileSync(snapshots.empty, await dump(blank));
  } finally {
    await blank.close();
  }
  // Initialised the way `amie db init` does it, through the toolkit's own driver.
  const db = await openPglite({ path: snapshots.initialisedDir, from: await openAsBlob(snapshots.empty) });
  try {
    await initDatabase(db);
  } finally {
    await db.close();
  }
  const initialised = await PGlite.create(snapshots.initialisedDir);
  try {
    writeFileSync(snapshots.initialised, await dump(initialised));
  } finally {
    await initialised.close();
  }
  project.provide('pgliteSnapshots', snapshots);
  return () => {
    rmSync(dir, { recursive: true, force: true });
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  };
}

/**
 * Puts the run's temporary directories (databases, sites, installs: tens of thousands of files)
 * on the memory file system when the machine has one with room, by setting TMPDIR before the
 * test processes start; they and every process they start inherit it. Creating a file there
 * costs a fiftieth of what it costs on a virtual machine's disk. AMIE_TEST_TMPDIR names another
 * place (a disk directory, to run the suite there). Returns the directory to remove at the end.
 * A run that was killed cannot remove its own, which would hold memory until a reboot: its
 * directory is named after its process, and the next run removes it once that process is gone.
 */
function useMemoryScratch(): string | undefined {
  const chosen = process.env.AMIE_TEST_TMPDIR;
  if (chosen) {
    process.env.TMPDIR = chosen;
    return undefined;
  }
  const shm = '/dev/shm';
  try {
    const fs = statfsSync(shm);
    if (fs.bavail * fs.bsize < 4 * 1024 ** 3) return undefined;
    for (const name of readdirSync(shm)) {
      const pid = /^amie-test-([1-9]\d*)-/.exec(name)?.[1];
      if (pid && !processAlive(Number(pid))) rmSync(join(shm, name), { recursive: true, force: true });
    }
    const dir = mkdtempSync(join(shm, `amie-test-${process.pid}-`));
    process.env.TMPDIR = dir;
    return dir;
  } catch {
    return undefined; // no memory file system here: the default temporary directory
  }
}

async function dump(db: PGlite): Promise<Uint8Array> {
  return new Uint8Array(await (await db.dumpDataDir('none')).arrayBuffer());
}
