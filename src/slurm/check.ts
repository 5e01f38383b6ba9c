/**
 * `amie slurm check`: does Slurm still hold what the registry says (an admin's manual sacctmgr
 * edit, a hook that failed, a slurmdbd restored from an old dump)? The registry's view and
 * Slurm's (`sacctmgr -n -P show assoc` and `show user withcoord`, `getent passwd`) are read
 * once, compared by `compareSlurm` (pure: no I/O), and each difference gets the commands that
 * repair it from `planRepairs`, built by `sacctmgrChange` and the handler's createUser
 * template: the very commands the Slurm handler's hooks run.
 *
 * What the registry expects, per project (its Slurm account A):
 * - A exists on the cluster of the project's resource and on that of each of its accounts;
 * - on the project's cluster A has GrpTRESMins <tres>=SUs × minutesPerUnit and GrpSubmitJobs=0
 *   exactly when the project is inactive;
 * - each account with a login is a user association of the login with A, blocked
 *   (GrpSubmitJobs=0) exactly when the account is inactive;
 * - the PI (when the PI has an account on the project) coordinates A, nobody else does;
 * - each login with an account is a Unix user (with the registry's uid when createUser gives it).
 *
 * Nothing the registry did not make is ever removed: a user association on A the registry does
 * not know, or A on a cluster where the registry has none of its accounts, is a difference only
 * while it can submit, and the repair blocks it (GrpSubmitJobs=0, as inactivation does). Blocked
 * ones, and accounts of no registry project, are "foreign": listed apart, never changed.
 */
import type { Logger } from 'pino';
import type { Queryable } from '../db/index.js';
import { listAccounts, listPeople, listProjects } from '../registry/index.js';
import type { RegistryAccount, RegistryPerson, RegistryProject } from '../registry/index.js';
import { runCommand } from './run.js';
import { sacctmgrChange, type Sacctmgr, type SlurmAssociation } from './sacctmgr.js';

/** The kinds of difference, in the order their repairs run. */
export const DRIFT_KINDS = [
  'unix-user-missing',
  'unix-uid',
  'account-missing',
  'account-extra',
  'allocation',
  'account-submit',
  'user-missing',
  'user-submit',
  'user-extra',
  'coordinator-missing',
  'coordinator-extra',
  'unusable-name',
] as const;
export type DriftKind = (typeof DRIFT_KINDS)[number];

/** One way Slurm (or the system) differs from the registry. */
export interface SlurmDifference {
  /** The ProjectID it belongs to (a Unix user: the first project of the person's accounts). */
  project: string;
  /** The project's Slurm account. */
  slurmAccount: string;
  /** The cluster as sacctmgr names it; null when the difference is not of one cluster (coordinators, Unix users). */
  cluster: string | null;
  kind: DriftKind;
  /** One line for a person. */
  detail: string;
  /** The login it is about, if any. */
  user: string | null;
  /** The commands that repair it (whole argument lists), in order; empty when it needs a person. */
  fix: string[][];
}

/** Something in Slurm the registry did not make or no longer uses: listed, never changed. */
export interface ForeignAssociation {
  cluster: string;
  account: string;
  /** null for an account's own association. */
  user: string | null;
  detail: string;
}

export interface SlurmDrift {
  differences: SlurmDifference[];
  foreign: ForeignAssociation[];
  /** What was compared. */
  checked: { projects: number; accounts: number; logins: number; clusters: string[] };
}

/** What the Slurm handler tells the check: its naming, clusters, allocation rule and commands. */
export interface SlurmCheckSettings {
  /** The clusters the handler works on; [undefined] when it names none (every cluster of the Slurm database). */
  clusters: ReadonlyArray<string | undefined>;
  /** The cluster a resource's work goes to (undefined: every cluster). Throws for a resource `clusters` does not name. */
  clusterFor(resource: string): string | undefined;
  /** The project's Slurm account (stored, else the naming rule's); throws when the name is unusable. */
  accountFor(project: RegistryProject): string;
  allocation: { tres: string; minutesPerUnit: number };
  parentAccount?: string | undefined;
  /** A Sacctmgr for reading (never a dry run) on one cluster, or every cluster when undefined. */
  sacctmgr(cluster: string | undefined, log: Logger): Sacctmgr;
  /** createUser for a person; throws when the registry's values would be refused as arguments. */
  createUserArgv(person: RegistryPerson, project: RegistryProject, slurmAccount: string): string[];
  /** createUser gives the registry's uid: a Unix user with another uid is then a difference. */
  usesUid: boolean;
  /** For getent and the repairs. */
  commandOptions: { timeoutMs: number; env: readonly string[] };
  /** `commands: log-only`: repairs are only logged. */
  logOnly: boolean;
}

/** The registry as the comparison reads it. */
export interface RegistryView {
  projects: ReadonlyArray<RegistryProject & { piLogin: string | null }>;
  accounts: readonly RegistryAccount[];
  people: ReadonlyArray<RegistryPerson & { mergedInto: string | null }>;
}

/** Slurm and the system as the comparison reads them; every table keyed by their text is a Map. */
export interface SlurmView {
  /** The clusters checked, as sacctmgr names them. */
  clusters: string[];
  associations: readonly SlurmAssociation[];
  /** User → accounts it coordinates. */
  coordinators: ReadonlyMap<string, ReadonlySet<string>>;
  /** Login → uid, for the logins asked about that exist. */
  unixUsers: ReadonlyMap<string, number>;
}

/** The comparison's rules, from the handler's settings. */
export interface CompareRules {
  /** The clusters (as sacctmgr names them) a resource's work goes to. */
  clustersOf(resource: string): string[];
  accountFor(project: RegistryProject): string;
  allocation: { tres: string; minutesPerUnit: number };
  usesUid: boolean;
}

/** A difference before its repair is planned: what it is about, in the terms the repair needs. */
export interface Difference extends Omit<SlurmDifference, 'fix'> {
  /** The project, for the repairs that need its title, state and allocation. */
  projectRecord: RegistryProject | null;
  /** The account is active (user-missing, user-submit) or the project is (account-submit). */
  active?: boolean;
  /** The person (unix-user-missing). */
  person?: RegistryPerson;
  /** The PI's organization (account-missing). */
  organization?: string;
  /** The account's own association is on the project's cluster (account-missing: set its limits too). */
  home?: boolean;
}

/** Slurm's own root account and user: never the registry's, never foreign either. */
const SLURM_ROOT = 'root';

const key = (...parts: string[]) => parts.join('\u0000');

/** GrpTRESMins minutes of an allocation, as the handler sets them. */
export function allocationMinutes(serviceUnits: number, minutesPerUnit: number): number {
  return Math.max(0, Math.round(serviceUnits * minutesPerUnit));
}

/** Compares the registry with Slurm; pure. Differences come sorted by project, then kind. */
export function compareSlurm(
  registry: RegistryView,
  slurm: SlurmView,
  rules: CompareRules,
): { differences: Difference[]; foreign: ForeignAssociation[] } {
  const differences: Difference[] = [];
  const foreign: ForeignAssociation[] = [];
  const checkedClusters = new Set(slurm.clusters);
  const assocs = new Map<string, SlurmAssociation>();
  const byAccount = new Map<string, SlurmAssociation[]>();
  for (const a of slurm.associations) {
    if (!checkedClusters.has(a.cluster)) continue;
    assocs.set(key(a.cluster, a.account, a.user), a);
    const list = byAccount.get(a.account) ?? [];
    list.push(a);
    byAccount.set(a.account, list);
  }
  const people = new Map(registry.people.map((p) => [p.personId, p]));
  const liveLogins = new Set(registry.people.filter((p) => p.mergedInto === null && p.login).map((p) => p.login!));
  /** Logins of people merged into another: their associations stay, blocked. */
  const retired = new Map<string, string>();
  for (const p of registry.people)
    if (p.mergedInto !== null && p.login && !liveLogins.has(p.login)) retired.set(p.login, p.mergedInto);
  const accountsOf = new Map<string, RegistryAccount[]>();
  for (const a of registry.accounts) {
    const list = accountsOf.get(a.projectId) ?? [];
    list.push(a);
    accountsOf.set(a.projectId, list);
  }
  const registryAccounts = new Set<string>();
  /** Account → the users coordinating it. */
  const coordinatorsOf = new Map<string, string[]>();
  for (const [user, accs] of slurm.coordinators)
    for (const acc of accs) coordinatorsOf.set(acc, [...(coordinatorsOf.get(acc) ?? []), user]);

  for (const project of [...registry.projects].sort((a, b) => cmp(a.projectId, b.projectId))) {
    const base = { project: project.projectId, projectRecord: project };
    let account: string;
    let home: string[];
    let accounts: Array<RegistryAccount & { clusters: string[] }>;
    try {
      account = rules.accountFor(project);
      home = rules.clustersOf(project.resource);
      accounts = (accountsOf.get(project.projectId) ?? []).map((a) => ({
        ...a,
        clusters: rules.clustersOf(a.resource),
      }));
    } catch (err) {
      differences.push({
        ...base,
        slurmAccount: project.slurmAccount ?? '',
        cluster: null,
        kind: 'unusable-name',
        detail: `not checked: ${(err as Error).message}`,
        user: null,
      });
      continue;
    }
    registryAccounts.add(account);
    const at = { ...base, slurmAccount: account };
    const wanted = new Set([...home, ...accounts.flatMap((a) => a.clusters)]);
    const pi = people.get(project.piPersonId);

    // The account itself, and its limits on the project's cluster.
    for (const cluster of [...wanted].sort(cmp)) {
      const own = assocs.get(key(cluster, account, ''));
      if (!own) {
        differences.push({
          ...at,
          cluster,
          kind: 'account-missing',
          detail: `Slurm account ${account} missing on ${cluster}`,
          user: null,
          home: home.includes(cluster),
          organization: pi?.organization ?? '',
        });
        continue;
      }
      if (!home.includes(cluster)) continue;
      const { tres, minutesPerUnit } = rules.allocation;
      const want = allocationMinutes(project.serviceUnits, minutesPerUnit);
      const have = own.grpTresMins.get(tres);
      if (have !== want)
        differences.push({
          ...at,
          cluster,
          kind: 'allocation',
          detail: `GrpTRESMins on ${cluster} is ${have === undefined ? `unset for ${tres}` : `${tres}=${have}`}; the allocation (${project.serviceUnits} SUs) gives ${tres}=${want}`,
          user: null,
        });
      const submit = project.active ? null : 0;
      if (own.grpSubmitJobs !== submit)
        differences.push({
          ...at,
          cluster,
          kind: 'account-submit',
          detail: project.active
            ? `GrpSubmitJobs=${own.grpSubmitJobs} on ${cluster}, but the project is active: its jobs are refused`
            : `GrpSubmitJobs ${own.grpSubmitJobs === null ? 'unset' : `=${own.grpSubmitJobs}`} on ${cluster}, but the project is inactive: it can still submit`,
          user: null,
          active: project.active,
        });
    }

    // The account on a cluster where the registry has none of it.
    for (const own of (byAccount.get(account) ?? []).filter((a) => a.user === '' && !wanted.has(a.cluster))) {
      if (own.grpSubmitJobs === 0)
        foreign.push({
          cluster: own.cluster,
          account,
          user: null,
          detail: `blocked; the registry has no account of ${project.projectId} on ${own.cluster}`,
        });
      else
        differences.push({
          ...at,
          cluster: own.cluster,
          kind: 'account-extra',
          detail: `Slurm account ${account} on ${own.cluster}, where the registry has no account of the project: it can submit there`,
          user: null,
        });
    }

    // User associations: per cluster, login → active (active when any of its accounts there is).
    const expected = new Map<string, Map<string, boolean>>();
    for (const a of accounts) {
      if (!a.login) continue;
      for (const cluster of a.clusters) {
        const users = expected.get(cluster) ?? new Map<string, boolean>();
        users.set(a.login, (users.get(a.login) ?? false) || a.active);
        expected.set(cluster, users);
      }
    }
    for (const [cluster, users] of [...expected].sort((a, b) => cmp(a[0], b[0]))) {
      for (const [login, active] of [...users].sort((a, b) => cmp(a[0], b[0]))) {
        const assoc = assocs.get(key(cluster, account, login));
        const state = active ? 'active' : 'inactive';
        if (!assoc)
          differences.push({
            ...at,
            cluster,
            kind: 'user-missing',
            detail: `Slurm user ${login} (${state} account) missing on ${cluster}`,
            user: login,
            active,
          });
        else if (assoc.grpSubmitJobs !== (active ? null : 0))
          differences.push({
            ...at,
            cluster,
            kind: 'user-submit',
            detail: active
              ? `Slurm user ${login} has GrpSubmitJobs=${assoc.grpSubmitJobs} on ${cluster}, but the account is active: its jobs are refused`
              : `Slurm user ${login} has GrpSubmitJobs ${assoc.grpSubmitJobs === null ? 'unset' : `=${assoc.grpSubmitJobs}`} on ${cluster}, but the account is inactive: it can still submit`,
            user: login,
            active,
          });
      }
    }
    for (const assoc of (byAccount.get(account) ?? []).filter((a) => a.user !== '')) {
      if (expected.get(assoc.cluster)?.has(assoc.user)) continue;
      const mergedInto = retired.get(assoc.user);
      if (assoc.grpSubmitJobs === 0) {
        if (mergedInto === undefined)
          foreign.push({
            cluster: assoc.cluster,
            account,
            user: assoc.user,
            detail: `blocked; not an account of ${project.projectId} in the registry`,
          });
        continue;
      }
      differences.push({
        ...at,
        cluster: assoc.cluster,
        kind: 'user-extra',
        detail:
          mergedInto === undefined
            ? `Slurm user ${assoc.user} on ${assoc.cluster} has no account of the project in the registry, and can submit`
            : `Slurm user ${assoc.user} on ${assoc.cluster} is the login of a person merged into ${mergedInto}, and can still submit`,
        user: assoc.user,
      });
    }

    // Coordinators: the PI, when the PI has an account on the project.
    const piLogin = accounts.find((a) => a.personId === project.piPersonId && a.login)?.login ?? null;
    const coordinators = coordinatorsOf.get(account) ?? [];
    if (piLogin && !coordinators.includes(piLogin))
      differences.push({
        ...at,
        cluster: null,
        kind: 'coordinator-missing',
        detail: `the PI ${piLogin} does not coordinate ${account}`,
        user: piLogin,
      });
    for (const user of coordinators.filter((u) => u !== piLogin).sort(cmp))
      differences.push({
        ...at,
        cluster: null,
        kind: 'coordinator-extra',
        detail: `${user} coordinates ${account} but is not the project's PI in the registry`,
        user,
      });
  }

  // Unix users: one per live login with an account, under the person's first project.
  const firstProject = new Map<string, string>();
  for (const a of [...registry.accounts].sort((x, y) => cmp(x.projectId, y.projectId)))
    if (a.login && !firstProject.has(a.personId)) firstProject.set(a.personId, a.projectId);
  const projects = new Map(registry.projects.map((p) => [p.projectId, p]));
  for (const person of registry.people) {
    const projectId = firstProject.get(person.personId);
    if (person.mergedInto !== null || !person.login || projectId === undefined) continue;
    const project = projects.get(projectId) ?? null;
    let slurmAccount = '';
    try {
      slurmAccount = project ? rules.accountFor(project) : '';
    } catch {
      /* reported as unusable-name above */
    }
    const at = { project: projectId, projectRecord: project, slurmAccount, cluster: null, user: person.login };
    const uid = slurm.unixUsers.get(person.login);
    if (uid === undefined)
      differences.push({ ...at, kind: 'unix-user-missing', detail: `Unix user ${person.login} missing`, person });
    else if (rules.usesUid && person.uid !== null && uid !== person.uid)
      differences.push({
        ...at,
        kind: 'unix-uid',
        detail: `Unix user ${person.login} has uid ${uid}, the registry gave it ${person.uid} (not repaired: a person must decide)`,
      });
  }

  // Accounts of no registry project.
  for (const [account, list] of byAccount) {
    if (registryAccounts.has(account) || account === SLURM_ROOT) continue;
    for (const own of list.filter((a) => a.user === '')) {
      const users = list.filter((a) => a.cluster === own.cluster && a.user !== '').length;
      foreign.push({
        cluster: own.cluster,
        account,
        user: null,
        detail: `not a registry project's account (${users} user association${users === 1 ? '' : 's'})`,
      });
    }
  }

  const order = (k: DriftKind) => DRIFT_KINDS.indexOf(k);
  differences.sort(
    (a, b) =>
      cmp(a.project, b.project) ||
      order(a.kind) - order(b.kind) ||
      cmp(a.cluster ?? '', b.cluster ?? '') ||
      cmp(a.user ?? '', b.user ?? ''),
  );
  foreign.sort((a, b) => cmp(a.account, b.account) || cmp(a.cluster, b.cluster) || cmp(a.user ?? '', b.user ?? ''));
  return { differences, foreign };
}

/** The cluster name for `cluster=` in a repair (undefined when the handler names none). */
export type CommandCluster = (observed: string) => string | undefined;

/**
 * The commands that repair each difference, as the handler's hooks would run them. A
 * difference whose commands cannot be built (a name sacctmgr would refuse, packet text
 * createUser refuses) gets none and says why.
 */
export function planRepairs(
  differences: readonly Difference[],
  settings: Pick<SlurmCheckSettings, 'allocation' | 'parentAccount' | 'createUserArgv'> & { sacctmgrPath: string },
  commandCluster: CommandCluster,
): SlurmDifference[] {
  const s = (args: string[]) => [settings.sacctmgrPath, '-i', ...args];
  return differences.map((d) => {
    const { projectRecord: p, active, person, organization, home, ...shown } = d;
    const c = d.cluster === null ? undefined : commandCluster(d.cluster);
    const A = d.slurmAccount;
    try {
      const fix = ((): string[][] => {
        switch (d.kind) {
          case 'account-missing': {
            const add = s(
              sacctmgrChange.addAccount(A, c, {
                description: p?.title ?? p?.grantNumber ?? A,
                organization: organization ?? '',
                ...(settings.parentAccount ? { parent: settings.parentAccount } : {}),
              }),
            );
            if (!home || !p) return [add];
            const { tres, minutesPerUnit } = settings.allocation;
            const minutes = allocationMinutes(p.serviceUnits, minutesPerUnit);
            const limits = { grpTresMins: { tres, minutes }, ...(p.active ? {} : { grpSubmitJobs: 0 }) };
            return [add, s(sacctmgrChange.setAccount(A, c, limits))];
          }
          case 'allocation': {
            const { tres, minutesPerUnit } = settings.allocation;
            const minutes = allocationMinutes(p!.serviceUnits, minutesPerUnit);
            return [s(sacctmgrChange.setAccount(A, c, { grpTresMins: { tres, minutes } }))];
          }
          case 'account-submit':
            return [s(sacctmgrChange.setAccount(A, c, { grpSubmitJobs: active ? null : 0 }))];
          case 'account-extra':
            return [s(sacctmgrChange.setAccount(A, c, { grpSubmitJobs: 0 }))];
          case 'user-missing':
            return [s(sacctmgrChange.addUser(d.user!, A, c, active!))];
          case 'user-submit':
            return [s(sacctmgrChange.setUserSubmit(d.user!, A, c, active ? null : 0))];
          case 'user-extra':
            return [s(sacctmgrChange.setUserSubmit(d.user!, A, c, 0))];
          case 'coordinator-missing':
            return [s(sacctmgrChange.addCoordinator(d.user!, A))];
          case 'coordinator-extra':
            return [s(sacctmgrChange.removeCoordinator(d.user!, A))];
          case 'unix-user-missing':
            return [settings.createUserArgv(person!, p!, A)];
          case 'unix-uid':
          case 'unusable-name':
            return [];
        }
      })();
      return { ...shown, fix };
    } catch (err) {
      return { ...shown, detail: `${d.detail} (not repairable here: ${(err as Error).message})`, fix: [] };
    }
  });
}

/** Reads the registry and Slurm, compares them, and plans the repairs. Throws on a Slurm or system command failure. */
export async function checkSlurmDrift(db: Queryable, settings: SlurmCheckSettings, log: Logger): Promise<SlurmDrift> {
  const [projects, accounts, people] = await Promise.all([
    listProjects(db),
    listAccounts(db),
    listPeople(db, { includeMerged: true }),
  ]);
  const registry: RegistryView = { projects, accounts, people };

  // Each configured cluster is read on its own; without one, every cluster of the database,
  // which are those where Slurm's root account has its association.
  const configured = [...new Set(settings.clusters)];
  const associations: SlurmAssociation[] = [];
  for (const cluster of configured) associations.push(...(await settings.sacctmgr(cluster, log).allAssociations()));
  const clusters = configured.includes(undefined)
    ? [...new Set(associations.filter((a) => a.account === SLURM_ROOT && a.user === '').map((a) => a.cluster))]
    : (configured as string[]);
  const coordinators = await settings.sacctmgr(configured[0], log).coordinators();

  const withAccount = new Set(accounts.filter((a) => a.login).map((a) => a.personId));
  const logins = [
    ...new Set(
      people.filter((p) => p.mergedInto === null && p.login && withAccount.has(p.personId)).map((p) => p.login!),
    ),
  ];
  const unixUsers = await getentPasswd(logins, { log, ...settings.commandOptions });

  const all = configured.includes(undefined);
  const rules: CompareRules = {
    clustersOf: (resource) => {
      const c = settings.clusterFor(resource);
      return c === undefined ? clusters : [c];
    },
    accountFor: (project) => settings.accountFor(project),
    allocation: settings.allocation,
    usesUid: settings.usesUid,
  };
  const compared = compareSlurm(
    registry,
    { clusters: clusters.sort(cmp), associations, coordinators, unixUsers },
    rules,
  );
  const differences = planRepairs(
    compared.differences,
    { ...settings, sacctmgrPath: settings.sacctmgr(undefined, log).path },
    (c) => (all ? undefined : c),
  );
  return {
    differences,
    foreign: compared.foreign,
    checked: { projects: projects.length, accounts: accounts.length, logins: logins.length, clusters },
  };
}

/** login → uid of the logins that exist (getent, so LDAP users count); asked in batches of 200. */
export async function getentPasswd(
  logins: readonly string[],
  opts: { log: Logger; timeoutMs: number; env: readonly string[] },
): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const wanted = new Set(logins);
  for (let i = 0; i < logins.length; i += 200) {
    const batch = logins.slice(i, i + 200);
    // getent exits 2 when some key is not found, and prints those that are.
    // `--`: a login is always a key, never an option.
    const r = await runCommand(['getent', 'passwd', '--', ...batch], { ...opts, okExitCodes: [2] });
    for (const [login, uid] of parsePasswd(r.stdout)) if (wanted.has(login)) found.set(login, uid);
  }
  return found;
}

/** passwd lines → login → uid; a line that is not `name:x:uid:…` is an error naming it. */
export function parsePasswd(stdout: string): Map<string, number> {
  const out = new Map<string, number>();
  stdout.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const f = line.split(':');
    if (f.length < 7 || !/^\d{1,10}$/.test(f[2]!))
      throw new Error(`getent passwd: line ${i + 1} is not a passwd entry: ${JSON.stringify(line.slice(0, 200))}`);
    out.set(f[0]!, Number(f[2]));
  });
  return out;
}

/** Runs the repairs in order; a failing command fails only its difference. */
export async function repairSlurmDrift(
  differences: readonly SlurmDifference[],
  opts: { log: Logger; timeoutMs: number; env: readonly string[] },
): Promise<Array<{ difference: SlurmDifference; error: string | null }>> {
  const done = new Set<string>();
  const results: Array<{ difference: SlurmDifference; error: string | null }> = [];
  for (const d of sortForRepair(differences)) {
    let error: string | null = null;
    for (const argv of d.fix) {
      // The same command for two differences (one account missing on every cluster) runs once.
      const id = JSON.stringify(argv);
      if (done.has(id)) continue;
      try {
        await runCommand(argv, opts);
        done.add(id);
      } catch (err) {
        error = (err as Error).message;
        break;
      }
    }
    results.push({ difference: d, error });
  }
  return results;
}

/** Unix users first, then accounts, limits, users and coordinators: each repair finds what it needs. */
export function sortForRepair(differences: readonly SlurmDifference[]): SlurmDifference[] {
  return [...differences].sort((a, b) => DRIFT_KINDS.indexOf(a.kind) - DRIFT_KINDS.indexOf(b.kind));
}

/** Ordinal comparison, the same on every machine (no locale). */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
