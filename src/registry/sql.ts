/**
 * The registry's SQL, one function per operation. Each packet costs few round trips: one
 * lookup that answers every question the handler has (RecordID seen? project? person? which
 * logins are taken? next uid?) and one statement that writes the whole change set.
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

const S = 'amie_toolkit';

/** Serialises registry writers so two runs never pick the same login or uid, or create a person twice. */
export const REGISTRY_LOCK_KEY = 0x414d4952; // 'AMIR'

/**
 * Takes the registry lock until the surrounding transaction ends. It must be a statement of
 * its own: under READ COMMITTED a statement reads the snapshot taken when it started, so a
 * lookup that waited for the lock inside the same statement would not see what the previous
 * holder committed.
 */
export async function lockRegistry(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [REGISTRY_LOCK_KEY]);
}

/** lockRegistry without waiting: false when another transaction holds the lock. */
export async function tryLockRegistry(tx: Queryable): Promise<boolean> {
  const { rows } = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS locked', [
    REGISTRY_LOCK_KEY,
  ]);
  return rows[0]!.locked;
}

/** `$n` resolved through the merge aliases: later packets naming a merged-away id reach the kept person. */
const resolvedId = (param: string) =>
  `coalesce((SELECT pa.person_id FROM ${S}.person_aliases pa WHERE pa.alias = ${param}), ${param})`;

const PERSON_JSON = `SELECT p.*, l.login, l.uid FROM ${S}.people p LEFT JOIN ${S}.logins l ON l.person_id = p.person_id`;

export interface LookupQuery {
  recordId?: string;
  projectId?: string;
  grantNumber?: string;
  personId?: string;
  globalId?: string;
  sitePersonIds?: Array<{ Site?: string; PersonID?: string }>;
  /** Account of the found person on the found project on this resource. */
  resource?: string;
  /**
   * For an RPC on an existing project whose PI packet carries no identifier: the project's PI,
   * when the last name matches, is the same person.
   */
  piLastName?: string;
  /** Logins (and so PersonIDs) to check for being taken. */
  candidates?: string[];
  uidRange: { start: number; end: number };
}

export interface Lookup {
  rpcReply: Record<string, unknown> | null;
  project: RegistryProject | null;
  person: RegistryPerson | null;
  /** Which identifier found the person. */
  personFoundBy: 'PersonID' | 'GlobalID' | 'SitePersonId' | 'ProjectPI' | null;
  /** The person who already holds the GlobalID, if any (may differ from `person`). */
  globalIdOwner: string | null;
  account: RegistryAccount | null;
  taken: Set<string>;
  nextUid: number;
}

export async function lookup(tx: Queryable, q: LookupQuery): Promise<Lookup> {
  const sites = (q.sitePersonIds ?? [])
    .filter((s) => s.Site && s.PersonID)
    .map((s) => ({ site: s.Site, id: s.PersonID }));
  await lockRegistry(tx);
  const { rows } = await tx.query<Record<string, unknown>>(
    `WITH proj AS (SELECT pr.* FROM ${S}.projects pr WHERE pr.project_id = $2::text OR pr.grant_number = $3::text
          ORDER BY (pr.project_id = $2::text) IS TRUE DESC LIMIT 1),
by_id AS (SELECT p.person_id FROM ${S}.people p WHERE p.person_id = ${resolvedId('$4::text')}),
by_global AS (SELECT coalesce(pa.person_id, p.person_id) AS person_id FROM ${S}.people p
                LEFT JOIN ${S}.person_aliases pa ON pa.alias = p.person_id WHERE p.global_id = $5::text),
by_site AS (SELECT coalesce(pa.person_id, s.person_id) AS person_id
              FROM jsonb_to_recordset($6::jsonb) AS x(site text, id text)
              JOIN ${S}.site_person_ids s ON s.site = x.site AND s.site_person_id = x.id
              LEFT JOIN ${S}.person_aliases pa ON pa.alias = s.person_id LIMIT 1),
chosen AS (SELECT person_id, how FROM (
             SELECT person_id, 1 AS rank, 'PersonID' AS how FROM by_id
             UNION ALL SELECT person_id, 2, 'GlobalID' FROM by_global
             UNION ALL SELECT person_id, 3, 'SitePersonId' FROM by_site
             UNION ALL SELECT pp.person_id, 4, 'ProjectPI' FROM proj JOIN ${S}.people pp ON pp.person_id = proj.pi_person_id
                        WHERE lower(pp.last_name) = lower($11::text)) c ORDER BY rank LIMIT 1)
SELECT (SELECT reply FROM ${S}.rpc_records WHERE record_id = $1::text) AS rpc_reply,
  (SELECT row_to_json(proj) FROM proj) AS project,
  (SELECT row_to_json(x) FROM (${PERSON_JSON} WHERE p.person_id = (SELECT person_id FROM chosen)) x) AS person,
  (SELECT how FROM chosen) AS found_by,
  (SELECT person_id FROM by_global LIMIT 1) AS global_owner,
  (SELECT row_to_json(a) FROM ${S}.accounts a WHERE a.person_id = (SELECT person_id FROM chosen)
      AND a.project_id = (SELECT project_id FROM proj) AND a.resource = $7::text) AS account,
  -- One index probe per candidate: plain EXISTS was planned as a hash of the whole logins table
  -- on every packet, a cost growing with the registry; a LIMIT 1 subquery cannot be hashed.
  (SELECT coalesce(array_agg(c), '{}') FROM unnest($8::text[]) AS c
    WHERE (SELECT true FROM ${S}.logins WHERE login = c LIMIT 1)
       OR (SELECT true FROM ${S}.people WHERE person_id = c LIMIT 1)
       OR (SELECT true FROM ${S}.person_aliases WHERE alias = c LIMIT 1)) AS taken,
  (SELECT coalesce(max(uid) + 1, $9::int) FROM ${S}.logins WHERE uid BETWEEN $9::int AND $10::int) AS next_uid`,
    [
      q.recordId ?? null,
      q.projectId ?? null,
      q.grantNumber ?? null,
      q.personId ?? null,
      q.globalId ?? null,
      JSON.stringify(sites),
      q.resource ?? null,
      q.candidates ?? [],
      q.uidRange.start,
      q.uidRange.end,
      q.piLastName ?? null,
    ],
  );
  const r = rows[0]!;
  const person = r.person ? personFromRow(r.person as Record<string, unknown>) : null;
  return {
    rpcReply: (r.rpc_reply as Record<string, unknown> | null) ?? null,
    project: r.project ? projectFromRow(r.project as Record<string, unknown>) : null,
    person,
    personFoundBy: (r.found_by as Lookup['personFoundBy']) ?? null,
    globalIdOwner: (r.global_owner as string | null) ?? null,
    account: r.account
      ? accountFromRow({ ...(r.account as Record<string, unknown>), login: person?.login ?? null })
      : null,
    taken: new Set((r.taken as string[] | null) ?? []),
    nextUid: Number(r.next_uid),
  };
}

/** The ProjectID whose Slurm account `name` is, or null (the unique index would refuse a second one). */
export async function slurmAccountOwner(tx: Queryable, name: string): Promise<string | null> {
  const { rows } = await tx.query<{ project_id: string }>(
    `SELECT project_id FROM ${S}.projects WHERE slurm_account = $1::text`,
    [name],
  );
  return rows[0]?.project_id ?? null;
}

export interface PersonWrite {
  person_id: string;
  global_id?: string | null;
  first_name?: string | null;
  middle_name?: string | null;
  last_name?: string | null;
  email?: string | null;
  organization?: string | null;
  org_code?: string | null;
  details?: Record<string, string>;
}

export interface ProjectWrite {
  project_id: string;
  grant_number: string;
  title: string | null;
  pi_person_id: string;
  resource: string;
  service_units: number;
  start_date: string | null;
  end_date: string | null;
  slurm_account?: string | null;
}

/** Everything one packet changes, written in one statement. */
export interface ChangeSet {
  people?: PersonWrite[];
  logins?: Array<{ login: string; person_id: string; uid: number }>;
  dns?: Array<{ person_id: string; dn: string }>;
  sitePersonIds?: Array<{ site: string; site_person_id: string; person_id: string }>;
  projects?: ProjectWrite[];
  history?: Array<{
    project_id: string;
    resource: string;
    allocation_type: string;
    service_units: number;
    start_date: string | null;
    end_date: string | null;
    record_id: string | null;
    packet_rec_id: number | null;
  }>;
  /** Upserted; only rows whose state changes (or that are new) come back. */
  accounts?: Array<{ person_id: string; project_id: string; resource: string; active: boolean }>;
  rpcRecord?: { record_id: string; project_id: string; reply: Record<string, unknown>; packet_rec_id: number };
}

export interface Applied {
  dnsAdded: Array<{ personId: string; dn: string }>;
  /** Accounts created or whose active state changed, with `created` telling which. */
  accounts: Array<RegistryAccount & { created: boolean }>;
}

export async function applyChanges(tx: Queryable, cs: ChangeSet): Promise<Applied> {
  const { rows } = await tx.query<{
    dns: Array<{ person_id: string; dn: string }>;
    accounts: Array<Record<string, unknown>>;
  }>(
    `WITH cs AS (SELECT $1::jsonb AS j),
people_up AS (
  INSERT INTO ${S}.people (person_id, global_id, first_name, middle_name, last_name, email, organization, org_code, details)
  SELECT x.person_id, x.global_id, coalesce(x.first_name, ''), x.middle_name, coalesce(x.last_name, ''), x.email, x.organization, x.org_code, coalesce(x.details, '{}'::jsonb)
    FROM cs, jsonb_to_recordset(cs.j->'people') AS x(person_id text, global_id text, first_name text, middle_name text, last_name text,
                                                     email text, organization text, org_code text, details jsonb)
  ON CONFLICT (person_id) DO UPDATE SET
    global_id = coalesce(people.global_id, excluded.global_id),
    first_name = CASE WHEN excluded.first_name = '' THEN people.first_name ELSE excluded.first_name END,
    middle_name = coalesce(excluded.middle_name, people.middle_name),
    last_name = CASE WHEN excluded.last_name = '' THEN people.last_name ELSE excluded.last_name END,
    email = coalesce(excluded.email, people.email),
    organization = coalesce(excluded.organization, people.organization),
    org_code = coalesce(excluded.org_code, people.org_code),
    details = people.details || excluded.details,
    updated_at = now()
  RETURNING 1),
logins_in AS (
  INSERT INTO ${S}.logins (login, person_id, uid)
  SELECT x.login, x.person_id, x.uid FROM cs, jsonb_to_recordset(cs.j->'logins') AS x(login text, person_id text, uid int)
  RETURNING 1),
dns_in AS (
  INSERT INTO ${S}.person_dns (person_id, dn)
  SELECT DISTINCT x.person_id, x.dn FROM cs, jsonb_to_recordset(cs.j->'dns') AS x(person_id text, dn text)
  ON CONFLICT DO NOTHING RETURNING person_id, dn),
sites_in AS (
  INSERT INTO ${S}.site_person_ids (site, site_person_id, person_id)
  SELECT DISTINCT x.site, x.site_person_id, x.person_id FROM cs, jsonb_to_recordset(cs.j->'sitePersonIds') AS x(site text, site_person_id text, person_id text)
  ON CONFLICT DO NOTHING RETURNING 1),
projects_up AS (
  INSERT INTO ${S}.projects (project_id, grant_number, title, pi_person_id, resource, service_units, start_date, end_date, slurm_account)
  SELECT x.project_id, x.grant_number, x.title, x.pi_person_id, x.resource, x.service_units, x.start_date::date, x.end_date::date, x.slurm_account
    FROM cs, jsonb_to_recordset(cs.j->'projects') AS x(project_id text, grant_number text, title text, pi_person_id text, resource text,
                                                       service_units numeric, start_date text, end_date text, slurm_account text)
  ON CONFLICT (project_id) DO UPDATE SET
    title = coalesce(excluded.title, projects.title),
    slurm_account = coalesce(projects.slurm_account, excluded.slurm_account),
    pi_person_id = excluded.pi_person_id,
    service_units = excluded.service_units,
    start_date = excluded.start_date,
    end_date = excluded.end_date,
    updated_at = now()
  RETURNING 1),
history_in AS (
  INSERT INTO ${S}.allocation_history (project_id, resource, allocation_type, service_units, start_date, end_date, record_id, packet_rec_id)
  SELECT x.project_id, x.resource, x.allocation_type, x.service_units, x.start_date::date, x.end_date::date, x.record_id, x.packet_rec_id
    FROM cs, jsonb_to_recordset(cs.j->'history') AS x(project_id text, resource text, allocation_type text, service_units numeric,
                                                      start_date text, end_date text, record_id text, packet_rec_id bigint)
  RETURNING 1),
accounts_up AS (
  INSERT INTO ${S}.accounts (person_id, project_id, resource, active)
  SELECT x.person_id, x.project_id, x.resource, x.active
    FROM cs, jsonb_to_recordset(cs.j->'accounts') AS x(person_id text, project_id text, resource text, active boolean)
  ON CONFLICT (person_id, project_id, resource) DO UPDATE SET active = excluded.active, updated_at = now()
    WHERE accounts.active IS DISTINCT FROM excluded.active
  RETURNING person_id, project_id, resource, active, (xmax = 0) AS created),
rpc_in AS (
  INSERT INTO ${S}.rpc_records (record_id, project_id, reply, packet_rec_id)
  SELECT cs.j->'rpcRecord'->>'record_id', cs.j->'rpcRecord'->>'project_id', cs.j->'rpcRecord'->'reply', (cs.j->'rpcRecord'->>'packet_rec_id')::bigint
    FROM cs WHERE cs.j ? 'rpcRecord'
  ON CONFLICT (record_id) DO NOTHING RETURNING 1)
SELECT (SELECT coalesce(json_agg(d), '[]'::json) FROM dns_in d) AS dns,
       (SELECT coalesce(json_agg(a), '[]'::json) FROM accounts_up a) AS accounts`,
    [JSON.stringify(cs)],
  );
  const r = rows[0]!;
  const logins = new Map((cs.logins ?? []).map((l) => [l.person_id, l.login]));
  return {
    dnsAdded: r.dns.map((d) => ({ personId: d.person_id, dn: d.dn })),
    accounts: r.accounts.map((a) => ({
      ...accountFromRow({ ...a, login: logins.get(String(a.person_id)) ?? null }),
      created: a.created === true,
    })),
  };
}

/** Sets a project's state. Inactivation takes every account with it; reactivation brings back the PI's account on `resource` only. */
export async function setProjectState(
  tx: Queryable,
  projectId: string,
  active: boolean,
  resource: string,
): Promise<{ project: RegistryProject | null; accounts: Array<RegistryAccount & { created: boolean }> }> {
  const accountsSql = active
    ? `INSERT INTO ${S}.accounts (person_id, project_id, resource, active)
         SELECT p.pi_person_id, p.project_id, $3::text, true FROM p
       ON CONFLICT (person_id, project_id, resource) DO UPDATE SET active = true, updated_at = now() WHERE NOT accounts.active
       RETURNING person_id, project_id, resource, active, (xmax = 0) AS created`
    : `UPDATE ${S}.accounts SET active = false, updated_at = now()
        WHERE project_id IN (SELECT project_id FROM p) AND active
       RETURNING person_id, project_id, resource, active, false AS created`;
  const { rows } = await tx.query<{
    project: Record<string, unknown> | null;
    accounts: Array<Record<string, unknown>>;
  }>(
    `WITH p AS (UPDATE ${S}.projects SET active = $2::boolean, updated_at = now() WHERE project_id = $1::text RETURNING *),
a AS (${accountsSql})
SELECT (SELECT row_to_json(p) FROM p) AS project,
       (SELECT coalesce(json_agg(json_build_object('person_id', a.person_id, 'project_id', a.project_id, 'resource', a.resource,
                                                   'active', a.active, 'created', a.created, 'login', l.login)), '[]'::json)
          FROM a LEFT JOIN ${S}.logins l ON l.person_id = a.person_id) AS accounts`,
    active ? [projectId, active, resource] : [projectId, active],
  );
  const r = rows[0]!;
  return {
    project: r.project ? projectFromRow(r.project) : null,
    accounts: r.accounts.map((a) => ({ ...accountFromRow(a), created: a.created === true })),
  };
}

/** Sets one account's state. `account` is null when the person has no account there; `changed` tells whether it moved. */
export async function setAccountState(
  tx: Queryable,
  personId: string,
  projectId: string,
  resource: string,
  active: boolean,
): Promise<{ account: RegistryAccount | null; changed: boolean; personKnown: boolean; projectKnown: boolean }> {
  const { rows } = await tx.query<{
    account: Record<string, unknown> | null;
    changed: boolean;
    person_known: boolean;
    project_known: boolean;
  }>(
    `WITH pid AS (SELECT ${resolvedId('$1::text')} AS id),
cur AS (SELECT a.* FROM ${S}.accounts a, pid WHERE a.person_id = pid.id AND a.project_id = $2::text AND a.resource = $3::text),
upd AS (UPDATE ${S}.accounts a SET active = $4::boolean, updated_at = now() FROM cur
         WHERE a.person_id = cur.person_id AND a.project_id = cur.project_id AND a.resource = cur.resource AND a.active <> $4::boolean
         RETURNING a.person_id)
SELECT (SELECT row_to_json(x) FROM (SELECT cur.person_id, cur.project_id, cur.resource, $4::boolean AS active, l.login
                                      FROM cur LEFT JOIN ${S}.logins l ON l.person_id = cur.person_id) x) AS account,
       EXISTS (SELECT 1 FROM upd) AS changed,
       EXISTS (SELECT 1 FROM ${S}.people, pid WHERE person_id = pid.id) AS person_known,
       EXISTS (SELECT 1 FROM ${S}.projects WHERE project_id = $2::text) AS project_known`,
    [personId, projectId, resource, active],
  );
  const r = rows[0]!;
  return {
    account: r.account ? accountFromRow(r.account) : null,
    changed: r.changed,
    personKnown: r.person_known,
    projectKnown: r.project_known,
  };
}

export interface PersonChanges {
  first_name?: string;
  middle_name?: string;
  last_name?: string;
  email?: string;
  organization?: string;
  org_code?: string;
  details?: Record<string, string>;
}

/** Updates a person's details and DNs (aliases followed). `person` is null for an unknown PersonID. */
export async function modifyPerson(
  tx: Queryable,
  personId: string,
  changes: PersonChanges,
  addDns: readonly string[],
  removeDns: readonly string[],
): Promise<{ person: RegistryPerson | null; added: string[]; removed: string[] }> {
  const { rows } = await tx.query<{
    person: Record<string, unknown> | null;
    added: string[] | null;
    removed: string[] | null;
  }>(
    `WITH c AS (SELECT $2::jsonb AS j),
p AS (UPDATE ${S}.people SET
        first_name = coalesce(c.j->>'first_name', first_name),
        middle_name = coalesce(c.j->>'middle_name', middle_name),
        last_name = coalesce(c.j->>'last_name', last_name),
        email = coalesce(c.j->>'email', email),
        organization = coalesce(c.j->>'organization', organization),
        org_code = coalesce(c.j->>'org_code', org_code),
        details = details || coalesce(c.j->'details', '{}'::jsonb),
        updated_at = now()
      FROM c WHERE person_id = ${resolvedId('$1::text')}
      RETURNING people.*),
added AS (INSERT INTO ${S}.person_dns (person_id, dn) SELECT DISTINCT p.person_id, d FROM p, unnest($3::text[]) AS d
          ON CONFLICT DO NOTHING RETURNING dn),
removed AS (DELETE FROM ${S}.person_dns WHERE person_id = (SELECT person_id FROM p) AND dn = ANY($4::text[]) RETURNING dn)
SELECT (SELECT row_to_json(x) FROM (SELECT p.*, l.login, l.uid FROM p LEFT JOIN ${S}.logins l ON l.person_id = p.person_id) x) AS person,
       (SELECT array_agg(dn) FROM added) AS added,
       (SELECT array_agg(dn) FROM removed) AS removed`,
    [personId, JSON.stringify(changes), [...addDns], [...removeDns]],
  );
  const r = rows[0]!;
  return { person: r.person ? personFromRow(r.person) : null, added: r.added ?? [], removed: r.removed ?? [] };
}

/** Finds the two people of a merge: by PersonID (aliases followed), else by GlobalID. */
export async function findMergePair(
  tx: Queryable,
  keep: { personId: string; globalId?: string },
  del: { personId: string; globalId?: string },
): Promise<{ keep: RegistryPerson | null; del: RegistryPerson | null; delAlreadyMergedInto: string | null }> {
  const find = (idParam: string, gidParam: string) =>
    `(SELECT row_to_json(x) FROM (${PERSON_JSON}
        WHERE p.person_id = coalesce((SELECT person_id FROM ${S}.people WHERE person_id = ${resolvedId(idParam)}),
                                     (SELECT coalesce(pa.person_id, g.person_id) FROM ${S}.people g
                                        LEFT JOIN ${S}.person_aliases pa ON pa.alias = g.person_id WHERE g.global_id = ${gidParam}))) x)`;
  await lockRegistry(tx);
  const { rows } = await tx.query<{
    keep: Record<string, unknown> | null;
    del: Record<string, unknown> | null;
    merged: string | null;
  }>(
    `SELECT ${find('$1::text', '$2::text')} AS keep,
            (SELECT row_to_json(x) FROM (${PERSON_JSON} WHERE p.person_id = $3::text
                OR (p.global_id = $4::text AND NOT EXISTS (SELECT 1 FROM ${S}.people q WHERE q.person_id = $3::text))) x
              WHERE NOT EXISTS (SELECT 1 FROM ${S}.person_aliases WHERE alias = x.person_id) LIMIT 1) AS del,
            (SELECT person_id FROM ${S}.person_aliases WHERE alias = $3::text) AS merged`,
    [keep.personId, keep.globalId ?? null, del.personId, del.globalId ?? null],
  );
  const r = rows[0]!;
  return {
    keep: r.keep ? personFromRow(r.keep) : null,
    del: r.del ? personFromRow(r.del) : null,
    delAlreadyMergedInto: r.merged,
  };
}

/**
 * Folds `delId` into `keepId`: accounts (an account both have stays active if either was),
 * DNs, SitePersonId entries, PI roles and earlier aliases move over; `delId` becomes an alias.
 * The deleted person's row and login stay, so the login is never handed to anyone else.
 */
export async function mergePeople(
  tx: Queryable,
  keepId: string,
  delId: string,
): Promise<{ accounts: RegistryAccount[]; piProjects: string[] }> {
  const { rows } = await tx.query<{ accounts: Array<Record<string, unknown>>; pi_projects: string[] | null }>(
    `WITH moved AS (DELETE FROM ${S}.accounts WHERE person_id = $2::text RETURNING project_id, resource, active),
ins AS (INSERT INTO ${S}.accounts (person_id, project_id, resource, active)
        SELECT $1::text, project_id, resource, active FROM moved
        ON CONFLICT (person_id, project_id, resource) DO UPDATE SET active = accounts.active OR excluded.active, updated_at = now()
        RETURNING person_id, project_id, resource, active),
dns_moved AS (DELETE FROM ${S}.person_dns WHERE person_id = $2::text RETURNING dn),
dns_in AS (INSERT INTO ${S}.person_dns (person_id, dn) SELECT $1::text, dn FROM dns_moved ON CONFLICT DO NOTHING RETURNING 1),
sites AS (UPDATE ${S}.site_person_ids SET person_id = $1::text WHERE person_id = $2::text RETURNING 1),
old_aliases AS (UPDATE ${S}.person_aliases SET person_id = $1::text WHERE person_id = $2::text RETURNING 1),
alias AS (INSERT INTO ${S}.person_aliases (alias, person_id) VALUES ($2::text, $1::text)
          ON CONFLICT (alias) DO UPDATE SET person_id = excluded.person_id RETURNING 1),
pi AS (UPDATE ${S}.projects SET pi_person_id = $1::text, updated_at = now() WHERE pi_person_id = $2::text RETURNING project_id)
SELECT (SELECT coalesce(json_agg(json_build_object('person_id', ins.person_id, 'project_id', ins.project_id, 'resource', ins.resource,
                                                   'active', ins.active, 'login', l.login)), '[]'::json)
          FROM ins LEFT JOIN ${S}.logins l ON l.person_id = ins.person_id) AS accounts,
       (SELECT array_agg(project_id) FROM pi) AS pi_projects`,
    [keepId, delId],
  );
  const r = rows[0]!;
  return { accounts: r.accounts.map(accountFromRow), piProjects: r.pi_projects ?? [] };
}

// ---- reading, for the CLI and the demo ----

export interface PersonListing extends RegistryPerson {
  dns: string[];
  aliases: string[];
  /** Set when this person was merged into another. */
  mergedInto: string | null;
}

export async function listPeople(q: Queryable, opts: { includeMerged?: boolean } = {}): Promise<PersonListing[]> {
  const { rows } = await q.query<{ p: Record<string, unknown> }>(
    `SELECT row_to_json(x) AS p FROM (
       SELECT p.*, l.login, l.uid,
              coalesce((SELECT array_agg(dn ORDER BY dn COLLATE "C") FROM ${S}.person_dns d WHERE d.person_id = p.person_id), '{}') AS dns,
              coalesce((SELECT array_agg(alias ORDER BY alias COLLATE "C") FROM ${S}.person_aliases a WHERE a.person_id = p.person_id), '{}') AS aliases,
              (SELECT person_id FROM ${S}.person_aliases a WHERE a.alias = p.person_id) AS merged_into
         FROM ${S}.people p LEFT JOIN ${S}.logins l ON l.person_id = p.person_id
        ORDER BY p.person_id COLLATE "C") x
      WHERE $1::boolean OR x.merged_into IS NULL`,
    [opts.includeMerged ?? false],
  );
  return rows.map(({ p }) => ({
    ...personFromRow(p),
    dns: (p.dns as string[]) ?? [],
    aliases: (p.aliases as string[]) ?? [],
    mergedInto: (p.merged_into as string | null) ?? null,
  }));
}

export async function listProjects(q: Queryable): Promise<Array<RegistryProject & { piLogin: string | null }>> {
  const { rows } = await q.query<{ p: Record<string, unknown> }>(
    `SELECT row_to_json(x) AS p FROM (
       SELECT pr.*, l.login AS pi_login FROM ${S}.projects pr LEFT JOIN ${S}.logins l ON l.person_id = pr.pi_person_id
        ORDER BY pr.project_id COLLATE "C") x`,
  );
  return rows.map(({ p }) => ({ ...projectFromRow(p), piLogin: (p.pi_login as string | null) ?? null }));
}

export async function listAccounts(
  q: Queryable,
  filter: { personId?: string; projectId?: string } = {},
): Promise<Array<RegistryAccount & { grantNumber: string }>> {
  const { rows } = await q.query<{ a: Record<string, unknown> }>(
    `SELECT row_to_json(x) AS a FROM (
       SELECT a.person_id, a.project_id, a.resource, a.active, l.login, pr.grant_number
         FROM ${S}.accounts a
         JOIN ${S}.projects pr ON pr.project_id = a.project_id
         LEFT JOIN ${S}.logins l ON l.person_id = a.person_id
        WHERE ($1::text IS NULL OR a.person_id = ${resolvedId('$1::text')})
          AND ($2::text IS NULL OR a.project_id = $2::text)
        ORDER BY a.project_id COLLATE "C", a.person_id COLLATE "C", a.resource COLLATE "C") x`,
    [filter.personId ?? null, filter.projectId ?? null],
  );
  return rows.map(({ a }) => ({ ...accountFromRow(a), grantNumber: String(a.grant_number) }));
}

export async function allocationHistory(q: Queryable, projectId: string) {
  const { rows } = await q.query<{ h: Record<string, unknown> }>(
    `SELECT row_to_json(h) AS h FROM (SELECT allocation_type, service_units, start_date, end_date, record_id, at
       FROM ${S}.allocation_history WHERE project_id = $1::text ORDER BY history_id) h`,
    [projectId],
  );
  return rows.map(({ h }) => ({
    allocationType: String(h.allocation_type),
    serviceUnits: h.service_units === null ? null : Number(h.service_units),
    startDate: h.start_date === null ? null : String(h.start_date).slice(0, 10),
    endDate: h.end_date === null ? null : String(h.end_date).slice(0, 10),
    recordId: (h.record_id as string | null) ?? null,
    at: String(h.at),
  }));
}

/**
 * What `amie registry show` finds for a key: a person by PersonID, alias or login, or a project
 * by ProjectID or GrantNumber.
 */
export async function findRegistryKey(
  q: Queryable,
  key: string,
): Promise<{ personId: string | null; projectId: string | null }> {
  const { rows } = await q.query<{ person_id: string | null; project_id: string | null }>(
    `SELECT coalesce((SELECT person_id FROM ${S}.people WHERE person_id = ${resolvedId('$1::text')}),
                     (SELECT person_id FROM ${S}.logins WHERE login = $1::text)) AS person_id,
            (SELECT project_id FROM ${S}.projects WHERE project_id = $1::text OR grant_number = $1::text
              ORDER BY (project_id = $1::text) DESC LIMIT 1) AS project_id`,
    [key],
  );
  return { personId: rows[0]?.person_id ?? null, projectId: rows[0]?.project_id ?? null };
}
