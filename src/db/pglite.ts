import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { Database, Queryable, QueryResult } from './types.js';
import { DatabaseError, DatabaseInUse, describeConnectError } from './errors.js';
import { acquireLockFile, LockFileBusy } from '../lockfile.js';
import { escapeControls } from '../text.js';
import {
  compilePgliteBaselineOnly,
  findPgliteTemplate,
  pgliteSettingArgs,
  readPgliteTemplate,
  unpackPgliteTemplate,
} from './pglite-template.js';

export interface PgliteOptions {
  /** Data directory; omit for an in-memory database (tests, `amie demo`). */
  path?: string;
  /** How long to wait for another `amie` process holding the same directory. */
  lockWaitMs?: number;
  /** What this process does with the database (one word, written into the directory's lock). */
  role?: string;
  /**
   * A process found holding the directory in the same `role` is not waited for: DatabaseInUse at
   * once. A cron `amie process` opens so, and leaves the work to the run that holds it.
   */
  leaveIfHeldInRole?: boolean;
  /**
   * Told once, when another process holds the directory and this one starts waiting for it
   * (default: the message on stderr, after `amie: `, control characters in the path shown
   * escaped). The CLI sends it to its own stderr stream.
   */
  onWait?: (message: string) => void;
  /**
   * Create the database when the directory holds none (default true). `amie db init` alone
   * creates one; every other command opens with `create: false`, so a mistyped or relative
   * path never leaves an empty database (or its lock file) behind.
   */
  create?: boolean;
  /**
   * Make a new database from the built template when there is one (default true); false runs
   * PGlite's own initdb (tests comparing the two).
   */
  template?: boolean;
  /**
   * A throw-away database in a new temporary directory, removed on close (or at exit): like
   * an in-memory one, but its data files stay out of the process's memory (`amie demo`).
   */
  temporary?: boolean;
  /**
   * Start a new database as a copy of another one, from the tarball PGlite's `dumpDataDir()`
   * writes, instead of the template (the tests start from an initialised database this way).
   */
  from?: Blob;
}

/**
 * PGlite is one PostgreSQL backend inside this process. Two processes opening the same
 * data directory would corrupt it, so the directory is guarded by a lock file holding
 * the owner's pid; a lock left by a dead process is taken over. Within the process,
 * PGlite itself serialises queries and transactions, so row locks (FOR UPDATE SKIP
 * LOCKED) are accepted but never contended.
 */
export async function openPglite(options: PgliteOptions = {}): Promise<Database> {
  // A throw-away database lives in a private directory of its own: no lock, removed on close.
  const scratch = options.temporary ? mkdtempSync(join(tmpdir(), 'amie-db-')) : undefined;
  const removeScratch = () => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  };
  // Removed at exit, and on Ctrl-C or a kill (which end a process without 'exit'): then the
  // signal is raised again, so the process still ends the way the signal says.
  const onSignal = (signal: NodeJS.Signals) => {
    releaseScratch();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const releaseScratch = () => {
    process.removeListener('exit', removeScratch);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    removeScratch();
  };
  if (scratch) {
    process.once('exit', removeScratch);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  const dataDir = scratch ? join(scratch, 'db') : options.path ? resolve(options.path) : undefined;
  const description = scratch
    ? `embedded throw-away database (${dataDir}, removed when done)`
    : dataDir
      ? `embedded database ${dataDir}`
      : 'embedded in-memory database';
  let releaseLock = () => {};
  if (scratch) {
    releaseLock = releaseScratch;
  } else if (dataDir) {
    if (options.create === false && !existsSync(resolve(dataDir, 'PG_VERSION'))) {
      throw new DatabaseError(`${description} does not exist: run \`amie db init\` to create it`);
    }
    mkdirSync(dirname(dataDir), { recursive: true });
    releaseLock = await lockDataDir(dataDir, options.lockWaitMs ?? 60_000, description, {
      role: options.role,
      leaveIfHeldInRole: options.leaveIfHeldInRole,
      onWait: options.onWait,
    });
  }

  let db: PGlite;
  try {
    // A new database is the built template unpacked, not PGlite's initdb (see pglite-template.ts).
    const template = options.template === false ? undefined : findPgliteTemplate();
    const isNew = !dataDir || !existsSync(resolve(dataDir, 'PG_VERSION'));
    let loadDataDir = isNew ? options.from : undefined;
    if (template && isNew && !loadDataDir) {
      if (!dataDir) loadDataDir = readPgliteTemplate(template);
      else if (!existsSync(dataDir) || readdirSync(dataDir).length === 0) unpackPgliteTemplate(template, dataDir);
    }
    compilePgliteBaselineOnly();
    db = await PGlite.create({
      ...(dataDir ? { dataDir } : {}),
      ...(loadDataDir ? { loadDataDir } : {}),
      startParams: [...PGlite.defaultStartParams, ...pgliteSettingArgs()],
      initDbStartParams: pgliteSettingArgs(),
    });
  } catch (err) {
    releaseLock();
    throw describeConnectError(description, err);
  }
  let roundTrips = 0;

  // Functions that need no `this`, so the database object can hand them out as they are.
  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): { query: Queryable['query']; exec: Queryable['exec'] } => ({
    query: async <R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> => {
      roundTrips++;
      const res = await q.query<R>(sql, params as unknown[] | undefined);
      return { rows: res.rows, rowCount: res.affectedRows ?? 0 };
    },
    exec: async (sql: string) => {
      roundTrips++;
      await q.exec(sql);
    },
  });
  const top = wrap(db);

  return {
    kind: 'pglite',
    description,
    get roundTrips() {
      return roundTrips;
    },
    query: top.query,
    exec: top.exec,
    transaction(fn) {
      roundTrips += 2; // BEGIN and COMMIT, counted like the pg driver does
      return db.transaction((tx) => fn(wrap(tx)));
    },
    async close() {
      try {
        await db.close();
      } finally {
        releaseLock();
      }
    },
  };
}

/**
 * Takes the lock of an embedded data directory (`<dir>.lock`, holding the owner's pid), waiting up
 * to `waitMs` for another process; a lock left by a dead process is taken over.
 */
export async function lockDataDir(
  dataDir: string,
  waitMs: number,
  description = `embedded database ${dataDir}`,
  {
    role,
    leaveIfHeldInRole = false,
    onWait = (message) => process.stderr.write(`amie: ${escapeControls(message)}\n`),
  }: Pick<PgliteOptions, 'role' | 'leaveIfHeldInRole' | 'onWait'> = {},
): Promise<() => void> {
  const lockPath = `${dataDir}.lock`;
  try {
    const release = await acquireLockFile(lockPath, {
      waitMs,
      retryMs: 100,
      role,
      leaveIfHeldFor: leaveIfHeldInRole ? role : undefined,
      // Once: a silent minute looks like a hang.
      onWait: (holder) =>
        onWait(
          `waiting up to ${Math.round(waitMs / 1000)} s for process ${holder.pid ?? '(unknown)'}, which holds ${description} (lock ${lockPath})`,
        ),
    });
    process.once('exit', release);
    return () => {
      process.removeListener('exit', release);
      release();
    };
  } catch (err) {
    if (err instanceof LockFileBusy && leaveIfHeldInRole && role !== undefined && err.holder.role === role) {
      throw new DatabaseInUse(`${description} is held by process ${err.holder.pid ?? '(unknown)'} (${role})`, role);
    }
    if (err instanceof LockFileBusy) {
      throw new DatabaseError(
        `${description} is in use by process ${err.holder.pid ?? '(unknown)'}${err.holder.host && err.holder.host !== hostname() ? ` on ${err.holder.host}` : ''} (lock ${lockPath}); an embedded database serves one process at a time, use database.url for concurrent runs`,
      );
    }
    throw new DatabaseError(`cannot lock ${description}: ${(err as Error).message}`);
  }
}
