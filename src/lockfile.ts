/**
 * A lock file that two processes can never both hold: the embedded database's directory lock and
 * the grid-mapfile's lock use it.
 *
 * Taking it is one atomic step: the holder line (pid, host, time, a random nonce, and what the holder
 * does, when it says) is written to a
 * temporary file first and then hard-linked to the lock's name, which fails when the name exists.
 * So nobody ever sees a lock file without its holder, as they could between creating a file and
 * writing the pid into it.
 *
 * Taking over a stale lock (its holder died, or it is older than `staleMs`) must not remove a lock
 * another process took meanwhile, and `unlink` removes whatever file has the name now. So the
 * takeover of one particular lock file (its inode, mtime and text) is itself guarded: only the
 * process that creates the guard directory named after it may remove it, and only after reading
 * that the same file is still in place. The only other remover of a lock file is its holder.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';

export interface LockHolder {
  /** The lock file's text, trimmed, as its holder wrote it. */
  text: string;
  pid?: number;
  host?: string;
  /** What the holder does with what the lock guards (`LockFileOptions.role`), when it said. */
  role?: string;
  ageMs: number;
}

/** The lock is held by a live process and the wait is over. */
export class LockFileBusy extends Error {
  override name = 'LockFileBusy';
  constructor(
    readonly lockPath: string,
    readonly holder: LockHolder,
  ) {
    super(`${lockPath} is held by ${holder.text || 'another process'}`);
  }
}

export interface LockFileOptions {
  /** How long to wait for a live holder before giving up with LockFileBusy. */
  waitMs: number;
  /** Pause between attempts while waiting (default 50 ms). */
  retryMs?: number;
  /** A lock older than this is taken over whoever holds it (default: only a dead holder's). */
  staleMs?: number;
  /** Told once, when the lock is found held by a live process and the wait begins. */
  onWait?: (holder: LockHolder) => void;
  /** Told before a stale lock is taken over. */
  onTakeOver?: (holder: LockHolder) => void;
  /** What this holder does (one word), written into the lock for whoever finds it taken. */
  role?: string;
  /** A live holder found doing this (its `role`) is not waited for: LockFileBusy at once. */
  leaveIfHeldFor?: string;
}

/**
 * A lock file whose text names no pid (written by an older version between creating the file and
 * writing its pid, or by hand) counts as held this long, then as stale.
 */
const UNREADABLE_GRACE_MS = 5_000;
/** A takeover guard this old belongs to a process that died in the middle of a takeover. */
const GUARD_STALE_MS = 10_000;

/** Takes the lock file at `path`; returns its release function (synchronous and idempotent, so it may run in an exit handler). */
export async function acquireLockFile(path: string, opts: LockFileOptions): Promise<() => void> {
  const deadline = Date.now() + opts.waitMs;
  const role = opts.role && /^[\w-]+$/.test(opts.role) ? ` ${opts.role}` : '';
  const mine = `${process.pid} ${hostname()} ${new Date().toISOString()} ${randomBytes(8).toString('hex')}${role}\n`;
  let waiting = false;
  for (;;) {
    if (tryCreate(path, mine)) return releaser(path, mine);
    const seen = readLock(path);
    if (!seen) continue; // released between the two calls: try again at once
    if (isStale(seen.holder, opts.staleMs)) {
      opts.onTakeOver?.(seen.holder);
      if (takeOver(path, seen)) continue;
      // Another process is taking it over right now: wait as for a live holder.
    } else if (
      Date.now() >= deadline ||
      (opts.leaveIfHeldFor !== undefined && seen.holder.role === opts.leaveIfHeldFor)
    ) {
      throw new LockFileBusy(path, seen.holder);
    } else if (!waiting) {
      waiting = true;
      opts.onWait?.(seen.holder);
    }
    await new Promise((r) => setTimeout(r, opts.retryMs ?? 50));
  }
}

/** Writes the holder line to a file of our own and links it to the lock's name: true when the name was free. */
function tryCreate(path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { flag: 'wx', mode: 0o644 });
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
  }
}

function releaser(path: string, mine: string): () => void {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      // Only our own: a lock taken over from us (older than staleMs) is its new holder's.
      if (readFileSync(path, 'utf8') === mine) unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
}

interface SeenLock {
  ino: number;
  mtimeMs: number;
  text: string;
  holder: LockHolder;
}

/** The lock file as it is now (its identity and text read through one descriptor), or undefined when there is none. */
function readLock(path: string): SeenLock | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = fstatSync(fd);
    const text = readFileSync(fd, 'utf8');
    const [pid, host, , , role] = text.trim().split(/\s+/);
    return {
      ino: st.ino,
      mtimeMs: st.mtimeMs,
      text,
      holder: {
        text: text.trim(),
        ...(pid && /^\d+$/.test(pid) && Number(pid) > 0 ? { pid: Number(pid) } : {}),
        ...(host ? { host } : {}),
        ...(role ? { role } : {}),
        ageMs: Date.now() - st.mtimeMs,
      },
    };
  } finally {
    closeSync(fd);
  }
}

function isStale(holder: LockHolder, staleMs: number | undefined): boolean {
  if (staleMs !== undefined && holder.ageMs > staleMs) return true;
  if (holder.pid === undefined) return holder.ageMs > UNREADABLE_GRACE_MS;
  // A pid on another machine (a shared file system) cannot be checked here: only age makes it stale.
  if (holder.host !== undefined && holder.host !== hostname()) return false;
  return !processAlive(holder.pid);
}

/** Whether process `pid` exists on this machine (EPERM: it does, and belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the stale lock file `seen` if it is still in place, under a guard directory named after
 * it. Returns false when another process holds that guard (it is doing the same).
 */
function takeOver(path: string, seen: SeenLock): boolean {
  const id = createHash('sha256').update(`${seen.ino}\0${seen.mtimeMs}\0${seen.text}`).digest('hex').slice(0, 16);
  // A guard left by a process that died holding it is not removed (that would race too): the
  // next level's guard is taken instead.
  for (let level = 1; level <= 100; level++) {
    const guard = `${path}.takeover-${id}-${level}`;
    try {
      mkdirSync(guard);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let age: number;
      try {
        age = Date.now() - statSync(guard).mtimeMs;
      } catch {
        return true; // its holder just finished: look at the lock again
      }
      if (age < GUARD_STALE_MS) return false;
      continue;
    }
    try {
      const now = readLock(path);
      if (now && now.ino === seen.ino && now.mtimeMs === seen.mtimeMs && now.text === seen.text) unlinkSync(path);
    } finally {
      for (let l = level; l >= 1; l--) {
        try {
          rmdirSync(`${path}.takeover-${id}-${l}`);
        } catch {
          /* not there */
        }
      }
    }
    return true;
  }
  return false;
}
