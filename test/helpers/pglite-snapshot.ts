/**
 * Vitest global setup: makes the embedded databases the tests start from, once per run.
 * A new PGlite database spends seconds in initdb; starting from a copy of one skips that. So
 * this makes two (a new empty database, and one after `initDatabase`: AMIE tables and toolkit
 * migrations), each as a data directory and as a dump, and hands their paths to the test files
 * (see test/helpers/db.ts). It also chooses where the run's temporary directories go
 * (useMemoryScratch), and asks once whether the Slurm test cluster answers.
 */
import { PGlite } from '@electric-sql/pglite';
import { cpSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { openPglite } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { processAlive } from '../../src/lockfile.js';
import { slurmClusterAnswers } from './slurm-probe.js';

/** One database the tests start from: as a data directory and as a dump of it (written unless copyDirs). */
export interface PgliteSnapshot {
  dir: string;
  dump: string;
}

export interface PgliteSnapshots {
  /** A new database, as the toolkit makes one. */
  empty: PgliteSnapshot;
  /** A database after initDatabase, as `amie db init` leaves it. */
  initialised: PgliteSnapshot;
  /**
   * The temporary directories are on the memory file system: copying a data directory (about
   * 500 files) there costs a tenth of a second less than loading its dump into an
   * in-memory database; on a disk it costs more.
   */
  copyDirs: boolean;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteSnapshots: PgliteSnapshots;
    /** Whether the Slurm test cluster takes jobs (see test/helpers/slurm-probe.ts). */
    slurmClusterAnswers: boolean;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  const scratch = useMemoryScratch();
  // Asked while the databases are made: it can take seconds where Slurm is installed but stopped.
  const slurm = slurmClusterAnswers();
  const dir = mkdtempSync(join(tmpdir(), 'amie-test-snapshots-'));
  const snapshot = (name: string): PgliteSnapshot => ({ dir: join(dir, name), dump: join(dir, `${name}.tar`) });
  const snapshots: PgliteSnapshots = {
    empty: snapshot('empty'),
    initialised: snapshot('initialised'),
    copyDirs: scratch !== undefined,
  };
  // A new database as the toolkit makes one (its template, or initdb).
  await (await openPglite({ path: snapshots.empty.dir })).close();
  // Initialised the way `amie db init` does it, through the toolkit's own driver.
  cpSync(snapshots.empty.dir, snapshots.initialised.dir, { recursive: true });
  const initialised = await openPglite({ path: snapshots.initialised.dir });
  try {
    await initDatabase(initialised);
  } finally {
    await initialised.close();
  }
  // The dumps are for in-memory copies, made only where copying directories costs more.
  for (const s of snapshots.copyDirs ? [] : [snapshots.empty, snapshots.initialised]) {
    const raw = await PGlite.create(s.dir);
    try {
      writeFileSync(s.dump, await dump(raw));
    } finally {
      await raw.close();
    }
  }
  project.provide('pgliteSnapshots', snapshots);
  project.provide('slurmClusterAnswers', await slurm);
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
