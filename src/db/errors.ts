/**
 * Errors an operator can act on: which database, and what is wrong with it.
 * The CLI prints `message` on one line and exits 2; the original error stays in `cause`.
 */
export class DatabaseError extends Error {
  override name = 'DatabaseError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The embedded database is held by another process doing what this one was opened to do (its
 * `role`, e.g. an `amie process` run), so this one did not wait for it.
 */
export class DatabaseInUse extends DatabaseError {
  override name = 'DatabaseInUse';
  constructor(
    message: string,
    readonly role: string,
  ) {
    super(message);
  }
}

interface PgLikeError {
  code?: string;
  message?: string;
  errno?: number;
}

/** Turns a driver error into one sentence naming the database and the likely fix. */
export function describeConnectError(where: string, err: unknown): DatabaseError {
  const e = (err ?? {}) as PgLikeError;
  const code = e.code ?? '';
  let reason: string;
  switch (code) {
    case 'ECONNREFUSED':
      reason = 'connection refused: is the PostgreSQL server running and listening there?';
      break;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      reason = 'host name not found';
      break;
    case 'ETIMEDOUT':
      reason = 'connection timed out';
      break;
    case '28P01':
    case '28000':
      reason = `authentication failed (${e.message ?? 'wrong user or password'})`;
      break;
    case '3D000':
      reason = `${e.message ?? 'database does not exist'}`;
      break;
    default:
      reason = e.message || String(err);
  }
  return new DatabaseError(`cannot use database ${where}: ${reason}`, { cause: err });
}

/** PostgreSQL error codes that mean the connection itself is gone, not that a statement was wrong. */
export function isConnectionLost(err: unknown): boolean {
  const e = (err ?? {}) as PgLikeError;
  return (
    e.code === '57P01' || // admin_shutdown (pg_terminate_backend)
    e.code === '57P02' ||
    e.code === '57P03' ||
    e.code === '08006' ||
    e.code === '08003' ||
    e.code === 'ECONNRESET' ||
    e.code === 'EPIPE' ||
    /Connection terminated|connection ended|Client has encountered a connection error/i.test(e.message ?? '')
  );
}

/** Removes the password from a connection URL so it can be logged or shown. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparsable database url>';
  }
}
