/**
 * The registry handler (built-in name `registry`): answers every packet a site receives and
 * keeps the books of people, logins, projects, allocations and accounts in the toolkit's own
 * tables (schema amie_toolkit, migration 0003-registry). It changes nothing outside the
 * database: a site subclasses it and overrides the hooks (createLogin, createProject,
 * addAccount, setAccountActive, setProjectActive, setAllocation, updateDns, updatePerson,
 * mergePeople) to create Unix users, Slurm accounts and so on.
 *
 * Decisions a site should know:
 * - ProjectID: the RPC's ProjectID when central sends one, else the GrantNumber
 *   (override `assignProjectId`). A project once created keeps its ProjectID.
 * - PersonID: the person's login (override `assignPersonId`). A site whose PersonIDs differ
 *   from logins must make sure its ids never collide with a login or an earlier PersonID.
 * - A person is reused when the packet names them by PiPersonID/UserPersonID (merged-away ids
 *   included), else by GlobalID, else by a SitePersonId entry; for an RPC on an existing
 *   project with none of these, the project's PI when the last name matches.
 * - Logins: the first requested login that is acceptable and free, else one derived from the
 *   name (jdoe, then jdoe1, jdoe2 …). Always ^[a-z_][a-z0-9_-]{0,31}$, never a system name or
 *   one listed in `reservedLogins`, never one that any person (merged ones included) holds.
 *   Each login gets a numeric uid from `uidRange` for site scripts that need one.
 * - RecordID: a repeated RecordID gets the stored first NPC again and changes nothing.
 * - AllocationType: `new` creates the project (or, if it exists, starts a new allocation
 *   period); `renewal` replaces amount and dates; `supplement`, `transfer`, `adjustment`,
 *   `advance` add ServiceUnitsAllocated (which may be negative); `extension` moves the end
 *   date. Every action is kept in allocation_history.
 * - A RAC for an existing inactive account reactivates it. Project inactivation takes every
 *   account with it; project reactivation brings back the PI's account only.
 * - request_person_merge: accounts, DNs, SitePersonIds and PI roles move to the kept person;
 *   the deleted PersonID becomes an alias; the deleted person's login stays retired.
 * - A new project's Slurm account (`slurmAccountFor`) that is already another project's is a
 *   clash: the RPC is answered with a failure ITC naming both ProjectIDs before any hook runs.
 * - notify_person_ids and notify_person_duplicate are acknowledged with a success ITC and
 *   logged; the registry does not act on them.
 *
 * Hooks run after the books are written, in the same database transaction: a hook that throws
 * rolls the packet's changes back and the dispatcher offers the packet again later, so hooks
 * must be idempotent (one that throws PacketFailure has the packet answered with a failure ITC
 * instead). A packet whose reply the dispatcher refuses is rolled back the same way. Under dry-run they are still called (`ctx.dryRun` is true) and must not
 * touch anything outside.
 */
import { z } from 'zod';
import {
  AmieHandler,
  fail,
  type BatchContext,
  type HandlerContext,
  type HandlerResult,
  type IncomingPacket,
  type PacketContext,
} from '../src/dispatch/index.js';
import type { Queryable } from '../src/db/index.js';
import type { ReplyTagsOf, TagValue } from '../src/protocol/index.js';
import {
  ALLOCATION_TYPES,
  applyChanges,
  findMergePair,
  lockRegistry,
  RegistryBooks,
  type BatchQuestions,
  loginCandidates,
  lookup,
  mergePeople as mergePeopleInRegistry,
  slurmAccountOwner,
  modifyPerson,
  nextAllocation,
  setAccountState,
  setProjectState,
  type AllocationChange,
  type Applied,
  type ChangeSet,
  type Lookup,
  type LookupQuery,
  type PersonChanges,
  type RegistryAccount,
  type RegistryLogin,
  type RegistryPerson,
  type RegistryProject,
} from '../src/registry/index.js';

const optionsShape = {
  /** Numeric uids handed out with new logins. */
  uidRange: z
    .object({ start: z.number().int().min(1), end: z.number().int().min(1) })
    .refine((r) => r.end >= r.start, { message: 'end must not be below start' })
    .default({ start: 100000, end: 1999999999 }),
  /** Logins never given to a person, on top of the built-in system names. */
  reservedLogins: z.array(z.string()).default([]),
  /** How a login is derived from a name when no requested login is free: jdoe or john_doe. */
  loginFromName: z.enum(['first-initial-last', 'first_last']).default('first-initial-last'),
};
/** `handler.options` of the registry handler; a subclass may `.extend()` it. */
export const registryOptionsSchema = z.strictObject(optionsShape);
/** The registry's own options read from a subclass's options too (its extra keys are left to it); built once. */
const registrySettingsSchema = z.object(optionsShape);
/** The options with defaults applied. */
export type RegistryOptions = z.infer<typeof registryOptionsSchema>;
/** The options as a config or a test may give them: every key optional. */
export type RegistryOptionsInput = z.input<typeof registryOptionsSchema>;

/** Contact tags kept in a person's details, by their name without the Pi/User prefix. */
const DETAIL_FIELDS = [
  'BusinessPhoneComment',
  'BusinessPhoneExtension',
  'BusinessPhoneNumber',
  'City',
  'Country',
  'Department',
  'Fax',
  'HomePhoneComment',
  'HomePhoneExtension',
  'HomePhoneNumber',
  'State',
  'StreetAddress',
  'StreetAddress2',
  'Title',
  'Zip',
  'NsfStatusCode',
] as const;

/** What a packet says about a person, whatever its prefix. */
interface PersonInput {
  personId?: string;
  globalId?: string;
  firstName: string;
  middleName?: string;
  lastName: string;
  email?: string;
  organization?: string;
  orgCode?: string;
  details: Record<string, string>;
  requestedLogins: string[];
  dns: string[];
  sitePersonIds: Array<{ Site?: string; PersonID?: string }>;
  /** The packet tags the person was read from (a packet names one person who may need a login). */
  source: Tags;
}

type Tags = Record<string, TagValue | undefined>;

function text(tags: Tags, tag: string): string | undefined {
  const v = tags[tag];
  const s = typeof v === 'string' ? v.trim() : undefined;
  return s ? s : undefined;
}
function list(tags: Tags, tag: string): string[] {
  const v = tags[tag];
  if (typeof v === 'string') return v.trim() ? [v.trim()] : [];
  if (Array.isArray(v))
    return v
      .filter((x): x is string => typeof x === 'string')
      .map((x) => x.trim())
      .filter(Boolean);
  return [];
}
function entries(tags: Tags, tag: string): Array<Record<string, string>> {
  const v = tags[tag];
  return Array.isArray(v) ? v.filter((x): x is Record<string, string> => typeof x === 'object' && x !== null) : [];
}

/** Reads a person from a packet's tags: prefix 'Pi', 'User', or '' for request_user_modify. */
function personInput(tags: Tags, prefix: string, ids: { personId?: string; globalId?: string }): PersonInput {
  const details: Record<string, string> = {};
  for (const f of DETAIL_FIELDS) {
    const v = text(tags, f === 'NsfStatusCode' ? f : `${prefix}${f}`);
    if (v !== undefined) details[f] = v;
  }
  return {
    ...ids,
    firstName: text(tags, `${prefix}FirstName`) ?? '',
    middleName: text(tags, `${prefix}MiddleName`),
    lastName: text(tags, `${prefix}LastName`) ?? '',
    email: text(tags, `${prefix}Email`),
    organization: text(tags, `${prefix}Organization`),
    orgCode: text(tags, `${prefix}OrgCode`),
    details,
    requestedLogins: list(tags, `${prefix}RequestedLoginList`),
    dns: list(tags, `${prefix}DnList`),
    sitePersonIds: entries(tags, 'SitePersonId'),
    source: tags,
  };
}

/** An AMIE date or timestamp as YYYY-MM-DD, or null when it is not one. */
function isoDate(value: string | undefined): string | null {
  const m = value?.trim().match(/^(\d{4}-\d{2}-\d{2})/);
  return m ? m[1]! : null;
}

/**
 * `O` is the type of `this.options`: a subclass with options of its own names them here
 * (`class MySite extends RegistryHandler<MySiteOptions>`) and needs no casts.
 */
export class RegistryHandler<O extends RegistryOptionsInput = RegistryOptionsInput> extends AmieHandler<O> {
  static override handlerName = 'registry';
  static override optionsSchema = registryOptionsSchema;

  /** The registry's own options, defaults applied (a subclass's extra options are left to it). */
  protected readonly settings: RegistryOptions;

  constructor(context: HandlerContext<O>) {
    super(context);
    this.settings = registrySettingsSchema.parse(context.options ?? {});
  }

  /** Login candidates per packet, by its tags. */
  private readonly candidates = new WeakMap<Tags, string[]>();

  /**
   * The batch being handled: its transaction and packets, the books read for its RPCs and RACs,
   * and where the books stood before the packet being handled (to undo it if its result does not stand).
   */
  private batch: {
    tx: Queryable;
    packets: readonly IncomingPacket[];
    books: RegistryBooks | null;
    current: { packetRecId: number; mark: number } | null;
  } | null = null;

  // ---------------------------------------------------------------- batches

  /**
   * Takes the registry lock for the batch, before its packets are claimed: no other run changes
   * the books until this batch commits, so logins, uids and people are never handed out twice,
   * and no run answers a packet before an earlier one (the RPC a RAC needs) is committed.
   * It waits for a batch of another run: `amie process` lets only one run per configuration's
   * scope get this far (its run lock), so the holder is a run for other resources, or a
   * registry command, whose packets this run could not take over by leaving.
   */
  override async lockBatch(ctx: BatchContext): Promise<void> {
    await lockRegistry(ctx.tx);
  }

  /** The dispatcher took the registry lock (lockBatch) in this transaction before claiming the batch. */
  override async beginBatch(packets: readonly IncomingPacket[], ctx: BatchContext): Promise<void> {
    this.batch = { tx: ctx.tx, packets, books: null, current: null };
  }

  /**
   * A packet whose method threw or whose reply the dispatcher refused: its changes leave the
   * books, so they are never written (and a repeated RecordID is not answered from them).
   */
  override async discardPacket(packet: IncomingPacket): Promise<void> {
    const b = this.batch;
    if (b?.books && b.current?.packetRecId === packet.packetRecId) b.books.rollbackTo(b.current.mark);
  }

  /** Writes the books the batch's RPCs and RACs changed in memory (refused packets' changes were undone). */
  override async endBatch(_accepted: readonly IncomingPacket[], ctx: BatchContext): Promise<void> {
    const books = this.batch?.books;
    this.batch = null;
    await books?.write(ctx.tx);
  }

  /**
   * The in-memory books for an RPC or RAC in a batch, read on first use for it and every RPC
   * and RAC after it; null outside a batch (the packet then reads and writes through SQL).
   */
  private async booksFor(packet: IncomingPacket): Promise<RegistryBooks | null> {
    const b = this.batch;
    if (!b) return null;
    if (!b.books) {
      const from = b.packets.findIndex((p) => p.packetRecId === packet.packetRecId);
      b.books = await RegistryBooks.read(b.tx, this.questionsFor(from < 0 ? [packet] : b.packets.slice(from)));
    }
    b.current = { packetRecId: packet.packetRecId, mark: b.books.mark() };
    return b.books;
  }

  /**
   * Before a packet that changes the books through SQL: write what the batch holds in memory
   * and forget it, so both see the same books. It is written in the batch's transaction before
   * this packet writes anything, so a failure of this packet does not undo it.
   */
  private async settleBooks(): Promise<void> {
    const b = this.batch;
    if (!b?.books) return;
    await b.books.write(b.tx);
    b.books = null;
  }

  private questionsFor(packets: readonly IncomingPacket[]): BatchQuestions {
    const q: BatchQuestions = {
      recordIds: [],
      projectIds: [],
      grantNumbers: [],
      personIds: [],
      globalIds: [],
      sitePersonIds: [],
      candidates: [],
      slurmAccounts: [],
      uidRange: this.settings.uidRange,
    };
    const push = (list: string[], v: string | undefined) => v !== undefined && list.push(v);
    for (const p of packets) {
      if (p.type !== 'request_project_create' && p.type !== 'request_account_create') continue;
      const tags = p.tags as Tags;
      const prefix = p.type === 'request_project_create' ? 'Pi' : 'User';
      const person = personInput(tags, prefix, {
        personId: text(tags, `${prefix}PersonID`),
        globalId: text(tags, `${prefix}GlobalID`),
      });
      push(q.recordIds, text(tags, 'RecordID'));
      push(q.projectIds, text(tags, 'ProjectID'));
      push(q.grantNumbers, typeof tags.GrantNumber === 'string' ? tags.GrantNumber : undefined);
      push(q.personIds, person.personId);
      push(q.globalIds, person.globalId);
      for (const s of person.sitePersonIds)
        if (s.Site && s.PersonID) q.sitePersonIds.push({ site: s.Site, id: s.PersonID });
      // Most people get their first or second choice; lookup checks further ones if need be.
      q.candidates.push(...this.candidatesFor(person).slice(0, 4));
      if (p.type === 'request_project_create')
        push(q.slurmAccounts, this.slurmAccountGuess(p as IncomingPacket<'request_project_create'>) ?? undefined);
    }
    return q;
  }

  /** The lookup for an RPC or RAC, from the batch's books or through SQL. */
  private async find(books: RegistryBooks | null, q: LookupQuery, ctx: PacketContext): Promise<Lookup> {
    return books ? books.lookup(this.batch!.tx, q) : lookup(ctx.tx, q);
  }

  /**
   * Applies a packet's changes and runs its hooks; if a hook throws, the dispatcher rolls the
   * packet's savepoint back and calls discardPacket, which undoes the changes in the books.
   */
  private async applyThen(
    books: RegistryBooks | null,
    cs: ChangeSet,
    ctx: PacketContext,
    hooks: (applied: Applied) => Promise<void>,
  ): Promise<void> {
    await hooks(books ? books.apply(cs) : await applyChanges(ctx.tx, cs));
  }

  /** The ProjectID already holding Slurm account `name`, from the batch's books or through SQL. */
  private async slurmAccountHolder(
    books: RegistryBooks | null,
    name: string,
    ctx: PacketContext,
  ): Promise<string | null> {
    return books ? books.slurmAccountOwner(this.batch!.tx, name) : slurmAccountOwner(ctx.tx, name);
  }

  /**
   * The Slurm account an RPC's project would get if it is new, from the packet alone, so the
   * batch's one read can check it; a wrong guess (a rule using more than the packet) costs a probe.
   */
  private slurmAccountGuess(packet: IncomingPacket<'request_project_create'>): string | null {
    const tags = packet.tags as Tags;
    try {
      return this.slurmAccountFor({
        // Not assignProjectId: a site's may hand out ids, and a guess must not use one up.
        projectId: text(tags, 'ProjectID') ?? packet.tags.GrantNumber.trim(),
        grantNumber: packet.tags.GrantNumber.trim(),
        title: text(tags, 'ProjectTitle') ?? null,
        piPersonId: text(tags, 'PiPersonID') ?? '',
        resource: packet.resource ?? this.site.resource,
        active: true,
        serviceUnits: Number(packet.tags.ServiceUnitsAllocated),
        startDate: isoDate(packet.tags.StartDate),
        endDate: isoDate(packet.tags.EndDate),
      });
    } catch {
      return null; // the packet itself is refused with the reason when it is handled
    }
  }

  // ---------------------------------------------------------------- overridable identifiers

  /** The ProjectID of a new project: the RPC's own ProjectID is used before this is asked. */
  assignProjectId(packet: IncomingPacket<'request_project_create'>): string {
    return packet.tags.GrantNumber.trim();
  }

  /**
   * The Slurm account a new project's jobs will run under, stored with the project (the usage
   * reporter maps jobs back to ProjectIDs through it). The registry itself names none.
   */
  slurmAccountFor(_project: Omit<RegistryProject, 'slurmAccount'>): string | null {
    return null;
  }

  /** The PersonID of a new person, given the login just chosen for them. */
  assignPersonId(login: string, _packet: IncomingPacket<'request_project_create' | 'request_account_create'>): string {
    return login;
  }

  // ---------------------------------------------------------------- hooks (the base does nothing)

  /** A person new to the site got a login (and uid). */
  async createLogin(_person: RegistryPerson, _login: RegistryLogin, _ctx: PacketContext): Promise<void> {}
  /** A project was created; its PI's account follows through addAccount. */
  async createProject(_project: RegistryProject, _pi: RegistryPerson, _ctx: PacketContext): Promise<void> {}
  /** An account that did not exist before (person × project × resource). */
  async addAccount(_account: RegistryAccount, _project: RegistryProject | null, _ctx: PacketContext): Promise<void> {}
  /** An existing account was inactivated or reactivated. */
  async setAccountActive(_account: RegistryAccount, _active: boolean, _ctx: PacketContext): Promise<void> {}
  /** A project was inactivated or reactivated (its accounts get their own calls). */
  async setProjectActive(_project: RegistryProject, _active: boolean, _ctx: PacketContext): Promise<void> {}
  /** A project's allocation changed (every RPC, including the one that created it). */
  async setAllocation(_project: RegistryProject, _change: AllocationChange, _ctx: PacketContext): Promise<void> {}
  /** DNs were added to or removed from a person. */
  async updateDns(
    _person: RegistryPerson,
    _change: { added: string[]; removed: string[] },
    _ctx: PacketContext,
  ): Promise<void> {}
  /** A person's name, organization or contact details changed (request_user_modify). */
  async updatePerson(_person: RegistryPerson, _ctx: PacketContext): Promise<void> {}
  /** `deleted` was folded into `kept`; `accounts` are kept's accounts that came from deleted. */
  async mergePeople(
    _kept: RegistryPerson,
    _deleted: RegistryPerson,
    _accounts: RegistryAccount[],
    _ctx: PacketContext,
  ): Promise<void> {}

  // ---------------------------------------------------------------- packets

  override async request_project_create(
    packet: IncomingPacket<'request_project_create'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_project_create'>> {
    const t = packet.tags;
    const tags = t as Tags;
    const resource = packet.resource ?? this.site.resource;
    const pi = personInput(tags, 'Pi', { personId: text(tags, 'PiPersonID'), globalId: text(tags, 'PiGlobalID') });
    const books = await this.booksFor(packet);
    const found = await this.find(
      books,
      {
        recordId: t.RecordID,
        projectId: text(tags, 'ProjectID'),
        grantNumber: t.GrantNumber,
        personId: pi.personId,
        globalId: pi.globalId,
        sitePersonIds: pi.sitePersonIds,
        piLastName: pi.lastName,
        resource,
        candidates: this.candidatesFor(pi),
        uidRange: this.settings.uidRange,
      },
      ctx,
    );
    if (found.rpcReply) {
      ctx.log.info({ RecordID: t.RecordID }, 'RecordID already handled: repeating the first answer');
      return found.rpcReply as ReplyTagsOf<'notify_project_create'>;
    }
    const allocationType = t.AllocationType.trim().toLowerCase();
    if (!(ALLOCATION_TYPES as readonly string[]).includes(allocationType)) {
      return fail(
        `request_project_create: AllocationType "${t.AllocationType}" is not one of ${ALLOCATION_TYPES.join(', ')}`,
      );
    }
    if (allocationType !== 'new' && !found.project) {
      return fail(
        `request_project_create: AllocationType ${allocationType} changes an existing project, but this site has no project with ` +
          `ProjectID ${text(tags, 'ProjectID') ?? '(none given)'} or GrantNumber ${t.GrantNumber}`,
      );
    }
    const units = Number(t.ServiceUnitsAllocated);
    const cs: ChangeSet = {};
    const { person, newLogin } = this.personFor(found, pi, packet, cs);
    const before = found.project
      ? { serviceUnits: found.project.serviceUnits, startDate: found.project.startDate, endDate: found.project.endDate }
      : null;
    const after = nextAllocation(before, allocationType, units, isoDate(t.StartDate), isoDate(t.EndDate));
    const fields = {
      projectId: found.project?.projectId ?? text(tags, 'ProjectID') ?? this.assignProjectId(packet),
      grantNumber: found.project?.grantNumber ?? t.GrantNumber.trim(),
      title: text(tags, 'ProjectTitle') ?? found.project?.title ?? null,
      piPersonId: person.personId,
      resource: found.project?.resource ?? resource,
      active: found.project?.active ?? true,
      ...after,
    };
    const project: RegistryProject = {
      ...fields,
      slurmAccount: found.project?.slurmAccount ?? this.slurmAccountFor(fields),
    };
    // Every name the packet gives out is checked before any hook runs: a Slurm account that is
    // another project's would have the hooks change that project's limits, users and coordinators.
    if (project.slurmAccount && !found.project?.slurmAccount) {
      const holder = await this.slurmAccountHolder(books, project.slurmAccount, ctx);
      if (holder !== null && holder !== project.projectId) {
        return fail(
          `request_project_create: ProjectID ${project.projectId} would get the Slurm account ${project.slurmAccount}, which is already ` +
            `the account of ProjectID ${holder}; two projects cannot share a Slurm account, so nothing was done`,
        );
      }
    }
    cs.projects = [
      {
        project_id: project.projectId,
        grant_number: project.grantNumber,
        title: project.title,
        pi_person_id: project.piPersonId,
        resource: project.resource,
        service_units: project.serviceUnits,
        start_date: project.startDate,
        end_date: project.endDate,
        slurm_account: project.slurmAccount,
      },
    ];
    cs.history = [
      {
        project_id: project.projectId,
        resource,
        allocation_type: allocationType,
        service_units: units,
        start_date: isoDate(t.StartDate),
        end_date: isoDate(t.EndDate),
        record_id: t.RecordID,
        packet_rec_id: packet.packetRecId,
      },
    ];
    cs.accounts = [{ person_id: person.personId, project_id: project.projectId, resource, active: project.active }];
    // Everything the NPC says is stored for a repeated RecordID, the tags the dispatcher would
    // take over from the request included, so the repeat is word for word the first answer.
    const reply: ReplyTagsOf<'notify_project_create'> = {
      GrantNumber: t.GrantNumber,
      PfosNumber: t.PfosNumber,
      PiOrgCode: t.PiOrgCode,
      ResourceList: t.ResourceList,
      ServiceUnitsAllocated: t.ServiceUnitsAllocated,
      StartDate: t.StartDate,
      ProjectID: project.projectId,
      PiPersonID: person.personId,
      PiRemoteSiteLogin: person.login!,
      ProjectTitle: project.title ?? project.grantNumber,
      ...(person.uid !== null ? { PiUID: String(person.uid) } : {}),
      ...(person.globalId ? { PiGlobalID: person.globalId } : {}),
    };
    cs.rpcRecord = { record_id: t.RecordID, project_id: project.projectId, reply, packet_rec_id: packet.packetRecId };
    await this.applyThen(books, cs, ctx, async (applied) => {
      if (newLogin) await this.createLogin(person, newLogin, ctx);
      if (!found.project) await this.createProject(project, person, ctx);
      await this.setAllocation(
        project,
        { allocationType, requestedUnits: units, before, after, recordId: t.RecordID },
        ctx,
      );
      await this.accountHooks(applied, person, project, ctx);
      await this.dnHooks(applied, person, ctx);
    });
    return reply;
  }

  override async request_account_create(
    packet: IncomingPacket<'request_account_create'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_create'>> {
    const t = packet.tags;
    const tags = t as Tags;
    const resource = packet.resource ?? this.site.resource;
    const user = personInput(tags, 'User', {
      personId: text(tags, 'UserPersonID'),
      globalId: text(tags, 'UserGlobalID'),
    });
    const books = await this.booksFor(packet);
    const found = await this.find(
      books,
      {
        projectId: text(tags, 'ProjectID'),
        grantNumber: t.GrantNumber,
        personId: user.personId,
        globalId: user.globalId,
        sitePersonIds: user.sitePersonIds,
        resource,
        candidates: this.candidatesFor(user),
        uidRange: this.settings.uidRange,
      },
      ctx,
    );
    if (!found.project) {
      return fail(
        `request_account_create: this site has no project with ProjectID ${text(tags, 'ProjectID') ?? '(none given)'} or ` +
          `GrantNumber ${t.GrantNumber}; the project must be created by a request_project_create first`,
      );
    }
    const cs: ChangeSet = {};
    const { person, newLogin } = this.personFor(found, user, packet, cs);
    cs.accounts = [{ person_id: person.personId, project_id: found.project.projectId, resource, active: true }];
    const project = found.project;
    await this.applyThen(books, cs, ctx, async (applied) => {
      if (newLogin) await this.createLogin(person, newLogin, ctx);
      await this.accountHooks(applied, person, project, ctx);
      await this.dnHooks(applied, person, ctx);
    });
    return {
      ProjectID: project.projectId,
      UserPersonID: person.personId,
      UserRemoteSiteLogin: person.login!,
      AccountActivityTime: new Date().toISOString(),
      ...(person.uid !== null ? { UserUID: String(person.uid) } : {}),
      ...(person.globalId ? { UserGlobalID: person.globalId } : {}),
    };
  }

  override async data_project_create(
    packet: IncomingPacket<'data_project_create'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return this.recordDns('data_project_create', packet.tags.PersonID, list(packet.tags, 'DnList'), ctx);
  }

  override async data_account_create(
    packet: IncomingPacket<'data_account_create'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    return this.recordDns('data_account_create', packet.tags.PersonID, list(packet.tags, 'DnList'), ctx);
  }

  override async request_project_inactivate(
    packet: IncomingPacket<'request_project_inactivate'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_project_inactivate'>> {
    await this.settleBooks();
    const r = await setProjectState(ctx.tx, packet.tags.ProjectID, false, packet.resource ?? this.site.resource);
    if (!r.project)
      return fail(`request_project_inactivate: ProjectID ${packet.tags.ProjectID} is not known at this site`);
    for (const a of r.accounts) await this.setAccountActive(a, false, ctx);
    await this.setProjectActive(r.project, false, ctx);
    return {};
  }

  override async request_project_reactivate(
    packet: IncomingPacket<'request_project_reactivate'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_project_reactivate'>> {
    await this.settleBooks();
    const r = await setProjectState(ctx.tx, packet.tags.ProjectID, true, packet.resource ?? this.site.resource);
    if (!r.project)
      return fail(`request_project_reactivate: ProjectID ${packet.tags.ProjectID} is not known at this site`);
    await this.setProjectActive(r.project, true, ctx);
    for (const a of r.accounts) {
      if (a.created) await this.addAccount(a, r.project, ctx);
      else await this.setAccountActive(a, true, ctx);
    }
    return {};
  }

  override async request_account_inactivate(
    packet: IncomingPacket<'request_account_inactivate'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_inactivate'>> {
    return this.accountState('request_account_inactivate', packet, false, ctx);
  }

  override async request_account_reactivate(
    packet: IncomingPacket<'request_account_reactivate'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_reactivate'>> {
    return this.accountState('request_account_reactivate', packet, true, ctx);
  }

  override async request_user_modify(
    packet: IncomingPacket<'request_user_modify'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    const tags = packet.tags as Tags;
    const action = packet.tags.ActionType.trim().toLowerCase();
    if (action !== 'add' && action !== 'replace' && action !== 'delete') {
      return fail(`request_user_modify: ActionType "${packet.tags.ActionType}" is not add, replace or delete`);
    }
    const dns = list(tags, 'DnList');
    let changes: PersonChanges = {};
    if (action !== 'delete') {
      const p = personInput(tags, '', {});
      changes = {
        ...(p.firstName ? { first_name: p.firstName } : {}),
        ...(p.lastName ? { last_name: p.lastName } : {}),
        ...(p.middleName ? { middle_name: p.middleName } : {}),
        ...(p.email ? { email: p.email } : {}),
        ...(p.organization ? { organization: p.organization } : {}),
        ...(p.orgCode ? { org_code: p.orgCode } : {}),
        ...(Object.keys(p.details).length > 0 ? { details: p.details } : {}),
      };
    }
    await this.settleBooks();
    const r = await modifyPerson(
      ctx.tx,
      packet.tags.PersonID,
      changes,
      action === 'delete' ? [] : dns,
      action === 'delete' ? dns : [],
    );
    if (!r.person) return fail(`request_user_modify: PersonID ${packet.tags.PersonID} is not known at this site`);
    if (Object.keys(changes).length > 0) await this.updatePerson(r.person, ctx);
    if (r.added.length > 0 || r.removed.length > 0)
      await this.updateDns(r.person, { added: r.added, removed: r.removed }, ctx);
    return {};
  }

  override async request_person_merge(
    packet: IncomingPacket<'request_person_merge'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    const t = packet.tags;
    await this.settleBooks();
    const pair = await findMergePair(
      ctx.tx,
      { personId: t.KeepPersonID, globalId: t.KeepGlobalID },
      { personId: t.DeletePersonID, globalId: t.DeleteGlobalID },
    );
    if (!pair.keep) {
      return fail(
        `request_person_merge: KeepPersonID ${t.KeepPersonID} (KeepGlobalID ${t.KeepGlobalID}) is not known at this site`,
      );
    }
    if (!pair.del || pair.del.personId === pair.keep.personId) {
      const why = pair.delAlreadyMergedInto
        ? `was already merged into ${pair.delAlreadyMergedInto}`
        : 'is not known at this site';
      ctx.log.info({ DeletePersonID: t.DeletePersonID }, `person merge: DeletePersonID ${why}, nothing to move`);
      return { Message: `DeletePersonID ${t.DeletePersonID} ${why}; nothing to merge` };
    }
    const moved = await mergePeopleInRegistry(ctx.tx, pair.keep.personId, pair.del.personId);
    await this.mergePeople(pair.keep, pair.del, moved.accounts, ctx);
    return {
      Message: `${pair.del.personId} merged into ${pair.keep.personId}: ${moved.accounts.length} account(s) moved`,
    };
  }

  override async notify_person_ids(
    packet: IncomingPacket<'notify_person_ids'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    ctx.log.info(
      { PersonID: packet.tags.PersonID, PrimaryPersonID: packet.tags.PrimaryPersonID },
      'notify_person_ids noted; the registry keeps its own ids',
    );
    return {};
  }

  override async notify_person_duplicate(
    packet: IncomingPacket<'notify_person_duplicate'>,
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    // Nested: spread, a tag named `level` or `packet_rec_id` would overwrite that field of the log line.
    ctx.log.warn(
      { tags: packet.tags },
      'central reports a duplicate person; a request_person_merge is expected to follow',
    );
    return {};
  }

  // ---------------------------------------------------------------- internals

  private candidatesFor(p: PersonInput): string[] {
    // Asked for twice per packet (reading the batch, answering it): worked out once.
    let c = this.candidates.get(p.source);
    if (c) return c;
    c = loginCandidates({
      requested: p.requestedLogins,
      firstName: p.firstName,
      lastName: p.lastName,
      style: this.settings.loginFromName,
      reserved: this.settings.reservedLogins,
    });
    this.candidates.set(p.source, c);
    return c;
  }

  /** The person the packet is about, known or new; adds their rows to `cs`. */
  private personFor(
    found: Lookup,
    input: PersonInput,
    packet: IncomingPacket<'request_project_create' | 'request_account_create'>,
    cs: ChangeSet,
  ): { person: RegistryPerson; newLogin?: RegistryLogin } {
    // A GlobalID held by someone else is not moved here: that is what request_person_merge is for.
    const globalId =
      input.globalId && (found.globalIdOwner === null || found.globalIdOwner === found.person?.personId)
        ? input.globalId
        : null;
    let person: RegistryPerson;
    let newLogin: RegistryLogin | undefined;
    if (found.person && found.person.login) {
      const known = found.person;
      person = {
        ...known,
        globalId: known.globalId ?? globalId,
        firstName: input.firstName || known.firstName,
        middleName: input.middleName ?? known.middleName,
        lastName: input.lastName || known.lastName,
        email: input.email ?? known.email,
        organization: input.organization ?? known.organization,
        orgCode: input.orgCode ?? known.orgCode,
        details: { ...known.details, ...input.details },
      };
    } else {
      const login = this.candidatesFor(input).find((c) => !found.taken.has(c));
      if (!login) {
        throw new Error(
          `${packet.type}: no free login for ${input.firstName} ${input.lastName}: every requested and derived login is taken or reserved`,
        );
      }
      const { start, end } = this.settings.uidRange;
      const uid = Math.max(found.nextUid, start);
      if (uid > end)
        throw new Error(`handler.options.uidRange: no uid left between ${start} and ${end} for a new login`);
      const personId = found.person?.personId ?? this.assignPersonId(login, packet);
      person = {
        personId,
        globalId,
        firstName: input.firstName,
        middleName: input.middleName ?? null,
        lastName: input.lastName,
        email: input.email ?? null,
        organization: input.organization ?? null,
        orgCode: input.orgCode ?? null,
        details: input.details,
        login,
        uid,
      };
      newLogin = { login, personId, uid };
      cs.logins = [{ login, person_id: personId, uid }];
    }
    cs.people = [
      {
        person_id: person.personId,
        global_id: person.globalId,
        first_name: person.firstName,
        middle_name: person.middleName,
        last_name: person.lastName,
        email: person.email,
        organization: person.organization,
        org_code: person.orgCode,
        details: input.details,
      },
    ];
    cs.dns = input.dns.map((dn) => ({ person_id: person.personId, dn }));
    cs.sitePersonIds = input.sitePersonIds
      .filter((s) => s.Site && s.PersonID)
      .map((s) => ({ site: s.Site!, site_person_id: s.PersonID!, person_id: person.personId }));
    return newLogin ? { person, newLogin } : { person };
  }

  private async accountHooks(
    applied: Applied,
    person: RegistryPerson,
    project: RegistryProject,
    ctx: PacketContext,
  ): Promise<void> {
    for (const a of applied.accounts) {
      const login = a.personId === person.personId ? person.login : a.login;
      const account: RegistryAccount = {
        personId: a.personId,
        projectId: a.projectId,
        resource: a.resource,
        active: a.active,
        login,
      };
      if (a.created) await this.addAccount(account, project, ctx);
      else await this.setAccountActive(account, a.active, ctx);
    }
  }

  private async dnHooks(applied: Applied, person: RegistryPerson, ctx: PacketContext): Promise<void> {
    const added = applied.dnsAdded.filter((d) => d.personId === person.personId).map((d) => d.dn);
    if (added.length > 0) await this.updateDns(person, { added, removed: [] }, ctx);
  }

  private async recordDns(
    type: string,
    personId: string,
    dns: string[],
    ctx: PacketContext,
  ): Promise<HandlerResult<'inform_transaction_complete'>> {
    await this.settleBooks();
    const r = await modifyPerson(ctx.tx, personId, {}, dns, []);
    if (!r.person) return fail(`${type}: PersonID ${personId} is not known at this site`);
    if (r.added.length > 0) await this.updateDns(r.person, { added: r.added, removed: [] }, ctx);
    return {};
  }

  private async accountState(
    type: 'request_account_inactivate' | 'request_account_reactivate',
    packet: IncomingPacket<'request_account_inactivate' | 'request_account_reactivate'>,
    active: boolean,
    ctx: PacketContext,
  ): Promise<HandlerResult<'notify_account_inactivate'>> {
    const { PersonID, ProjectID } = packet.tags;
    const resource = packet.resource ?? this.site.resource;
    await this.settleBooks();
    const r = await setAccountState(ctx.tx, PersonID, ProjectID, resource, active);
    if (!r.account) {
      if (!r.personKnown) return fail(`${type}: PersonID ${PersonID} is not known at this site`);
      if (!r.projectKnown) return fail(`${type}: ProjectID ${ProjectID} is not known at this site`);
      return fail(`${type}: PersonID ${PersonID} has no account on ProjectID ${ProjectID} on resource ${resource}`);
    }
    if (r.changed) await this.setAccountActive(r.account, active, ctx);
    return {};
  }
}

export default RegistryHandler;
