/**
 * Vitest global setup: makes the embedded databases the tests start from, once per run.
 * A new PGlite database spends seconds in initdb; loading a dump of one skips that. So this
 * writes two dumps (a new empty database, and one after `initDatabase`: AMIE tables and
 * toolkit migrations) and a data directory of the second for tests that spawn the CLI,
 * and hands their paths to the test files (see test/helpers/db.ts).
 */
import { PGlite } from '@electric-sql/pglite';
import { mkdtempSync, openAsBlob, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { openPglite } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';

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
  return () => rmSync(dir, { recursive: true, force: true });
}

async function dump(db: PGlite): Promise<Uint8Array> {
  return new Uint8Array(await (await db.dumpDataDir('none')).arrayBuffer());
}
