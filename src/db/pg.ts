/**
 * The PostgreSQL server driver: a pg pool behind the toolkit's small Database interface.
 */
import { createHash } from 'node:crypto';
// First, so that pg loads with it: see pg-navigator.ts.
import { returnNavigator } from './pg-navigator.js';
import pg from 'pg';
import type { Database, Queryable, QueryResult } from './types.js';
import { describeConnectError, redactUrl } from './errors.js';

returnNavigator();

// numeric(38,0) ids and bigint come back as strings by default; the store converts
// them where it needs numbers, so the driver leaves pg's type parsing alone.

const names = new Map<string, string>();
function statementName(sql: string): string {
  let name = names.get(sql);
  if (!name) {
    name = `amie_${createHash('sha1').update(sql).digest('hex').slice(0, 16)}`;
    names.set(sql, name);
  }
  return name;
}

export interface PgOptions {
  url: string;
  /** Pool size; a dispatcher run needs few connections. */
  max?: number;
  /** Give up connecting after this long, so a dead server fails a cron run quickly. */
  connectTimeoutMs?: number;
}

export async function openPg(options: PgOptions): Promise<Database> {
  const description = redactUrl(options.url);
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    // Idle connections stay open until the database is closed: a session advisory lock taken
    // through the pool (amie process's run lock) lives as long as its connection, and a --watch
    // pass reuses its connection instead of opening a new one.
    idleTimeoutMillis: 0,
  });
  // An idle client losing its connection must not crash the process; the next query reports it.
  pool.on('error', () => {});
  let roundTrips = 0;

  try {
    const c = await pool.connect();
    c.release();
  } catch (err) {
    await pool.end().catch(() => {});
    throw describeConnectError(description, err);
  }

  const run = async <R>(
    q: pg.Pool | pg.PoolClient,
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> => {
    roundTrips++;
    // Parameterised statements are prepared once per connection under a name derived from their
    // text: the toolkit's statements are few and large (CTEs), and parsing and planning them on
    // every packet cost more than the round trip itself.
    const res = params
      ? await q.query({ name: statementName(sql), text: sql, values: params as unknown[] })
      : await q.query(sql);
    return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
  };

  return {
    kind: 'pg',
    description,
    get roundTrips() {
      return roundTrips;
    },
    query: (sql, params) => run(pool, sql, params),
    exec: async (sql) => {
      await run(pool, sql);
    },
    async transaction(fn) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw describeConnectError(description, err);
      }
      const tx: Queryable = {
        query: (sql, params) => run(client, sql, params),
        exec: async (sql) => {
          await run(client, sql);
        },
      };
      let broken = false;
      // While checked out, a client has no 'error' listener of the pool's: a connection the server
      // ends between two statements (during a handler's site work, or as the socket closes after
      // a statement failed with it) would be an unhandled 'error' event and kill the process.
      // Noted here instead, the loss reaches the caller as the failure of the next statement.
      const lost = () => {
        broken = true;
      };
      client.on('error', lost);
      try {
        await run(client, 'BEGIN');
        const result = await fn(tx);
        await run(client, 'COMMIT');
        return result;
      } catch (err) {
        try {
          await run(client, 'ROLLBACK');
        } catch {
          broken = true; // the connection is gone; do not hand it back to the pool
        }
        throw err;
      } finally {
        client.off('error', lost);
        client.release(broken ? true : undefined);
      }
    },
    async close() {
      await pool.end();
    },
  };
}
