/** The registry's records as handlers, hooks and the CLI see them (camelCase, plain values). */

export interface RegistryPerson {
  personId: string;
  globalId: string | null;
  firstName: string;
  middleName: string | null;
  lastName: string;
  email: string | null;
  organization: string | null;
  orgCode: string | null;
  /** Other contact details from the packets (phone, address, NsfStatusCode …), by AMIE tag without prefix. */
  details: Record<string, string>;
  login: string | null;
  uid: number | null;
}

export interface RegistryLogin {
  login: string;
  personId: string;
  uid: number;
}

export interface RegistryProject {
  projectId: string;
  grantNumber: string;
  title: string | null;
  piPersonId: string;
  resource: string;
  active: boolean;
  serviceUnits: number;
  /** ISO dates (YYYY-MM-DD). */
  startDate: string | null;
  endDate: string | null;
  /** The Slurm account its jobs are charged to, when the handler names one (never changes once set). */
  slurmAccount: string | null;
}

export interface RegistryAccount {
  personId: string;
  projectId: string;
  resource: string;
  active: boolean;
  login: string | null;
}

/** One allocation action of an RPC, as applied to the project. */
export interface AllocationChange {
  allocationType: string;
  /** ServiceUnitsAllocated as the RPC carried it. */
  requestedUnits: number;
  /** The project's allocation before and after the action. */
  before: { serviceUnits: number; startDate: string | null; endDate: string | null } | null;
  after: { serviceUnits: number; startDate: string | null; endDate: string | null };
  recordId: string | null;
}

type Row = Record<string, unknown>;

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const date = (v: unknown): string | null => (v === null || v === undefined ? null : String(v).slice(0, 10));

export function personFromRow(r: Row): RegistryPerson {
  return {
    personId: String(r.person_id),
    globalId: str(r.global_id),
    firstName: String(r.first_name ?? ''),
    middleName: str(r.middle_name),
    lastName: String(r.last_name ?? ''),
    email: str(r.email),
    organization: str(r.organization),
    orgCode: str(r.org_code),
    details: (r.details as Record<string, string> | null) ?? {},
    login: str(r.login),
    uid: r.uid === null || r.uid === undefined ? null : Number(r.uid),
  };
}

export function projectFromRow(r: Row): RegistryProject {
  return {
    projectId: String(r.project_id),
    grantNumber: String(r.grant_number),
    title: str(r.title),
    piPersonId: String(r.pi_person_id),
    resource: String(r.resource),
    active: r.active === true || r.active === 't',
    serviceUnits: Number(r.service_units ?? 0),
    startDate: date(r.start_date),
    endDate: date(r.end_date),
    slurmAccount: str(r.slurm_account),
  };
}

export function accountFromRow(r: Row): RegistryAccount {
  return {
    personId: String(r.person_id),
    projectId: String(r.project_id),
    resource: String(r.resource),
    active: r.active === true || r.active === 't',
    login: str(r.login),
  };
}
