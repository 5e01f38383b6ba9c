/**
 * The registry's books for a whole batch of packets, kept in memory between one read and one
 * write. Answering request_project_create and request_account_create one packet at a time costs
 * a lookup and a write per packet; here one statement reads everything the batch's RPCs and
 * RACs may ask about, each packet's questions are answered and its changes applied in memory
 * (exactly as the per-packet SQL in sql.ts would), and one statement writes the final state of
 * everything that changed. The registry lock is held from the read to the commit, so no other
 * run changes the books in between.
 *
 * A packet whose handling fails is undone in memory (`mark` / `rollbackTo`), as a savepoint
 * would undo its SQL.
 */
import type { Queryable } from '../db/index.js';
import {
  accountFromRow,
  personFromRow,
  projectFromRow,
  type RegistryAccount,
  type RegistryPerson,
  type RegistryProject,
} from './records.js';
import type { Applied, ChangeSet, Lookup, LookupQuery } from './sql.js';

const S = 'amie_toolkit';

/** Everything a batch's packets may ask about, gathered before the first is answered. */
export interface BatchQuestions {
  recordIds: string[];
  projectIds: string[];
  grantNumbers: string[];
  personIds: string[];
  globalIds: string[];
  sitePersonIds: Array<{ site: string; id: string }>;
  /** Logins to check for being taken: a packet's first few; lookup checks more when they are all taken. */
  candidates: string[];
  /** Slurm accounts new projects would get, to check for being another project's. */
  slurmAccounts: string[];
  uidRange: { start: number; end: number };
}

type HistoryRow = NonNullable<ChangeSet['history']>[number];
const key = (...parts: string[]) => parts.join('\u0000');

/** Which of the logins in array parameter `param` are taken: one index probe each (see lookup in sql.ts). */
const TAKEN_SQL = (param: string) => `SELECT coalesce(array_agg(c), '{}') FROM unnest(${param}::text[]) AS c
    WHERE (SELECT true FROM ${S}.logins WHERE login = c LIMIT 1)
       OR (SELECT true FROM ${S}.people WHERE person_id = c LIMIT 1)
       OR (SELECT true FROM ${S}.person_aliases WHERE alias = c LIMIT 1)`;

/** [slurm_account, project_id] pairs for the names in array parameter `param`. */
const ACCOUNT_OWNERS_SQL = (param: string) =>
  `SELECT json_agg(json_build_array(slurm_account, project_id)) FROM ${S}.projects WHERE slurm_account = ANY(${param}::text[])`;

export class RegistryBooks {
  private readonly rpc = new Map<string, Record<string, unknown>>();
  private readonly projects = new Map<string, RegistryProject>();
  private readonly grants = new Map<string, string>();
  private readonly people = new Map<string, RegistryPerson>();
  private readonly aliases = new Map<string, string>();
  private readonly globalIds = new Map<string, string>();
  private readonly sites = new Map<string, string>();
  private readonly accounts = new Map<string, RegistryAccount>();
  private readonly dns = new Map<string, Set<string>>();
  private readonly taken = new Set<string>();
  /** Logins whose being taken in the database is known (the rest are checked when asked about). */
  private readonly probed = new Set<string>();
  /** Slurm account -> the ProjectID holding it, for the accounts read or probed. */
  private readonly slurmAccounts = new Map<string, string>();
  private readonly probedAccounts = new Set<string>();
  private nextUid = 0;

  // What to write at flush: keys of rows whose final state must be written, and new rows.
  private readonly dirtyPeople = new Set<string>();
  private readonly dirtyProjects = new Set<string>();
  private readonly dirtyAccounts = new Set<string>();
  private readonly newLogins = new Map<string, { person_id: string; uid: number }>();
  private readonly newDns: Array<{ person_id: string; dn: string }> = [];
  private readonly newSites: Array<{ site: string; site_person_id: string; person_id: string }> = [];
  private readonly history: HistoryRow[] = [];
  private readonly newRpc: NonNullable<ChangeSet['rpcRecord']>[] = [];

  /** Undo log: each entry restores one change. */
  private readonly undo: Array<() => void> = [];

  private constructor() {}

  /** Reads what the questions need, in one statement (the caller holds the registry lock). */
  static async read(tx: Queryable, q: BatchQuestions): Promise<RegistryBooks> {
    const { rows } = await tx.query<Record<string, unknown>>(
      `WITH proj AS (SELECT pr.* FROM ${S}.projects pr WHERE pr.project_id = ANY($2::text[]) OR pr.grant_number = ANY($3::text[])),
sp AS (SELECT x.site, x.id FROM jsonb_to_recordset($6::jsonb) AS x(site text, id text)),
al AS (SELECT alias, person_id FROM ${S}.person_aliases WHERE alias = ANY($4::text[])),
found AS (
  SELECT coalesce(al.person_id, i.id) AS person_id FROM unnest($4::text[]) AS i(id) LEFT JOIN al ON al.alias = i.id
  UNION SELECT p.person_id FROM ${S}.people p WHERE p.global_id = ANY($5::text[])
  UNION SELECT s.person_id FROM ${S}.site_person_ids s JOIN sp ON s.site = sp.site AND s.site_person_id = sp.id
  UNION SELECT pi_person_id FROM proj),
al2 AS (SELECT alias, person_id FROM ${S}.person_aliases WHERE alias IN (SELECT person_id FROM found)),
pp AS (SELECT person_id FROM found UNION SELECT person_id FROM al2)
SELECT
  (SELECT json_agg(json_build_array(record_id, reply)) FROM ${S}.rpc_records WHERE record_id = ANY($1::text[])) AS rpc,
  (SELECT json_agg(proj) FROM proj) AS projects,
  (SELECT json_agg(x) FROM (SELECT p.*, l.login, l.uid FROM ${S}.people p LEFT JOIN ${S}.logins l ON l.person_id = p.person_id
                             WHERE p.person_id IN (SELECT person_id FROM pp)) x) AS people,
  (SELECT json_agg(a) FROM (SELECT * FROM al UNION SELECT * FROM al2) a) AS aliases,
  (SELECT json_agg(s) FROM ${S}.site_person_ids s JOIN sp ON s.site = sp.site AND s.site_person_id = sp.id) AS sites,
  (SELECT json_agg(a) FROM ${S}.accounts a WHERE a.person_id IN (SELECT person_id FROM pp)) AS accounts,
  (SELECT json_agg(d) FROM ${S}.person_dns d WHERE d.person_id IN (SELECT person_id FROM pp)) AS dns,
  (${TAKEN_SQL('$7')}) AS taken,
  (SELECT coalesce(max(uid) + 1, $8::int) FROM ${S}.logins WHERE uid BETWEEN $8::int AND $9::int) AS next_uid,
  (${ACCOUNT_OWNERS_SQL('$10')}) AS slurm_accounts`,
      [
        q.recordIds,
        q.projectIds,
        q.grantNumbers,
        q.personIds,
        q.globalIds,
        JSON.stringify(q.sitePersonIds),
        q.candidates,
        q.uidRange.start,
        q.uidRange.end,
        q.slurmAccounts,
      ],
    );
    const r = rows[0]!;
    const books = new RegistryBooks();
    for (const [id, reply] of (r.rpc as Array<[string, Record<string, unknown>]> | null) ?? [])
      books.rpc.set(id, reply);
    for (const row of (r.projects as Array<Record<string, unknown>> | null) ?? []) {
      const p = projectFromRow(row);
      books.projects.set(p.projectId, p);
      books.grants.set(p.grantNumber, p.projectId);
    }
    for (const row of (r.people as Array<Record<string, unknown>> | null) ?? []) {
      const p = personFromRow(row);
      books.people.set(p.personId, p);
      if (p.globalId) books.globalIds.set(p.globalId, p.personId);
    }
    for (const a of (r.aliases as Array<{ alias: string; person_id: string }> | null) ?? [])
      books.aliases.set(a.alias, a.person_id);
    for (const s of (r.sites as Array<{ site: string; site_person_id: string; person_id: string }> | null) ?? []) {
      books.sites.set(key(s.site, s.site_person_id), s.person_id);
    }
    for (const row of (r.accounts as Array<Record<string, unknown>> | null) ?? []) {
      const a = accountFromRow({ ...row, login: books.people.get(String(row.person_id))?.login ?? null });
      books.accounts.set(key(a.personId, a.projectId, a.resource), a);
    }
    for (const d of (r.dns as Array<{ person_id: string; dn: string }> | null) ?? [])
      books.dnSet(d.person_id).add(d.dn);
    for (const c of q.candidates) books.probed.add(c);
    for (const c of (r.taken as string[] | null) ?? []) books.taken.add(c);
    books.nextUid = Number(r.next_uid);
    books.noteAccountOwners(q.slurmAccounts, r.slurm_accounts as Array<[string, string]> | null);
    return books;
  }

  /**
   * The ProjectID whose Slurm account `name` is, or null: checked before a new project's hooks
   * run, so a name clash refuses the packet instead of changing another project's account.
   */
  async slurmAccountOwner(tx: Queryable, name: string): Promise<string | null> {
    if (!this.probedAccounts.has(name) && !this.slurmAccounts.has(name)) {
      const { rows } = await tx.query<{ owners: Array<[string, string]> | null }>(
        `SELECT (${ACCOUNT_OWNERS_SQL('$1')}) AS owners`,
        [[name]],
      );
      this.noteAccountOwners([name], rows[0]!.owners);
    }
    return this.slurmAccounts.get(name) ?? null;
  }

  /** Facts read from the database, not changes: never undone. */
  private noteAccountOwners(asked: readonly string[], owners: Array<[string, string]> | null): void {
    for (const a of asked) this.probedAccounts.add(a);
    for (const [account, projectId] of owners ?? []) this.slurmAccounts.set(account, projectId);
  }

  /**
   * The same answer `lookup` in sql.ts gives, from memory. `taken` holds the candidates taken
   * up to the first free one (the one a new person gets); candidates not read with the batch
   * are checked in the database here.
   */
  async lookup(tx: Queryable, q: LookupQuery): Promise<Lookup> {
    const taken = new Set<string>();
    const candidates = q.candidates ?? [];
    for (const [i, c] of candidates.entries()) {
      if (!this.probed.has(c) && !this.taken.has(c)) await this.probe(tx, candidates.slice(i));
      if (!this.taken.has(c)) break;
      taken.add(c);
    }
    const resolve = (id: string) => this.aliases.get(id) ?? id;
    let project: RegistryProject | null = null;
    if (q.projectId && this.projects.has(q.projectId)) project = this.projects.get(q.projectId)!;
    else if (q.grantNumber && this.grants.has(q.grantNumber))
      project = this.projects.get(this.grants.get(q.grantNumber)!)!;
    const byId = q.personId && this.people.has(resolve(q.personId)) ? resolve(q.personId) : null;
    const globalOwner = q.globalId && this.globalIds.has(q.globalId) ? resolve(this.globalIds.get(q.globalId)!) : null;
    let bySite: string | null = null;
    for (const s of q.sitePersonIds ?? []) {
      const id = s.Site && s.PersonID ? this.sites.get(key(s.Site, s.PersonID)) : undefined;
      if (id) {
        bySite = resolve(id);
        break;
      }
    }
    const pi = project ? this.people.get(project.piPersonId) : undefined;
    const byPi =
      pi && q.piLastName !== undefined && pi.lastName.toLowerCase() === q.piLastName.toLowerCase() ? pi.personId : null;
    const chosen: [string | null, Lookup['personFoundBy']][] = [
      [byId, 'PersonID'],
      [globalOwner, 'GlobalID'],
      [bySite, 'SitePersonId'],
      [byPi, 'ProjectPI'],
    ];
    const [personId, foundBy] = chosen.find(([id]) => id !== null && this.people.has(id)) ?? [null, null];
    const person = personId ? this.people.get(personId)! : null;
    const account =
      person && project ? this.accounts.get(key(person.personId, project.projectId, q.resource ?? '')) : undefined;
    return {
      rpcReply: (q.recordId && this.rpc.get(q.recordId)) || null,
      project: project ? { ...project } : null,
      person: person ? { ...person, details: { ...person.details } } : null,
      personFoundBy: foundBy,
      globalIdOwner: globalOwner,
      account: account ? { ...account, login: person?.login ?? null } : null,
      taken,
      nextUid: this.nextUid,
    };
  }

  /** Checks logins for being taken in the database (facts, not changes: never undone). */
  private async probe(tx: Queryable, logins: string[]): Promise<void> {
    const { rows } = await tx.query<{ taken: string[] }>(`SELECT (${TAKEN_SQL('$1')}) AS taken`, [logins]);
    for (const c of logins) this.probed.add(c);
    for (const c of rows[0]!.taken) this.taken.add(c);
  }

  /** Applies one packet's change set in memory, with the same result `applyChanges` gives. */
  apply(cs: ChangeSet): Applied {
    for (const w of cs.people ?? []) {
      const old = this.people.get(w.person_id);
      const merged: RegistryPerson = {
        personId: w.person_id,
        globalId: old?.globalId ?? w.global_id ?? null,
        firstName: w.first_name ? w.first_name : (old?.firstName ?? ''),
        middleName: w.middle_name ?? old?.middleName ?? null,
        lastName: w.last_name ? w.last_name : (old?.lastName ?? ''),
        email: w.email ?? old?.email ?? null,
        organization: w.organization ?? old?.organization ?? null,
        orgCode: w.org_code ?? old?.orgCode ?? null,
        details: { ...(old?.details ?? {}), ...(w.details ?? {}) },
        login: old?.login ?? null,
        uid: old?.uid ?? null,
      };
      if (merged.globalId && !old?.globalId) {
        const holder = this.globalIds.get(merged.globalId);
        if (holder !== undefined && holder !== w.person_id) {
          throw new Error(`registry: GlobalID ${merged.globalId} already belongs to ${holder}`);
        }
        this.setEntry(this.globalIds, merged.globalId, w.person_id);
      }
      this.setEntry(this.people, w.person_id, merged);
      this.addTo(this.taken, w.person_id);
      this.addTo(this.dirtyPeople, w.person_id);
    }
    for (const l of cs.logins ?? []) {
      const person = this.people.get(l.person_id);
      if (!person || this.newLogins.has(l.login) || person.login) {
        throw new Error(
          `registry: login ${l.login} is taken, or person ${l.person_id} is unknown or already has a login`,
        );
      }
      this.setEntry(this.people, l.person_id, { ...person, login: l.login, uid: l.uid });
      this.setEntry(this.newLogins, l.login, { person_id: l.person_id, uid: l.uid });
      this.addTo(this.taken, l.login);
      const before = this.nextUid;
      this.nextUid = Math.max(this.nextUid, l.uid + 1);
      this.undo.push(() => (this.nextUid = before));
    }
    const dnsAdded: Applied['dnsAdded'] = [];
    for (const d of cs.dns ?? []) {
      const set = this.dnSet(d.person_id);
      if (set.has(d.dn)) continue;
      this.addTo(set, d.dn);
      this.pushTo(this.newDns, { person_id: d.person_id, dn: d.dn });
      dnsAdded.push({ personId: d.person_id, dn: d.dn });
    }
    for (const s of cs.sitePersonIds ?? []) {
      const k = key(s.site, s.site_person_id);
      if (this.sites.has(k)) continue;
      this.setEntry(this.sites, k, s.person_id);
      this.pushTo(this.newSites, s);
    }
    for (const w of cs.projects ?? []) {
      const old = this.projects.get(w.project_id);
      const p: RegistryProject = {
        projectId: w.project_id,
        grantNumber: old?.grantNumber ?? w.grant_number,
        title: w.title ?? old?.title ?? null,
        piPersonId: w.pi_person_id,
        resource: old?.resource ?? w.resource,
        active: old?.active ?? true,
        serviceUnits: w.service_units,
        startDate: w.start_date,
        endDate: w.end_date,
        slurmAccount: old?.slurmAccount ?? w.slurm_account ?? null,
      };
      this.setEntry(this.projects, w.project_id, p);
      if (!old) this.setEntry(this.grants, p.grantNumber, p.projectId);
      if (p.slurmAccount && !old?.slurmAccount) this.setEntry(this.slurmAccounts, p.slurmAccount, p.projectId);
      this.addTo(this.dirtyProjects, w.project_id);
    }
    for (const h of cs.history ?? []) this.pushTo(this.history, h);
    const accounts: Applied['accounts'] = [];
    for (const a of cs.accounts ?? []) {
      const k = key(a.person_id, a.project_id, a.resource);
      const old = this.accounts.get(k);
      if (old && old.active === a.active) continue;
      const login = this.people.get(a.person_id)?.login ?? null;
      const account: RegistryAccount = {
        personId: a.person_id,
        projectId: a.project_id,
        resource: a.resource,
        active: a.active,
        login,
      };
      this.setEntry(this.accounts, k, account);
      this.addTo(this.dirtyAccounts, k);
      accounts.push({ ...account, created: !old });
    }
    if (cs.rpcRecord && !this.rpc.has(cs.rpcRecord.record_id)) {
      this.setEntry(this.rpc, cs.rpcRecord.record_id, cs.rpcRecord.reply);
      this.pushTo(this.newRpc, cs.rpcRecord);
    }
    return { dnsAdded, accounts };
  }

  /** A point to come back to if the packet being handled fails. */
  mark(): number {
    return this.undo.length;
  }

  rollbackTo(mark: number): void {
    while (this.undo.length > mark) this.undo.pop()!();
  }

  /** True when something is waiting to be written. */
  get dirty(): boolean {
    return (
      this.dirtyPeople.size +
        this.dirtyProjects.size +
        this.dirtyAccounts.size +
        this.newLogins.size +
        this.newDns.length +
        this.newSites.length +
        this.history.length +
        this.newRpc.length >
      0
    );
  }

  /** Writes the final state of everything the batch changed, in one statement. */
  async write(tx: Queryable): Promise<void> {
    if (!this.dirty) return;
    const people = [...this.dirtyPeople].map((id) => {
      const p = this.people.get(id)!;
      return {
        person_id: p.personId,
        global_id: p.globalId,
        first_name: p.firstName,
        middle_name: p.middleName,
        last_name: p.lastName,
        email: p.email,
        organization: p.organization,
        org_code: p.orgCode,
        details: p.details,
      };
    });
    const logins = [...this.newLogins].map(([login, l]) => ({ login, ...l }));
    const projects = [...this.dirtyProjects].map((id) => {
      const p = this.projects.get(id)!;
      return {
        project_id: p.projectId,
        grant_number: p.grantNumber,
        title: p.title,
        pi_person_id: p.piPersonId,
        resource: p.resource,
        service_units: p.serviceUnits,
        start_date: p.startDate,
        end_date: p.endDate,
        slurm_account: p.slurmAccount,
      };
    });
    const accounts = [...this.dirtyAccounts].map((k) => {
      const a = this.accounts.get(k)!;
      return { person_id: a.personId, project_id: a.projectId, resource: a.resource, active: a.active };
    });
    await tx.query(
      `WITH b AS (SELECT $1::jsonb AS j),
people_up AS (
  INSERT INTO ${S}.people AS t (person_id, global_id, first_name, middle_name, last_name, email, organization, org_code, details)
  SELECT x.person_id, x.global_id, x.first_name, x.middle_name, x.last_name, x.email, x.organization, x.org_code, coalesce(x.details, '{}'::jsonb)
    FROM b, jsonb_to_recordset(b.j->'people') AS x(person_id text, global_id text, first_name text, middle_name text, last_name text,
                                                   email text, organization text, org_code text, details jsonb)
  ON CONFLICT (person_id) DO UPDATE SET global_id = excluded.global_id, first_name = excluded.first_name, middle_name = excluded.middle_name,
    last_name = excluded.last_name, email = excluded.email, organization = excluded.organization, org_code = excluded.org_code,
    details = excluded.details, updated_at = now()),
logins_in AS (
  INSERT INTO ${S}.logins (login, person_id, uid)
  SELECT x.login, x.person_id, x.uid FROM b, jsonb_to_recordset(b.j->'logins') AS x(login text, person_id text, uid int)),
dns_in AS (
  INSERT INTO ${S}.person_dns (person_id, dn)
  SELECT x.person_id, x.dn FROM b, jsonb_to_recordset(b.j->'dns') AS x(person_id text, dn text) ON CONFLICT DO NOTHING),
sites_in AS (
  INSERT INTO ${S}.site_person_ids (site, site_person_id, person_id)
  SELECT x.site, x.site_person_id, x.person_id FROM b, jsonb_to_recordset(b.j->'sites') AS x(site text, site_person_id text, person_id text)
  ON CONFLICT DO NOTHING),
projects_up AS (
  INSERT INTO ${S}.projects AS t (project_id, grant_number, title, pi_person_id, resource, service_units, start_date, end_date, slurm_account)
  SELECT x.project_id, x.grant_number, x.title, x.pi_person_id, x.resource, x.service_units, x.start_date::date, x.end_date::date, x.slurm_account
    FROM b, jsonb_to_recordset(b.j->'projects') AS x(project_id text, grant_number text, title text, pi_person_id text, resource text,
                                                     service_units numeric, start_date text, end_date text, slurm_account text)
  ON CONFLICT (project_id) DO UPDATE SET title = excluded.title, pi_person_id = excluded.pi_person_id, service_units = excluded.service_units,
    start_date = excluded.start_date, end_date = excluded.end_date, slurm_account = coalesce(t.slurm_account, excluded.slurm_account), updated_at = now()),
history_in AS (
  INSERT INTO ${S}.allocation_history (project_id, resource, allocation_type, service_units, start_date, end_date, record_id, packet_rec_id)
  SELECT x.project_id, x.resource, x.allocation_type, x.service_units, x.start_date::date, x.end_date::date, x.record_id, x.packet_rec_id
    FROM b, jsonb_to_recordset(b.j->'history') AS x(project_id text, resource text, allocation_type text, service_units numeric,
                                                    start_date text, end_date text, record_id text, packet_rec_id bigint)),
accounts_up AS (
  INSERT INTO ${S}.accounts (person_id, project_id, resource, active)
  SELECT x.person_id, x.project_id, x.resource, x.active
    FROM b, jsonb_to_recordset(b.j->'accounts') AS x(person_id text, project_id text, resource text, active boolean)
  ON CONFLICT (person_id, project_id, resource) DO UPDATE SET active = excluded.active, updated_at = now()),
rpc_in AS (
  INSERT INTO ${S}.rpc_records (record_id, project_id, reply, packet_rec_id)
  SELECT x.record_id, x.project_id, x.reply, x.packet_rec_id
    FROM b, jsonb_to_recordset(b.j->'rpc') AS x(record_id text, project_id text, reply jsonb, packet_rec_id bigint)
  ON CONFLICT (record_id) DO NOTHING)
SELECT 1`,
      [
        JSON.stringify({
          people,
          logins,
          dns: this.newDns,
          sites: this.newSites,
          projects,
          history: this.history,
          accounts,
          rpc: this.newRpc,
        }),
      ],
    );
    this.dirtyPeople.clear();
    this.dirtyProjects.clear();
    this.dirtyAccounts.clear();
    this.newLogins.clear();
    this.newDns.length = 0;
    this.newSites.length = 0;
    this.history.length = 0;
    this.newRpc.length = 0;
    this.undo.length = 0;
  }

  // ------------------------------------------------------------------ undoable changes

  private dnSet(personId: string): Set<string> {
    let set = this.dns.get(personId);
    if (!set) {
      set = new Set();
      this.dns.set(personId, set);
    }
    return set;
  }

  private setEntry<K, V>(map: Map<K, V>, k: K, v: V): void {
    const had = map.has(k);
    const old = map.get(k);
    map.set(k, v);
    this.undo.push(() => (had ? map.set(k, old as V) : map.delete(k)));
  }

  private addTo<T>(set: Set<T>, v: T): void {
    if (set.has(v)) return;
    set.add(v);
    this.undo.push(() => set.delete(v));
  }

  private pushTo<T>(list: T[], v: T): void {
    list.push(v);
    this.undo.push(() => list.pop());
  }
}
