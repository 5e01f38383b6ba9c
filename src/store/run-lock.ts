import { createHash } from 'node:crypto';
import type { Queryable } from '../db/index.js';
import { scopeResources, type SiteScope } from './work.js';

/**
 * One `amie process` at a time per scope (a site and the resources its configuration answers
 * for). The run that holds its scope's run lock works until nothing is pending; another run of
 * the same scope leaves as soon as it has connected, before it loads or claims anything, so an
 * overlapping cron run costs only its start-up. Runs of other scopes (several resources in one
 * database, each with its own configuration) do not share the lock: they go on, and take turns
 * at the registry's lock batch by batch.
 *
 * The lock is a session advisory lock, taken through the database like any statement: it lives on
 * the connection that ran it, which the run goes on using for its work (the pool closes no idle
 * connection), and goes when the run closes the database or that connection ends, so a killed
 * run never leaves it behind. No connection is opened for it alone: a cron run pays for every
 * connection it opens. It is a courtesy, not what keeps answers right: claims are row locks,
 * and the registry's lock orders the batches, so a run that lost its connection's lock and
 * went on beside another would still answer each packet once and in order.
 */
export const RUN_LOCK_CLASS = 0x414d5052; // 'AMPR'; the two-key form never meets the toolkit's one-key locks

/** The scope's lock key: a 32-bit digest of the site name and its resources, whatever their order or case. */
export function runLockKey(site: SiteScope): number {
  const scope = [site.name, ...[...new Set(scopeResources(site))].sort()].join('\n');
  return createHash('sha256').update(scope).digest().readInt32BE(0);
}

/** The scope as an operator reads it: `SITE (resource, ...)`, the resources as the lock's key takes them. */
export function runLockScope(site: SiteScope): string {
  return `${site.name} (${[...new Set(scopeResources(site))].join(', ')})`;
}

/**
 * Takes the scope's run lock until the database is closed; false when another run holds it.
 * Taking it again while holding it succeeds.
 */
export async function tryRunLock(db: Queryable, site: SiteScope): Promise<boolean> {
  const { rows } = await db.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
    RUN_LOCK_CLASS,
    runLockKey(site),
  ]);
  return rows[0]!.locked;
}

/**
 * The run lock of key `$key` (a statement parameter) as pg_locks shows it while a run holds it: a
 * two-key advisory lock shows its keys as classid and objid, oids, so a negative key as its
 * unsigned 32-bit value.
 */
export function runLockHeldSql(key: string): string {
  return `l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = ${RUN_LOCK_CLASS}::oid
          AND l.objid = (${key}::int8 & 4294967295)::oid`;
}
