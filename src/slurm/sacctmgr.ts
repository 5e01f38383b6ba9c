/**
 * Slurm accounts, user associations, limits and coordinators through `sacctmgr`, idempotently.
 *
 * sacctmgr refuses to add what exists ("Nothing new added", exit 1), so every `ensure…` reads
 * the state first (`sacctmgr -n -P show …`) and changes only what differs; a rerun after a
 * crash does nothing twice. Changes run with `-i` (no confirmation prompt).
 *
 * sacctmgr parses each argument as `key=value` and lower-cases ASCII letters in descriptions.
 * Names are checked against strict patterns before use; free text (description, organization)
 * goes through `slurmText`, which keeps letters, digits and plain punctuation only, and is
 * always one argument.
 */
import type { Logger } from 'pino';
import { runCommand, singleLine, type CommandResult } from './run.js';

/** Slurm account names this module creates or touches. */
export const SLURM_ACCOUNT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Unix logins as Slurm user names. */
export const SLURM_USER_PATTERN = /^[a-z_][a-z0-9_.-]{0,31}$/;
export const SLURM_CLUSTER_PATTERN = /^[a-z0-9][a-z0-9_-]{0,39}$/;
/** A TRES name as GrpTRESMins takes it: cpu, mem, node, billing, gres/gpu, gres/gpu:a100, license/x. */
export const SLURM_TRES_PATTERN = /^(cpu|mem|node|billing|energy|(gres|license)\/[a-z0-9_]+(:[a-z0-9_]+)?)$/;

function check(kind: string, value: string, pattern: RegExp): string {
  if (!pattern.test(value))
    throw new Error(`${kind} ${JSON.stringify(value)} is not usable with sacctmgr: expected ${pattern}`);
  return value;
}

/**
 * Packet text made safe as a sacctmgr value (an account's description or organization): one
 * line, letters (any script), digits, spaces and `.,:;()&/+_@#!?-` only, quotes dropped, every
 * other character a space, at most `max` characters. sacctmgr would turn quotes into backticks
 * and `|` would break `-P` output, so neither survives.
 */
export function slurmText(value: string, max = 200): string {
  return singleLine(value.normalize('NFC'))
    .replace(/['"`\u2018\u2019\u201c\u201d]/g, '')
    .replace(/[^\p{L}\p{M}\p{N} .,:;()&/+_@#!?-]/gu, ' ')
    .replace(/ {2,}/g, ' ')
    .trim()
    .slice(0, max)
    .trim();
}

/** sacctmgr lower-cases ASCII letters only; compare as it stores. */
const asStored = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** One association as `sacctmgr show assoc` lists it; `user` is empty for the account's own. */
export interface SlurmAssociation {
  cluster: string;
  account: string;
  user: string;
  parent: string;
  /** GrpTRESMins by TRES name (gres/gpu → minutes); empty when none is set. */
  grpTresMins: Record<string, number>;
  /** GrpSubmitJobs; null when unlimited. */
  grpSubmitJobs: number | null;
}

export interface SacctmgrOptions {
  /** The program (default `sacctmgr`). */
  path?: string;
  /** `cluster=` on every command that takes one; without it sacctmgr acts on every cluster it knows. */
  cluster?: string;
  timeoutMs?: number;
  /** A logger bound to the packet being handled. */
  log: Logger;
  /** Log the argument lists instead of running them; reads then find nothing. */
  dryRun?: boolean;
  /** Environment variables sacctmgr gets besides COMMAND_ENV (see runCommand). */
  env?: readonly string[];
}

function parseTres(field: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of field.split(',')) {
    const eq = part.lastIndexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = Number(part.slice(eq + 1));
  }
  return out;
}

export class Sacctmgr {
  readonly path: string;
  readonly cluster: string | undefined;

  constructor(readonly options: SacctmgrOptions) {
    this.path = options.path ?? 'sacctmgr';
    this.cluster = options.cluster === undefined ? undefined : check('cluster', options.cluster, SLURM_CLUSTER_PATTERN);
  }

  private clusterArgs(): string[] {
    return this.cluster ? [`cluster=${this.cluster}`] : [];
  }

  /** A change (`-i` answers sacctmgr's confirmation). */
  async change(args: string[]): Promise<CommandResult> {
    return runCommand([this.path, '-i', ...args], this.runOptions());
  }

  /** A `show` with `-n -P`: one array of fields per line. */
  async show(args: string[]): Promise<string[][]> {
    const r = await runCommand([this.path, '-n', '-P', 'show', ...args], this.runOptions());
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.split('|'));
  }

  private runOptions() {
    return {
      log: this.options.log,
      dryRun: this.options.dryRun ?? false,
      ...(this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {}),
      ...(this.options.env ? { env: this.options.env } : {}),
    };
  }

  /**
   * Associations on the cluster: an account's (its own, with user '', and its users'), one
   * user's in an account, or all of a user's.
   */
  async associations(where: { account?: string; user?: string }): Promise<SlurmAssociation[]> {
    const { account, user } = where;
    if (account === undefined && user === undefined) throw new Error('associations: give an account, a user, or both');
    if (account !== undefined) check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    if (user !== undefined) check('Slurm user', user, SLURM_USER_PATTERN);
    const rows = await this.show([
      'assoc',
      'where',
      ...(account !== undefined ? [`account=${account}`] : []),
      ...(user !== undefined ? [`user=${user}`] : []),
      ...this.clusterArgs(),
      'format=cluster,account,user,parentname,grptresmins,grpsubmitjobs',
    ]);
    return rows
      .filter((f) => (account === undefined || f[1] === account) && (user === undefined || f[2] === user))
      .map((f) => ({
        cluster: f[0] ?? '',
        account: f[1] ?? '',
        user: f[2] ?? '',
        parent: f[3] ?? '',
        grpTresMins: parseTres(f[4] ?? ''),
        grpSubmitJobs: f[5] ? Number(f[5]) : null,
      }));
  }

  /**
   * Makes sure the account exists on the cluster with this description and organization
   * (cleaned by slurmText), under `parent` when it is created.
   */
  async ensureAccount(
    account: string,
    info: { description: string; organization: string; parent?: string },
  ): Promise<'added' | 'updated' | 'unchanged'> {
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    if (info.parent !== undefined) check('parent Slurm account', info.parent, SLURM_ACCOUNT_PATTERN);
    const description = slurmText(info.description) || account;
    const organization = slurmText(info.organization) || 'unknown';
    // organization and description last: free text that might hold the `|` of -P.
    const rows = (
      await this.show([
        'account',
        'where',
        `name=${account}`,
        'withassoc',
        'format=account,cluster,user,organization,description',
      ])
    ).filter((f) => f[0] === account);
    const onCluster = rows.some((f) => f[2] === '' && (this.cluster === undefined || f[1] === this.cluster));
    if (!onCluster) {
      await this.change([
        'add',
        'account',
        account,
        ...this.clusterArgs(),
        `description=${description}`,
        `organization=${organization}`,
        ...(info.parent !== undefined ? [`parent=${info.parent}`] : []),
      ]);
      if (rows.length === 0) return 'added';
    }
    const current = rows[0];
    if (
      current &&
      asStored(current[3] ?? '') === asStored(organization) &&
      asStored(current.slice(4).join('|')) === asStored(description)
    ) {
      return onCluster ? 'unchanged' : 'added';
    }
    // Description and organization belong to the account, not to one cluster's association.
    await this.change([
      'modify',
      'account',
      'where',
      `name=${account}`,
      'set',
      `description=${description}`,
      `organization=${organization}`,
    ]);
    return 'updated';
  }

  /**
   * Sets limits on the account's own association where they differ: GrpTRESMins for one TRES
   * (other TRES in it are left as they are) and GrpSubmitJobs (null lifts it); `resetUsage`
   * sets the usage counted against GrpTRESMins back to 0. `current` is the account's
   * association when the caller has just read it (null: it has none).
   */
  async setAccountLimits(
    account: string,
    limits: { grpTresMins?: { tres: string; minutes: number }; grpSubmitJobs?: number | null; resetUsage?: boolean },
    current?: SlurmAssociation | null,
  ): Promise<boolean> {
    const own = current !== undefined ? current : (await this.associations({ account })).find((a) => a.user === '');
    const set: string[] = [];
    if (limits.grpTresMins) {
      const { tres, minutes } = limits.grpTresMins;
      check('TRES', tres, SLURM_TRES_PATTERN);
      if (!Number.isSafeInteger(minutes) || minutes < 0)
        throw new Error(`GrpTRESMins for ${tres}: expected a whole number of minutes >= 0, got ${minutes}`);
      if (own?.grpTresMins[tres] !== minutes) set.push(`GrpTRESMins=${tres}=${minutes}`);
    }
    if (limits.grpSubmitJobs !== undefined && (own?.grpSubmitJobs ?? null) !== limits.grpSubmitJobs) {
      set.push(`GrpSubmitJobs=${limits.grpSubmitJobs ?? -1}`);
    }
    const where = ['modify', 'account', 'where', `name=${account}`, ...this.clusterArgs(), 'set'];
    if (set.length > 0) await this.change([...where, ...set]);
    // On its own: given with other settings, sacctmgr sets RawUsage and silently ignores them.
    if (limits.resetUsage) await this.change([...where, 'RawUsage=0']);
    return set.length > 0 || limits.resetUsage === true;
  }

  /**
   * Makes sure `user` has an association with `account`; `open: false` blocks its submissions
   * (GrpSubmitJobs=0, running jobs go on), `open: true` lifts that block.
   */
  async ensureUser(user: string, account: string, open: boolean): Promise<'added' | 'updated' | 'unchanged'> {
    const existing = await this.associations({ account, user });
    const wanted = open ? null : 0;
    if (existing.length === 0) {
      await this.change([
        'add',
        'user',
        user,
        `account=${account}`,
        ...this.clusterArgs(),
        ...(open ? [] : ['GrpSubmitJobs=0']),
      ]);
      return 'added';
    }
    if (existing.every((a) => a.grpSubmitJobs === wanted)) return 'unchanged';
    await this.change([
      'modify',
      'user',
      'where',
      `name=${user}`,
      `account=${account}`,
      ...this.clusterArgs(),
      'set',
      `GrpSubmitJobs=${wanted ?? -1}`,
    ]);
    return 'updated';
  }

  /**
   * Blocks the submissions of `user` under `account` (under every account when none is given),
   * running jobs going on. Returns the accounts where the user has an association.
   */
  async blockUser(user: string, account?: string): Promise<string[]> {
    const existing = await this.associations({ user, ...(account !== undefined ? { account } : {}) });
    if (existing.some((a) => a.grpSubmitJobs !== 0)) {
      await this.change([
        'modify',
        'user',
        'where',
        `name=${user}`,
        ...(account !== undefined ? [`account=${account}`] : []),
        ...this.clusterArgs(),
        'set',
        'GrpSubmitJobs=0',
      ]);
    }
    return [...new Set(existing.map((a) => a.account))];
  }

  /** Makes `user` a coordinator of `account` (sacctmgr itself treats a repeat as success). */
  async ensureCoordinator(user: string, account: string): Promise<void> {
    check('Slurm user', user, SLURM_USER_PATTERN);
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    await this.change(['add', 'coordinator', `account=${account}`, `names=${user}`]);
  }
}

/** Cancels the pending and running jobs of an account (of one user in it, when given) with scancel. */
export async function cancelJobs(
  opts: {
    scancel?: string;
    cluster?: string;
    timeoutMs?: number;
    log: Logger;
    dryRun?: boolean;
    env?: readonly string[];
  },
  account: string,
  user?: string,
): Promise<CommandResult> {
  check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
  if (user !== undefined) check('Slurm user', user, SLURM_USER_PATTERN);
  if (opts.cluster !== undefined) check('cluster', opts.cluster, SLURM_CLUSTER_PATTERN);
  return runCommand(
    [
      opts.scancel ?? 'scancel',
      `--account=${account}`,
      ...(user !== undefined ? [`--user=${user}`] : []),
      ...(opts.cluster !== undefined ? [`--clusters=${opts.cluster}`] : []),
    ],
    {
      log: opts.log,
      dryRun: opts.dryRun ?? false,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.env ? { env: opts.env } : {}),
    },
  );
}
