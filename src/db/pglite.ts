import { mkdirSync, openSync, closeSync, writeSync, readFileSync, unlinkSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { Database, Queryable, QueryResult } from './types.js';
import { DatabaseError, describeConnectError } from './errors.js';

export interface PgliteOptions {
  /** Data directory; omit for an in-memory database (tests, `amie demo`). */
  path?: string;
  /** How long to wait for another `amie` process holding the same directory. */
  lockWaitMs?: number;
}

/**
 * PGlite is one PostgreSQL backend inside this process. Two processes opening the same
 * data directory would corrupt it, so the directory is guarded by a lock file holding
 * the owner's pid; a lock left by a dead process is taken over. Within the process,
 * PGlite itself serialises queries and transactions, so row locks (FOR UPDATE SKIP
 * LOCKED) are accepted but never contended.
 */
export async function openPglite(options: PgliteOptions = {}): Promise<Database> {
  const dataDir = options.path ? resolve(options.path) : undefined;
  const description = dataDir ? `embedded database ${dataDir}` : 'embedded in-memory database';
  let releaseLock = () => {};
  if (dataDir) {
    mkdirSync(dirname(dataDir), { recursive: true });
    releaseLock = await acquireDirLock(`${dataDir}.lock`, options.lockWaitMs ?? 60_000, description);
  }

  let db: PGlite;
  try {
    db = await PGlite.create(dataDir);
  } catch (err) {
    releaseLock();
    throw describeConnectError(description, err);
  }
  let roundTrips = 0;

  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      roundTrips++;
      const res = await q.query<R>(sql, params as unknown[] | undefined);
      return { rows: res.rows, rowCount: res.affectedRows ?? 0 };
    },
    async exec(sql: string) {
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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquireDirLock(lockPath: string, waitMs: number, description: string): Promise<() => void> {
  const deadline = Date.now() + waitMs;
  let saidWaiting = false;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        try {
          if (existsSync(lockPath) && readFileSync(lockPath, 'utf8') === String(process.pid)) unlinkSync(lockPath);
        } catch {
          /* already gone */
        }
      };
      process.once('exit', release);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new DatabaseError(`cannot lock ${description}: ${(err as Error).message}`);
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(lockPath, 'utf8'));
    } catch {
      continue; // released between our open and read
    }
    if (!Number.isInteger(owner) || owner <= 0 || !pidAlive(owner)) {
      try {
        unlinkSync(lockPath); // stale lock of a process that died
      } catch {
        /* someone else took it over */
      }
      continue;
    }
    if (Date.now() >= deadline) {
      throw new DatabaseError(
        `${description} is in use by process ${owner} (lock ${lockPath}); an embedded database serves one process at a time, use database.url for concurrent runs`,
      );
    }
    if (!saidWaiting) {
      saidWaiting = true; // once: a silent minute looks like a hang
      process.stderr.write(`amie: waiting up to ${Math.round(waitMs / 1000)} s for process ${owner}, which holds ${description} (lock ${lockPath})\n`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
