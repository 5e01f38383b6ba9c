/**
 * The one small database interface everything above src/db is written against.
 * Two drivers implement it: `pg` (a pool on a real PostgreSQL server) and
 * PGlite (PostgreSQL compiled to WebAssembly, embedded, the zero-setup default).
 */

export interface QueryResult<R> {
  rows: R[];
  /** Rows inserted, updated or deleted by the statement (0 for a plain SELECT on some drivers). */
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements with no parameters (schema creation). */
  exec(sql: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: 'pg' | 'pglite';
  /** Where the data lives, with any password removed: safe to log. */
  readonly description: string;
  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection; any throw rolls back and is rethrown.
   * Everything `fn` does must go through the `tx` it is given.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Database round trips made so far (every statement, BEGIN and COMMIT included). */
  readonly roundTrips: number;
  close(): Promise<void>;
}
