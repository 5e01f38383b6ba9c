/**
 * Realistic request data. Central's people have apostrophes, accents, spaces and hyphens in
 * their names, sometimes no requested login at all, several DNs, portal SitePersonIds and
 * AcademicDegree entries; a handler that only ever saw "John Doe" is not ready.
 */
import { randomInt } from 'node:crypto';
import type { TagValue } from '../protocol/index.js';

export interface SimPerson {
  firstName: string;
  middleName?: string;
  lastName: string;
  organization: string;
  orgCode: string;
  email: string;
  globalId: string;
  /** What central puts in *RequestedLoginList: often one empty value. */
  requestedLogins: string[];
  dns: string[];
  portalLogin: string;
}

const NAMES: ReadonlyArray<
  Omit<SimPerson, 'globalId' | 'email' | 'dns' | 'portalLogin' | 'requestedLogins'> & { login: string }
> = [
  {
    firstName: 'Seán',
    lastName: "O'Brien-Ní Dhomhnaill",
    organization: 'Université de Montréal',
    orgCode: '0034567',
    login: 'sobrien',
  },
  {
    firstName: 'José María',
    middleName: 'de la',
    lastName: 'Cruz Núñez',
    organization: 'Universidad Nacional Autónoma de México',
    orgCode: '0098765',
    login: 'jcruz',
  },
  {
    firstName: 'Zoë',
    lastName: "D'Angelo",
    organization: "St. Mary's College of Maryland",
    orgCode: '0021043',
    login: 'zdangelo',
  },
  {
    firstName: 'Mary Ann',
    middleName: 'K.',
    lastName: 'Smith-Jones',
    organization: 'Carnegie Mellon University',
    orgCode: '0032420',
    login: 'msmithjones',
  },
  {
    firstName: 'Björn',
    lastName: 'Ødegård',
    organization: 'Norges teknisk-naturvitenskapelige universitet',
    orgCode: '0070011',
    login: 'bodegard',
  },
  {
    firstName: 'Nguyễn',
    lastName: 'Thị Minh Khai',
    organization: 'University of Texas at Austin',
    orgCode: '0036582',
    login: 'nkhai',
  },
];

/**
 * Whether a request is one the simulator wrote: its RecordID (`SIM-…`) or GrantNumber
 * (`TG-SIM…`) carries the simulator's mark. Real central requests never do.
 */
export function isSimulatedRequest(body: { get(tag: string): string | undefined }): boolean {
  return (
    /^SIM-[0-9A-Z]+-\d+$/.test(body.get('RecordID') ?? '') || /^TG-SIM[0-9A-Z]+$/.test(body.get('GrantNumber') ?? '')
  );
}

/** Fresh identifiers for one scenario run, so runs on the same database never meet. */
export class SimData {
  /** Upper-case letters and digits, unique per run. */
  readonly suffix: string;
  readonly #globalBase: string;
  #people = 0;
  #grants = 0;
  #records = 0;

  /** `offset` picks where in the list of names this run's people start, so runs differ. */
  constructor(
    readonly resource: string,
    suffix?: string,
    private readonly offset = 0,
  ) {
    // Time and chance together keep reruns on one database apart without a counter to store.
    this.suffix =
      suffix ??
      `${Date.now().toString(36).slice(-5)}${randomInt(36 ** 3)
        .toString(36)
        .padStart(3, '0')}`.toUpperCase();
    this.#globalBase = `${Date.now() % 10 ** 9}${randomInt(1000).toString().padStart(3, '0')}`;
  }

  person(opts: { requestedLogin?: boolean } = {}): SimPerson {
    const n = this.#people++;
    const base = NAMES[(n + this.offset) % NAMES.length]!;
    const tag = `${this.suffix.toLowerCase()}${n}`;
    const cn = `${base.firstName} ${base.lastName}`;
    return {
      firstName: base.firstName,
      ...(base.middleName ? { middleName: base.middleName } : {}),
      lastName: base.lastName,
      organization: base.organization,
      orgCode: base.orgCode,
      email: `${base.login}.${tag}@example.edu`,
      globalId: `${this.#globalBase}${n}`,
      requestedLogins: opts.requestedLogin ? [`${base.login}${n}`] : [''],
      dns: [
        `/C=US/O=${base.organization}/OU=People/CN=${cn}`,
        `/DC=org/DC=cilogon/C=US/O=${base.organization}/CN=${cn} A${tag}`,
      ],
      portalLogin: `${base.login}_${tag}`,
    };
  }

  grantNumber(): string {
    return `TG-SIM${this.suffix}${this.#grants++}`;
  }

  recordId(): string {
    return `SIM-${this.suffix}-${this.#records++}`;
  }

  /** A request_project_create for a new project led by `pi`. */
  rpc(pi: SimPerson, overrides: Record<string, TagValue> = {}): Record<string, TagValue> {
    const start = new Date();
    const end = new Date(start.getTime() + 365 * 24 * 3600 * 1000);
    return {
      AllocationType: 'new',
      GrantNumber: this.grantNumber(),
      RecordID: this.recordId(),
      StartDate: start.toISOString().slice(0, 10),
      EndDate: end.toISOString().slice(0, 10),
      ServiceUnitsAllocated: '50000',
      ResourceList: [this.resource],
      ProjectTitle: `Turbulent mixing in the St. Lawrence estuary: "what's next?" (${this.suffix})`,
      Abstract: 'Large-eddy simulation of estuarine mixing; résumé of earlier work attached.',
      PfosNumber: '1234567',
      BoardType: 'Startup',
      NsfStatusCode: 'FA',
      PiFirstName: pi.firstName,
      ...(pi.middleName ? { PiMiddleName: pi.middleName } : {}),
      PiLastName: pi.lastName,
      PiOrganization: pi.organization,
      PiOrgCode: pi.orgCode,
      PiDepartment: 'Earth & Planetary Sciences',
      PiEmail: pi.email,
      PiBusinessPhoneNumber: '+1 412 555 0100',
      PiGlobalID: pi.globalId,
      PiRequestedLoginList: pi.requestedLogins,
      PiDnList: pi.dns,
      SitePersonId: [
        { Site: 'X-PORTAL', PersonID: pi.portalLogin },
        { Site: 'ACCESS-CI', PersonID: `${pi.portalLogin}@access-ci.org` },
      ],
      AcademicDegree: [
        { Degree: 'PhD', Field: 'Physical Oceanography' },
        { Degree: 'MS', Field: 'Applied Mathematics' },
      ],
      ...overrides,
    };
  }

  /** A request_account_create adding `user` to a project. */
  rac(
    user: SimPerson,
    project: { grantNumber: string; projectId?: string },
    overrides: Record<string, TagValue> = {},
  ): Record<string, TagValue> {
    return {
      GrantNumber: project.grantNumber,
      ...(project.projectId ? { ProjectID: project.projectId } : {}),
      ResourceList: [this.resource],
      UserFirstName: user.firstName,
      ...(user.middleName ? { UserMiddleName: user.middleName } : {}),
      UserLastName: user.lastName,
      UserOrganization: user.organization,
      UserOrgCode: user.orgCode,
      UserEmail: user.email,
      UserGlobalID: user.globalId,
      UserRequestedLoginList: user.requestedLogins,
      UserDnList: user.dns,
      NsfStatusCode: 'GS',
      RoleList: ['allocation_manager'],
      SitePersonId: [{ Site: 'X-PORTAL', PersonID: user.portalLogin }],
      AcademicDegree: [{ Degree: 'BS', Field: 'Computer Science' }],
      ...overrides,
    };
  }
}
