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
  grpTresMins: Map<string, number>;
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

/** `gres/gpu=600,cpu=10` → TRES name → minutes (a Map: the names are sacctmgr's output). */
function parseTres(field: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of field.split(',')) {
    const eq = part.lastIndexOf('=');
    const minutes = Number(part.slice(eq + 1));
    if (eq > 0 && part.slice(eq + 1) !== '' && Number.isFinite(minutes)) out.set(part.slice(0, eq), minutes);
  }
  return out;
}

/** The fields `associations` and `allAssociations` ask for, in order. */
const ASSOC_FORMAT = 'format=cluster,account,user,parentname,grptresmins,grpsubmitjobs';

/**
 * `sacctmgr -n -P show assoc` output in ASSOC_FORMAT, read as hostile text: a line without
 * exactly its six fields, or with a GrpSubmitJobs that is not a number, is an error naming
 * the line rather than a guess.
 */
export function parseAssociations(stdout: string): SlurmAssociation[] {
  const out: SlurmAssociation[] = [];
  const lines = stdout.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const f = line.split('|');
    if (f.length !== 6)
      throw new Error(
        `sacctmgr show assoc: line ${i + 1} has ${f.length} fields, expected 6 (${ASSOC_FORMAT}): ${JSON.stringify(line.slice(0, 200))}`,
      );
    const [cluster, account, user, parent, tres, submit] = f as [string, string, string, string, string, string];
    if (submit !== '' && !/^\d{1,10}$/.test(submit))
      throw new Error(
        `sacctmgr show assoc: line ${i + 1}: GrpSubmitJobs ${JSON.stringify(submit.slice(0, 40))} is not a number`,
      );
    out.push({
      cluster,
      account,
      user,
      parent,
      grpTresMins: parseTres(tres),
      grpSubmitJobs: submit === '' ? null : Number(submit),
    });
  });
  return out;
}

/**
 * `sacctmgr -n -P show user withcoord format=user,coordinators`: the accounts each user
 * coordinates (a user coordinating nothing has an empty second field). Keyed by user in a Map.
 */
export function parseCoordinators(stdout: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  stdout.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const f = line.split('|');
    if (f.length !== 2)
      throw new Error(
        `sacctmgr show user withcoord: line ${i + 1} has ${f.length} fields, expected 2 (user,coordinators): ${JSON.stringify(line.slice(0, 200))}`,
      );
    const [user, accounts] = f as [string, string];
    const set = out.get(user) ?? new Set<string>();
    for (const a of accounts.split(',')) if (a !== '') set.add(a);
    out.set(user, set);
  });
  return out;
}

/**
 * The argument lists (after `sacctmgr -i`) of every change made to Slurm: the handler's hooks
 * and `amie slurm check --fix` (and its --dry-run listing) build them here, so both always run
 * the same commands. Every name is checked against its pattern first; `cluster` undefined
 * leaves `cluster=` out (sacctmgr then acts on every cluster of its database).
 */
export const sacctmgrChange = {
  addAccount(
    account: string,
    cluster: string | undefined,
    info: { description: string; organization: string; parent?: string },
  ): string[] {
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    if (info.parent !== undefined) check('parent Slurm account', info.parent, SLURM_ACCOUNT_PATTERN);
    return [
      'add',
      'account',
      account,
      ...clusterArgs(cluster),
      `description=${slurmText(info.description) || account}`,
      `organization=${slurmText(info.organization) || 'unknown'}`,
      ...(info.parent !== undefined ? [`parent=${info.parent}`] : []),
    ];
  },

  /** Description and organization belong to the account, not to one cluster's association. */
  describeAccount(account: string, info: { description: string; organization: string }): string[] {
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    return [
      'modify',
      'account',
      'where',
      `name=${account}`,
      'set',
      `description=${slurmText(info.description) || account}`,
      `organization=${slurmText(info.organization) || 'unknown'}`,
    ];
  },

  /** Limits on the account's own association: GrpTRESMins for one TRES, GrpSubmitJobs (null lifts it), RawUsage=0. */
  setAccount(
    account: string,
    cluster: string | undefined,
    set: { grpTresMins?: { tres: string; minutes: number }; grpSubmitJobs?: number | null; rawUsage?: 0 },
  ): string[] {
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    const values: string[] = [];
    if (set.grpTresMins) {
      const { tres, minutes } = set.grpTresMins;
      check('TRES', tres, SLURM_TRES_PATTERN);
      if (!Number.isSafeInteger(minutes) || minutes < 0)
        throw new Error(`GrpTRESMins for ${tres}: expected a whole number of minutes >= 0, got ${minutes}`);
      values.push(`GrpTRESMins=${tres}=${minutes}`);
    }
    if (set.grpSubmitJobs !== undefined) values.push(`GrpSubmitJobs=${set.grpSubmitJobs ?? -1}`);
    if (set.rawUsage !== undefined) values.push('RawUsage=0');
    return ['modify', 'account', 'where', `name=${account}`, ...clusterArgs(cluster), 'set', ...values];
  },

  /** A user association with the account; `open: false` adds it blocked. */
  addUser(user: string, account: string, cluster: string | undefined, open: boolean): string[] {
    check('Slurm user', user, SLURM_USER_PATTERN);
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    return ['add', 'user', user, `account=${account}`, ...clusterArgs(cluster), ...(open ? [] : ['GrpSubmitJobs=0'])];
  },

  /** Blocks (0) or lifts the block (null) on a user's association with the account, or with every account. */
  setUserSubmit(
    user: string,
    account: string | undefined,
    cluster: string | undefined,
    grpSubmitJobs: 0 | null,
  ): string[] {
    check('Slurm user', user, SLURM_USER_PATTERN);
    if (account !== undefined) check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    return [
      'modify',
      'user',
      'where',
      `name=${user}`,
      ...(account !== undefined ? [`account=${account}`] : []),
      ...clusterArgs(cluster),
      'set',
      `GrpSubmitJobs=${grpSubmitJobs ?? -1}`,
    ];
  },

  /** Coordinators are kept per account, on every cluster at once. */
  addCoordinator(user: string, account: string): string[] {
    check('Slurm user', user, SLURM_USER_PATTERN);
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    return ['add', 'coordinator', `account=${account}`, `names=${user}`];
  },

  removeCoordinator(user: string, account: string): string[] {
    check('Slurm user', user, SLURM_USER_PATTERN);
    check('Slurm account', account, SLURM_ACCOUNT_PATTERN);
    return ['remove', 'coordinator', `account=${account}`, `names=${user}`];
  },
};

function clusterArgs(cluster: string | undefined): string[] {
  return cluster === undefined ? [] : [`cluster=${check('cluster', cluster, SLURM_CLUSTER_PATTERN)}`];
}

export class Sacctmgr {
  readonly path: string;
  readonly cluster: string | undefined;

  constructor(readonly options: SacctmgrOptions) {
    this.path = options.path ?? 'sacctmgr';
    this.cluster = options.cluster === undefined ? undefined : check('cluster', options.cluster, SLURM_CLUSTER_PATTERN);
  }

  /** The whole command of a change, as it is run (`-i` answers sacctmgr's confirmation). */
  argv(args: readonly string[]): string[] {
    return [this.path, '-i', ...args];
  }

  /** A change, with arguments from `sacctmgrChange`. */
  async change(args: string[]): Promise<CommandResult> {
    return runCommand(this.argv(args), this.runOptions());
  }

  /** A `show` with `-n -P`: one array of fields per line. */
  async show(args: string[]): Promise<string[][]> {
    return (await this.showText(args))
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.split('|'));
  }

  private async showText(args: string[]): Promise<string> {
    return (await runCommand([this.path, '-n', '-P', 'show', ...args], this.runOptions())).stdout;
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
    const text = await this.showText([
      'assoc',
      'where',
      ...(account !== undefined ? [`account=${account}`] : []),
      ...(user !== undefined ? [`user=${user}`] : []),
      ...clusterArgs(this.cluster),
      ASSOC_FORMAT,
    ]);
    return parseAssociations(text).filter(
      (a) => (account === undefined || a.account === account) && (user === undefined || a.user === user),
    );
  }

  /** Every association on the cluster (on every cluster of the database without one). */
  async allAssociations(): Promise<SlurmAssociation[]> {
    const where = this.cluster === undefined ? [] : ['where', ...clusterArgs(this.cluster)];
    return parseAssociations(await this.showText(['assoc', ...where, ASSOC_FORMAT]));
  }

  /** The accounts each user coordinates (coordinators are not per cluster). */
  async coordinators(): Promise<Map<string, Set<string>>> {
    return parseCoordinators(await this.showText(['user', 'withcoord', 'format=user,coordinators']));
  }

  /**
   * Makes sure the account exists on the cluster with this description and organization
   * (cleaned by slurmText), under `parent` when it is created.
   */
  async ensureAccount(
    account: string,
    info: { description: string; organization: string; parent?: string },
  ): Promise<'added' | 'updated' | 'unchanged'> {
    const add = sacctmgrChange.addAccount(account, this.cluster, info);
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
      await this.change(add);
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
    await this.change(sacctmgrChange.describeAccount(account, info));
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
    const set: Parameters<typeof sacctmgrChange.setAccount>[2] = {};
    if (limits.grpTresMins) {
      sacctmgrChange.setAccount(account, this.cluster, { grpTresMins: limits.grpTresMins }); // checks the values
      if (own?.grpTresMins.get(limits.grpTresMins.tres) !== limits.grpTresMins.minutes)
        set.grpTresMins = limits.grpTresMins;
    }
    if (limits.grpSubmitJobs !== undefined && (own?.grpSubmitJobs ?? null) !== limits.grpSubmitJobs) {
      set.grpSubmitJobs = limits.grpSubmitJobs;
    }
    const changed = Object.keys(set).length > 0;
    if (changed) await this.change(sacctmgrChange.setAccount(account, this.cluster, set));
    // On its own: given with other settings, sacctmgr sets RawUsage and silently ignores them.
    if (limits.resetUsage) await this.change(sacctmgrChange.setAccount(account, this.cluster, { rawUsage: 0 }));
    return changed || limits.resetUsage === true;
  }

  /**
   * Makes sure `user` has an association with `account`; `open: false` blocks its submissions
   * (GrpSubmitJobs=0, running jobs go on), `open: true` lifts that block.
   */
  async ensureUser(user: string, account: string, open: boolean): Promise<'added' | 'updated' | 'unchanged'> {
    const existing = await this.associations({ account, user });
    const wanted = open ? null : 0;
    if (existing.length === 0) {
      await this.change(sacctmgrChange.addUser(user, account, this.cluster, open));
      return 'added';
    }
    if (existing.every((a) => a.grpSubmitJobs === wanted)) return 'unchanged';
    await this.change(sacctmgrChange.setUserSubmit(user, account, this.cluster, wanted));
    return 'updated';
  }

  /**
   * Blocks the submissions of `user` under `account` (under every account when none is given),
   * running jobs going on. Returns the accounts where the user has an association.
   */
  async blockUser(user: string, account?: string): Promise<string[]> {
    const existing = await this.associations({ user, ...(account !== undefined ? { account } : {}) });
    if (existing.some((a) => a.grpSubmitJobs !== 0)) {
      await this.change(sacctmgrChange.setUserSubmit(user, account, this.cluster, 0));
    }
    return [...new Set(existing.map((a) => a.account))];
  }

  /** Makes `user` a coordinator of `account` (sacctmgr itself treats a repeat as success). */
  async ensureCoordinator(user: string, account: string): Promise<void> {
    await this.change(sacctmgrChange.addCoordinator(user, account));
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
