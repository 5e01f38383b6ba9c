/**
 * The Slurm handler (built-in name `slurm`): the registry handler, plus the site work a Slurm
 * cluster needs, done in the registry's hooks:
 *
 * - a project is a Slurm account (named from its ProjectID by `accountName`), described by its
 *   title and its PI's organization, with the PI as coordinator;
 * - its allocation is the account's GrpTRESMins (`allocation.tres` = ServiceUnitsAllocated ×
 *   `allocation.minutesPerUnit`), set again after every RPC; a renewal also sets the
 *   account's RawUsage back to 0 (`resetUsageOnRenewal`);
 * - project inactivation sets GrpSubmitJobs=0 on the account (running jobs go on unless
 *   `cancelRunningJobs`), reactivation lifts it;
 * - an account is a Slurm user association of the person's login with the project's account;
 *   account inactivation blocks it (GrpSubmitJobs=0 on the association, so running jobs, the
 *   user's default account and the usage history stay), reactivation lifts the block;
 * - a new login becomes a Unix user through `createUser` (default `useradd`) when its first
 *   account is added, skipped when the login already exists (with the same uid when the
 *   command is given one);
 * - DNs go to the grid-mapfile when `gridMapfile` is set.
 *
 * Every program runs through src/slurm (argument arrays, never a shell; a timeout; output
 * logged at debug). A failing command throws: the registry's changes for the packet are rolled
 * back and the dispatcher defers the packet with the command and its stderr in the audit. All
 * of this is idempotent, so the packet's next attempt picks up where the last one stopped.
 * Under `amie process --dry-run` (nothing recorded, nothing answered) and under
 * `commands: log-only` (packets ARE answered and the registry written, but Slurm and the
 * system are not touched) the argument lists are logged and nothing is run; the logs then say
 * what would be done, never that it was.
 *
 * Each resource of the site may be a cluster of one Slurm database: `clusters` maps each
 * resource to its cluster, and a packet's sacctmgr/scancel work goes to its resource's cluster.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { configProgram } from '../src/config/paths.js';
import type { HandlerContext, PacketContext } from '../src/dispatch/index.js';
import type {
  AllocationChange,
  RegistryAccount,
  RegistryLogin,
  RegistryPerson,
  RegistryProject,
} from '../src/registry/index.js';
import { allocationMinutes, getentPasswd, type SlurmCheckSettings } from '../src/slurm/check.js';
import {
  Sacctmgr,
  SLURM_ACCOUNT_PATTERN,
  SLURM_CLUSTER_PATTERN,
  SLURM_TRES_PATTERN,
  SLURM_USER_PATTERN,
  cancelJobs,
  expandArgv,
  runCommand,
  singleLine,
  unknownPlaceholders,
  updateGridMapfile,
} from '../src/slurm/index.js';
import { scopeResources } from '../src/store/index.js';
import { RegistryHandler, registryOptionsSchema } from './registry.js';

/** What `createUser` and `updateUser` may use, each substituted inside one argument. */
export const USER_PLACEHOLDERS = [
  'login',
  'uid',
  'personId',
  'globalId',
  'firstName',
  'middleName',
  'lastName',
  'fullName',
  'gecos',
  'email',
  'organization',
  'projectId',
  'grantNumber',
  'slurmAccount',
] as const;

export const DEFAULT_CREATE_USER = [
  'useradd',
  '--uid',
  '{uid}',
  '--comment',
  '{gecos}',
  '--create-home',
  '--shell',
  '/bin/bash',
  '{login}',
];
export const DEFAULT_UPDATE_USER = ['usermod', '--comment', '{gecos}', '{login}'];

const argvTemplate = (known: readonly string[]) =>
  z
    .array(z.string().min(1))
    .min(1, { error: 'expected the program and its arguments, e.g. ["/usr/local/sbin/make-user", "{login}"]' })
    .superRefine((argv, ctx) => {
      const bad = unknownPlaceholders(argv, known);
      if (bad.length > 0)
        ctx.addIssue({
          code: 'custom',
          message: `unknown placeholder ${bad.join(', ')} (known: ${known.map((k) => `{${k}}`).join(' ')})`,
        });
    });

const clusterName = z
  .string()
  .regex(SLURM_CLUSTER_PATTERN, { error: `expected a Slurm cluster name matching ${SLURM_CLUSTER_PATTERN}` });

export const SLURM_COMMAND_MODES = ['run', 'log-only'] as const;

export const slurmOptionsSchema = registryOptionsSchema.extend({
  /** `cluster=` for sacctmgr and `--clusters` for scancel; without it sacctmgr acts on every cluster in its database. */
  cluster: clusterName.optional(),
  /** The cluster of each resource (ResourceList name), when the site's resources are clusters of one Slurm database. */
  clusters: z.record(z.string().min(1), clusterName).optional(),
  sacctmgr: z.string().min(1).default('sacctmgr'),
  scancel: z.string().min(1).default('scancel'),
  /** Each external command is stopped after this long, and the packet deferred. */
  commandTimeoutMs: z.number().int().min(1000).max(600_000).default(30_000),
  /**
   * Environment variables the commands get besides PATH, HOME, LANG, TZ and SLURM_CONF (by
   * name, values from amie's own environment); nothing else reaches them, no secret included.
   */
  commandEnv: z
    .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }))
    .default([]),
  /**
   * run (default): run the commands. log-only: log each command instead of running it, and still
   * answer packets and write the registry (for trying the handler against real traffic without
   * touching Slurm). To change nothing at all, use `amie process --dry-run`.
   */
  commands: z.enum(SLURM_COMMAND_MODES).default('run'),
  /** Removed: it answered packets while running nothing, which is not what a dry run means. */
  dryRun: z
    .unknown()
    .refine(() => false, {
      error:
        'was removed: it answered packets and wrote the registry without running any command; say that with commands: log-only, or use amie process --dry-run to change nothing',
    })
    .optional(),
  /** The Slurm account of a project: `accountPrefix` + this template, lower-cased. */
  accountName: z
    .string()
    .min(1)
    .refine((t) => unknownPlaceholders([t], ['projectId']).length === 0 && t.includes('{projectId}'), {
      error: 'expected a template using {projectId} and no other placeholder',
    })
    .default('{projectId}'),
  accountPrefix: z
    .string()
    .regex(/^[a-z0-9_-]*$/, { error: 'expected lower-case letters, digits, "_" or "-"' })
    .default(''),
  /** New project accounts are created under this account (default: Slurm's root). */
  parentAccount: z
    .string()
    .regex(SLURM_ACCOUNT_PATTERN, { error: `expected a Slurm account name matching ${SLURM_ACCOUNT_PATTERN}` })
    .optional(),
  /** SU -> TRES-minutes: GrpTRESMins=<tres>=ServiceUnitsAllocated × minutesPerUnit. */
  allocation: z
    .strictObject({
      tres: z
        .string()
        .regex(SLURM_TRES_PATTERN, { error: 'expected a TRES such as gres/gpu or cpu' })
        .default('gres/gpu'),
      minutesPerUnit: z.number().positive().default(60),
    })
    .default({ tres: 'gres/gpu', minutesPerUnit: 60 }),
  /**
   * A renewal (or a `new` RPC for an existing project) starts a new allocation period: the
   * account's usage so far (RawUsage, which GrpTRESMins is compared with) is set back to 0.
   */
  resetUsageOnRenewal: z.boolean().default(true),
  /** scancel the jobs of an inactivated project or account (default: running jobs go on). */
  cancelRunningJobs: z.boolean().default(false),
  /** Creates a Unix user; run once per new login, when its first account is added. */
  createUser: argvTemplate(USER_PLACEHOLDERS).default(DEFAULT_CREATE_USER),
  /** Updates a Unix user after request_user_modify; default: usermod when createUser is the default, else nothing. null: never. */
  updateUser: argvTemplate(USER_PLACEHOLDERS).nullable().optional(),
  /** DNs are mapped to logins there (relative: to the config file). Without it DNs are only kept in the registry. */
  gridMapfile: z.string().min(1).optional(),
});
export type SlurmOptions = z.infer<typeof slurmOptionsSchema>;
export type SlurmOptionsInput = z.input<typeof slurmOptionsSchema>;

/**
 * Programs and files named with a slash are taken from the config file's directory, like every
 * path in the configuration; a bare program name is looked up on the PATH when it runs.
 */
function withConfigPaths(o: SlurmOptions, configDir: string | undefined): SlurmOptions {
  const program = (p: string) => configProgram(configDir, p);
  const argv = (a: string[]) => [program(a[0]!), ...a.slice(1)];
  return {
    ...o,
    sacctmgr: program(o.sacctmgr),
    scancel: program(o.scancel),
    createUser: argv(o.createUser),
    ...(o.updateUser ? { updateUser: argv(o.updateUser) } : {}),
    ...(o.gridMapfile ? { gridMapfile: resolve(configDir ?? '.', o.gridMapfile) } : {}),
  };
}

/** Text for the passwd comment field: one line, no ":" (field separator) or "," (gecos subfields). */
function gecosOf(fullName: string): string {
  return singleLine(fullName)
    .replace(/[:,=\\]/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim()
    .slice(0, 255);
}

export class SlurmHandler extends RegistryHandler {
  static override handlerName = 'slurm';
  static override optionsSchema = slurmOptionsSchema;

  protected readonly slurm: SlurmOptions;
  /** New logins whose Unix user is created with their first account, per packet. */
  readonly #newLogins = new WeakMap<PacketContext, Map<string, RegistryPerson>>();
  /** `clusters` by resource as compared (trimmed, lower case); null without `clusters`. */
  readonly #clusters: Map<string, string> | null;

  constructor(context: HandlerContext<SlurmOptionsInput>) {
    super(context);
    this.slurm = withConfigPaths(slurmOptionsSchema.parse(context.options ?? {}), context.configDir);
    this.#clusters = this.slurm.clusters
      ? new Map(Object.entries(this.slurm.clusters).map(([r, c]) => [r.trim().toLowerCase(), c]))
      : null;
    if (this.slurm.cluster !== undefined && this.#clusters) {
      throw new Error(
        'handler.options: give either cluster (one for every resource) or clusters (one per resource), not both',
      );
    }
    const site = context.site;
    if (this.#clusters && site) {
      const missing = scopeResources(site).filter((r) => !this.#clusters!.has(r));
      if (missing.length > 0) {
        throw new Error(
          `handler.options.clusters: no cluster for resource ${missing.map((r) => JSON.stringify(r)).join(', ')} of site.resources`,
        );
      }
    }
  }

  /**
   * The Slurm cluster a resource's work goes to: its entry in `clusters`, else `cluster` (or
   * none: sacctmgr then acts on every cluster of its database). Throws, deferring the packet,
   * for a resource `clusters` does not name.
   */
  clusterFor(resource: string | null | undefined): string | undefined {
    if (!this.#clusters) return this.slurm.cluster;
    const r = resource?.trim() || this.site.resource;
    const cluster = this.#clusters.get(r.toLowerCase());
    if (cluster === undefined)
      throw new Error(`handler.options.clusters names no cluster for resource ${JSON.stringify(r)}`);
    return cluster;
  }

  /** Every cluster this handler works on (for a person's logins, which are on all of them). */
  protected allClusters(): Array<string | undefined> {
    return this.#clusters ? [...new Set(this.#clusters.values())] : [this.slurm.cluster];
  }

  // ---------------------------------------------------------------- naming

  /** The Slurm account of a ProjectID by the configured rule; throws, naming the rule, when the name is not usable. */
  accountNameFor(projectId: string): string {
    // A replacer function: a string replacement would expand `$'`, `$&`… in the ProjectID.
    const name =
      `${this.slurm.accountPrefix}${this.slurm.accountName.replaceAll('{projectId}', () => projectId)}`.toLowerCase();
    if (!SLURM_ACCOUNT_PATTERN.test(name)) {
      throw new Error(
        `handler.options.accountName: ProjectID ${JSON.stringify(projectId)} gives the Slurm account name ${JSON.stringify(name)}, ` +
          `which does not match ${SLURM_ACCOUNT_PATTERN}; choose an accountName/accountPrefix that gives valid names`,
      );
    }
    return name;
  }

  override slurmAccountFor(project: Omit<RegistryProject, 'slurmAccount'>): string {
    return this.accountNameFor(project.projectId);
  }

  /** The project's stored Slurm account, or (for hooks given only a ProjectID) the rule's name for it. */
  protected slurmAccountOf(projectId: string, project?: RegistryProject | null): string {
    return project?.slurmAccount ?? this.accountNameFor(projectId);
  }

  // ---------------------------------------------------------------- hooks

  override async createLogin(person: RegistryPerson, _login: RegistryLogin, ctx: PacketContext): Promise<void> {
    // Packet text createUser would take for an option refuses the packet here, before any
    // command of the packet runs (the project's values are checked when the command is built).
    expandArgv(this.slurm.createUser, this.placeholders(person, null, '', ''));
    // The Unix user is made with the person's first account, when the project is known, so
    // createUser can use {projectId} and {slurmAccount}.
    let pending = this.#newLogins.get(ctx);
    if (!pending) this.#newLogins.set(ctx, (pending = new Map<string, RegistryPerson>()));
    pending.set(person.personId, person);
  }

  override async createProject(project: RegistryProject, pi: RegistryPerson, ctx: PacketContext): Promise<void> {
    const account = this.slurmAccountOf(project.projectId, project);
    const cluster = this.clusterFor(ctx.resource ?? project.resource);
    const r = await this.sacctmgr(ctx, cluster).ensureAccount(account, {
      description: project.title ?? project.grantNumber,
      organization: pi.organization ?? '',
      ...(this.slurm.parentAccount ? { parent: this.slurm.parentAccount } : {}),
    });
    ctx.log.info(
      { ProjectID: project.projectId, slurmAccount: account, cluster },
      this.told(ctx, `Slurm account ${account}: ${r}`, `would add Slurm account ${account} (or update it)`),
    );
  }

  override async setAllocation(project: RegistryProject, change: AllocationChange, ctx: PacketContext): Promise<void> {
    const account = this.slurmAccountOf(project.projectId, project);
    const { tres, minutesPerUnit } = this.slurm.allocation;
    const minutes = allocationMinutes(change.after.serviceUnits, minutesPerUnit);
    const cluster = this.clusterFor(ctx.resource ?? project.resource);
    const s = this.sacctmgr(ctx, cluster);
    const own = (await s.associations({ account })).find((a) => a.user === '');
    if (!own && !this.dryRun(ctx)) {
      // A project from before this handler ran at the site: give it its account now.
      await s.ensureAccount(account, {
        description: project.title ?? project.grantNumber,
        organization: '',
        ...(this.slurm.parentAccount ? { parent: this.slurm.parentAccount } : {}),
      });
    }
    const newPeriod =
      change.before !== null && (change.allocationType === 'renewal' || change.allocationType === 'new');
    const resetUsage = newPeriod && this.slurm.resetUsageOnRenewal;
    const changed = await s.setAccountLimits(account, { grpTresMins: { tres, minutes }, resetUsage }, own ?? null);
    ctx.log.info(
      {
        ProjectID: project.projectId,
        slurmAccount: account,
        cluster,
        AllocationType: change.allocationType,
        serviceUnits: change.after.serviceUnits,
      },
      this.told(
        ctx,
        `Slurm account ${account}: GrpTRESMins=${tres}=${minutes}${changed ? '' : ' (unchanged)'}${resetUsage ? ', usage reset for the new period' : ''}`,
        `would set GrpTRESMins=${tres}=${minutes} on Slurm account ${account}${resetUsage ? ' and reset its usage for the new period' : ''}`,
      ),
    );
  }

  override async addAccount(
    account: RegistryAccount,
    project: RegistryProject | null,
    ctx: PacketContext,
  ): Promise<void> {
    const slurmAccount = this.slurmAccountOf(account.projectId, project);
    await this.createPendingUser(account, project, slurmAccount, ctx);
    const login = this.loginOf(account, ctx);
    if (!login) return;
    const cluster = this.clusterFor(account.resource);
    const s = this.sacctmgr(ctx, cluster);
    const r = await s.ensureUser(login, slurmAccount, account.active);
    if (project && project.piPersonId === account.personId) await s.ensureCoordinator(login, slurmAccount);
    ctx.log.info(
      { ProjectID: account.projectId, slurmAccount, login, cluster },
      this.told(
        ctx,
        `Slurm user ${login} on account ${slurmAccount}: ${r}`,
        `would add Slurm user ${login} to account ${slurmAccount} (or update it)`,
      ),
    );
  }

  override async setAccountActive(account: RegistryAccount, active: boolean, ctx: PacketContext): Promise<void> {
    const slurmAccount = this.slurmAccountOf(account.projectId);
    if (active) await this.createPendingUser(account, null, slurmAccount, ctx);
    const login = this.loginOf(account, ctx);
    if (!login) return;
    const cluster = this.clusterFor(account.resource);
    const s = this.sacctmgr(ctx, cluster);
    if (active) {
      const r = await s.ensureUser(login, slurmAccount, true);
      ctx.log.info(
        { ProjectID: account.projectId, slurmAccount, login, cluster },
        this.told(
          ctx,
          `Slurm user ${login} on account ${slurmAccount}: reactivated (${r})`,
          `would reactivate Slurm user ${login} on account ${slurmAccount}`,
        ),
      );
      return;
    }
    const had = (await s.blockUser(login, slurmAccount)).length > 0;
    if (this.slurm.cancelRunningJobs) await cancelJobs(this.commandOptions(ctx, cluster), slurmAccount, login);
    ctx.log.info(
      { ProjectID: account.projectId, slurmAccount, login, cluster },
      this.told(
        ctx,
        had
          ? `Slurm user ${login} on account ${slurmAccount}: submissions blocked`
          : `Slurm user ${login} has no association with ${slurmAccount}: nothing to block`,
        `would block submissions of Slurm user ${login} on account ${slurmAccount}${this.slurm.cancelRunningJobs ? ' and cancel its jobs' : ''}`,
      ),
    );
  }

  override async setProjectActive(project: RegistryProject, active: boolean, ctx: PacketContext): Promise<void> {
    const account = this.slurmAccountOf(project.projectId, project);
    const cluster = this.clusterFor(ctx.resource ?? project.resource);
    await this.sacctmgr(ctx, cluster).setAccountLimits(account, { grpSubmitJobs: active ? null : 0 });
    if (!active && this.slurm.cancelRunningJobs) await cancelJobs(this.commandOptions(ctx, cluster), account);
    const cancel = !active && this.slurm.cancelRunningJobs;
    ctx.log.info(
      { ProjectID: project.projectId, slurmAccount: account, cluster },
      this.told(
        ctx,
        `Slurm account ${account}: ${active ? 'GrpSubmitJobs lifted' : `GrpSubmitJobs=0${cancel ? ', jobs cancelled' : ''}`}`,
        `would ${active ? 'lift GrpSubmitJobs on' : 'set GrpSubmitJobs=0 on'} Slurm account ${account}${cancel ? ' and cancel its jobs' : ''}`,
      ),
    );
  }

  override async updateDns(
    person: RegistryPerson,
    change: { added: string[]; removed: string[] },
    ctx: PacketContext,
  ): Promise<void> {
    if (!this.slurm.gridMapfile) return;
    if (!person.login) {
      ctx.log.warn({ PersonID: person.personId }, 'grid-mapfile: the person has no login; DNs not mapped');
      return;
    }
    await updateGridMapfile(
      this.slurm.gridMapfile,
      { login: person.login, add: change.added, remove: change.removed },
      { log: ctx.log, dryRun: this.dryRun(ctx) },
    );
  }

  override async updatePerson(person: RegistryPerson, ctx: PacketContext): Promise<void> {
    const template =
      this.slurm.updateUser === undefined
        ? this.usesDefaultCreateUser()
          ? DEFAULT_UPDATE_USER
          : null
        : this.slurm.updateUser;
    if (!template || !person.login) return;
    if (!this.dryRun(ctx) && !(await this.unixUser(person.login, ctx))) {
      ctx.log.warn({ login: person.login }, `Unix user ${person.login} does not exist: not updated`);
      return;
    }
    await runCommand(expandArgv(template, this.placeholders(person, null, '', '')), this.commandOptions(ctx));
  }

  override async mergePeople(
    kept: RegistryPerson,
    deleted: RegistryPerson,
    accounts: RegistryAccount[],
    ctx: PacketContext,
  ): Promise<void> {
    const keptLogin = kept.login ? this.checkedLogin(kept.login) : null;
    const deletedLogin = deleted.login && deleted.login !== kept.login ? this.checkedLogin(deleted.login) : null;
    if (keptLogin) {
      for (const a of accounts)
        await this.sacctmgr(ctx, this.clusterFor(a.resource)).ensureUser(
          keptLogin,
          this.slurmAccountOf(a.projectId),
          a.active,
        );
    }
    // The deleted login stays retired: its associations (on whatever accounts and clusters,
    // including those where the kept person already had one) keep their history but submit no more.
    const blocked: string[] = [];
    if (deletedLogin)
      for (const cluster of this.allClusters())
        blocked.push(...(await this.sacctmgr(ctx, cluster).blockUser(deletedLogin)));
    if (this.slurm.gridMapfile && keptLogin && deletedLogin) {
      await updateGridMapfile(
        this.slurm.gridMapfile,
        { login: keptLogin, takeFrom: deletedLogin },
        { log: ctx.log, dryRun: this.dryRun(ctx) },
      );
    }
    ctx.log.info(
      {
        kept: kept.personId,
        deleted: deleted.personId,
        accounts: accounts.map((a) => a.projectId),
        blocked: [...new Set(blocked)],
      },
      this.told(
        ctx,
        `Slurm: ${deletedLogin ?? '(no login)'} merged into ${keptLogin ?? '(no login)'}`,
        `would merge Slurm user ${deletedLogin ?? '(no login)'} into ${keptLogin ?? '(no login)'}`,
      ),
    );
  }

  // ---------------------------------------------------------------- amie slurm check

  /**
   * What `amie slurm check` compares and repairs with: this handler's clusters, naming rule,
   * allocation rule and commands, so the check expects what the hooks make and its repairs
   * are the hooks' own commands.
   */
  slurmCheckSettings(): SlurmCheckSettings {
    return {
      clusters: this.allClusters(),
      clusterFor: (resource) => this.clusterFor(resource),
      // A stored name is checked as a new one is: an unusable one is reported, not compared.
      accountFor: (project) => this.checkedName(this.slurmAccountOf(project.projectId, project)),
      allocation: this.slurm.allocation,
      parentAccount: this.slurm.parentAccount,
      sacctmgr: (cluster, log) =>
        new Sacctmgr({
          path: this.slurm.sacctmgr,
          ...(cluster ? { cluster } : {}),
          timeoutMs: this.slurm.commandTimeoutMs,
          log,
          env: this.slurm.commandEnv,
        }),
      createUserArgv: (person, project, slurmAccount) => {
        this.checkedLogin(person.login ?? '');
        return expandArgv(
          this.slurm.createUser,
          this.placeholders(person, project, project.projectId, this.checkedName(slurmAccount)),
        );
      },
      usesUid: this.slurm.createUser.some((a) => a.includes('{uid}')),
      commandOptions: { timeoutMs: this.slurm.commandTimeoutMs, env: this.slurm.commandEnv },
      logOnly: this.slurm.commands === 'log-only',
    };
  }

  // ---------------------------------------------------------------- internals

  /** Commands are only logged: under `amie process --dry-run`, or with `commands: log-only`. */
  protected dryRun(ctx: PacketContext): boolean {
    return ctx.dryRun || this.context.dryRun || this.slurm.commands === 'log-only';
  }

  /** A step's log text: what was done, or, when commands are only logged, what would have been. */
  protected told(ctx: PacketContext, done: string, would: string): string {
    if (!this.dryRun(ctx)) return done;
    return `${would} (${ctx.dryRun || this.context.dryRun ? 'dry run' : 'commands: log-only'}: nothing run)`;
  }

  protected commandOptions(ctx: PacketContext, cluster: string | undefined = this.slurm.cluster) {
    return {
      log: ctx.log,
      dryRun: this.dryRun(ctx),
      timeoutMs: this.slurm.commandTimeoutMs,
      scancel: this.slurm.scancel,
      env: this.slurm.commandEnv,
      ...(cluster ? { cluster } : {}),
    };
  }

  protected sacctmgr(ctx: PacketContext, cluster: string | undefined = this.slurm.cluster): Sacctmgr {
    return new Sacctmgr({
      path: this.slurm.sacctmgr,
      ...(cluster ? { cluster } : {}),
      timeoutMs: this.slurm.commandTimeoutMs,
      log: ctx.log,
      dryRun: this.dryRun(ctx),
      env: this.slurm.commandEnv,
    });
  }

  private checkedName(account: string): string {
    if (!SLURM_ACCOUNT_PATTERN.test(account))
      throw new Error(`Slurm account ${JSON.stringify(account)} is not usable: expected ${SLURM_ACCOUNT_PATTERN}`);
    return account;
  }

  private checkedLogin(login: string): string {
    if (!SLURM_USER_PATTERN.test(login))
      throw new Error(
        `login ${JSON.stringify(login)} cannot be used as a Unix or Slurm user name: expected ${SLURM_USER_PATTERN}`,
      );
    return login;
  }

  private loginOf(account: RegistryAccount, ctx: PacketContext): string | null {
    if (!account.login) {
      ctx.log.warn(
        { PersonID: account.personId, ProjectID: account.projectId },
        'the account has no login: no Slurm association',
      );
      return null;
    }
    return this.checkedLogin(account.login);
  }

  private usesDefaultCreateUser(): boolean {
    return JSON.stringify(this.slurm.createUser) === JSON.stringify(DEFAULT_CREATE_USER);
  }

  private placeholders(
    person: RegistryPerson,
    project: RegistryProject | null,
    projectId: string,
    slurmAccount: string,
  ): Record<string, string | null> {
    const fullName = [person.firstName, person.middleName, person.lastName].filter((s) => s && s.trim()).join(' ');
    return {
      login: person.login,
      uid: person.uid === null ? null : String(person.uid),
      personId: person.personId,
      globalId: person.globalId,
      firstName: person.firstName,
      middleName: person.middleName,
      lastName: person.lastName,
      fullName,
      gecos: gecosOf(fullName),
      email: person.email,
      organization: person.organization,
      projectId,
      grantNumber: project?.grantNumber ?? null,
      slurmAccount,
    };
  }

  /** The uid of a Unix user (getent, so LDAP users count), or null if there is none. */
  private async unixUser(login: string, ctx: PacketContext): Promise<{ uid: number } | null> {
    // Read even in a dry run: what exists decides what would be done.
    const { timeoutMs, env } = this.commandOptions(ctx);
    const uid = (await getentPasswd([login], { log: ctx.log, timeoutMs, env })).get(login);
    return uid === undefined ? null : { uid };
  }

  /** Runs createUser for a login new in this packet, unless the Unix user exists. */
  private async createPendingUser(
    account: RegistryAccount,
    project: RegistryProject | null,
    slurmAccount: string,
    ctx: PacketContext,
  ): Promise<void> {
    const pending = this.#newLogins.get(ctx);
    const person = pending?.get(account.personId);
    if (!person?.login) return;
    pending!.delete(account.personId);
    const login = this.checkedLogin(person.login);
    const template = this.slurm.createUser;
    if (!this.dryRun(ctx)) {
      const existing = await this.unixUser(login, ctx);
      if (existing) {
        const needsUid = template.some((a) => a.includes('{uid}'));
        if (needsUid && person.uid !== null && existing.uid !== person.uid) {
          throw new Error(
            `Unix user ${login} already exists with uid ${existing.uid}, but the registry gave ${login} uid ${person.uid}: ` +
              'remove the stale user, or set handler.options.uidRange so registry uids do not collide with existing ones',
          );
        }
        ctx.log.info({ login, uid: existing.uid }, `Unix user ${login} already exists`);
        return;
      }
    }
    await runCommand(
      expandArgv(template, this.placeholders(person, project, account.projectId, slurmAccount)),
      this.commandOptions(ctx),
    );
    ctx.log.info(
      { login, uid: person.uid },
      this.told(ctx, `Unix user ${login} created`, `would create Unix user ${login} (unless it exists)`),
    );
  }
}

export default SlurmHandler;
