/**
 * The grid-mapfile: one line per certificate DN, `"DN" login[,login…]`, read by GridFTP and
 * other Globus services to map a certificate to a local login.
 *
 * Changes are made under a lock file (`<file>.lock`, taken atomically, see src/lockfile.ts; a lock
 * left by a dead process or older than `staleLockMs` is taken over) and written atomically (a temporary file
 * in the same directory, flushed, then renamed over the old one), so readers never see half a
 * file and two runs never lose each other's entries. Lines this module does not understand
 * (comments, other formats) are kept as they are.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chown, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import type { Logger } from 'pino';
import { acquireLockFile, LockFileBusy } from '../lockfile.js';
import { SLURM_USER_PATTERN } from './sacctmgr.js';

export interface GridMapOptions {
  log: Logger;
  /** Log the change instead of making it. */
  dryRun?: boolean;
  /** How long to wait for another process's lock (default 30 s). */
  lockTimeoutMs?: number;
  /** A lock older than this is taken over whatever its owner (default 10 minutes). */
  staleLockMs?: number;
}

export interface GridMapChange {
  login: string;
  /** DNs to map to the login. */
  add?: readonly string[];
  /** DNs whose mapping to the login is removed (other logins on the same DN stay). */
  remove?: readonly string[];
  /** Every DN mapped to this other login is mapped to `login` instead (a person merge). */
  takeFrom?: string;
}

/**
 * A DN as the grid-mapfile can hold it: the file quotes DNs with `"` and has one entry per
 * line, so a DN with a quote, a backslash or a control character cannot be written and is refused.
 */
export function checkDn(dn: string): string {
  if (dn.trim() === '' || /["\\\u0000-\u001f\u007f]/.test(dn)) {
    throw new Error(
      `DN ${JSON.stringify(dn)} cannot go into a grid-mapfile: it is empty or holds a double quote, a backslash or a control character`,
    );
  }
  return dn.trim();
}

const ENTRY = /^"([^"]*)"\s+(\S+)\s*$/;

/** Applies a change to the text of a grid-mapfile; returns the new text and what changed. */
export function applyGridMapChange(
  text: string,
  change: GridMapChange,
): { text: string; added: string[]; removed: string[] } {
  for (const login of [change.login, ...(change.takeFrom !== undefined ? [change.takeFrom] : [])]) {
    if (!SLURM_USER_PATTERN.test(login))
      throw new Error(`grid-mapfile: login ${JSON.stringify(login)} must match ${SLURM_USER_PATTERN}`);
  }
  const add = (change.add ?? []).map(checkDn);
  const remove = new Set((change.remove ?? []).map(checkDn));
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  const added: string[] = [];
  const removed: string[] = [];
  const seen = new Set<string>();
  const out: string[] = [];
  for (const line of lines) {
    const m = ENTRY.exec(line);
    if (!m) {
      out.push(line);
      continue;
    }
    const dn = m[1]!;
    let logins = m[2]!.split(',').filter(Boolean);
    if (change.takeFrom !== undefined && logins.includes(change.takeFrom)) {
      logins = logins.filter((l) => l !== change.takeFrom);
      if (!logins.includes(change.login)) {
        logins.push(change.login);
        added.push(dn);
      }
    }
    if (remove.has(dn) && logins.includes(change.login)) {
      logins = logins.filter((l) => l !== change.login);
      removed.push(dn);
    }
    if (add.includes(dn) && !remove.has(dn)) {
      seen.add(dn);
      if (!logins.includes(change.login)) {
        logins.push(change.login);
        added.push(dn);
      }
    }
    if (logins.length > 0) out.push(`"${dn}" ${logins.join(',')}`);
  }
  for (const dn of add) {
    if (seen.has(dn) || remove.has(dn)) continue;
    seen.add(dn);
    out.push(`"${dn}" ${change.login}`);
    added.push(dn);
  }
  return { text: out.length > 0 ? `${out.join('\n')}\n` : '', added, removed };
}

/** Takes `<file>.lock`; returns the function that releases it. */
export async function lockGridMapfile(file: string, opts: GridMapOptions): Promise<() => void> {
  const lockFile = `${file}.lock`;
  try {
    return await acquireLockFile(lockFile, {
      waitMs: opts.lockTimeoutMs ?? 30_000,
      staleMs: opts.staleLockMs ?? 10 * 60_000,
      onTakeOver: (holder) =>
        opts.log.warn({ lockFile, holder: holder.text }, 'grid-mapfile: taking over a stale lock'),
    });
  } catch (err) {
    if (err instanceof LockFileBusy) {
      throw new Error(
        `grid-mapfile ${file} is locked by ${err.holder.text || 'another process'} (lock file ${lockFile}); try again later`,
        { cause: err },
      );
    }
    throw new Error(`grid-mapfile ${file}: cannot create the lock file ${lockFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Adds and removes the DN mappings of one login in the grid-mapfile, creating the file if
 * needed. Returns the DNs actually added and removed (none when they were already so).
 */
export async function updateGridMapfile(
  file: string,
  change: GridMapChange,
  opts: GridMapOptions,
): Promise<{ added: string[]; removed: string[] }> {
  if (opts.dryRun) {
    // Checked as for real, so a dry run reports the DN a real run would refuse.
    applyGridMapChange('', change);
    opts.log.info({ gridMapfile: file, ...change }, `dry run: would update grid-mapfile ${file}`);
    return { added: [], removed: [] };
  }
  const release = await lockGridMapfile(file, opts);
  try {
    let before = '';
    let mode = 0o644;
    let owner: { uid: number; gid: number } | undefined;
    try {
      before = await readFile(file, 'utf8');
      const s = await stat(file);
      mode = s.mode & 0o7777;
      owner = { uid: s.uid, gid: s.gid };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new Error(`grid-mapfile ${file}: cannot read it: ${(err as Error).message}`, { cause: err });
    }
    const next = applyGridMapChange(before, change);
    if (next.text === before) return { added: [], removed: [] };
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const h = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
      try {
        await h.writeFile(next.text);
        await h.chmod(mode); // open() applied the umask
        await h.sync();
      } finally {
        await h.close();
      }
      if (owner && process.getuid?.() === 0) await chown(tmp, owner.uid, owner.gid);
      await rename(tmp, file);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw new Error(`grid-mapfile ${file}: cannot write it: ${(err as Error).message}`, { cause: err });
    }
    opts.log.info(
      { gridMapfile: file, login: change.login, added: next.added, removed: next.removed },
      'grid-mapfile updated',
    );
    return { added: next.added, removed: next.removed };
  } finally {
    release();
  }
}
