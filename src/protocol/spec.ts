/**
 * What each of the 31 AMIE packet types may carry and how conversations chain. The tag lists are
 * `as const` on purpose: tags.ts derives the typed view handlers see from them, so a tag added
 * here is at once known to validation, to unexpected-tag reports and to autocompletion.
 */
import { PACKET_TYPE_IDS, packetTypeName, type PacketTypeName } from './ids.js';

/** Multi-valued tags: seq 0, 1, 2 … with a null subtag; on the REST API an array of strings. */
export const LIST_TAG_NAMES = [
  'CitizenshipList',
  'DnList',
  'PersonIDList',
  'PiDnList',
  'PiRequestedLoginList',
  'RemoveResourceList',
  'ResourceList',
  'RoleList',
  'UserDnList',
  'UserRequestedLoginList',
] as const;
export type ListTag = (typeof LIST_TAG_NAMES)[number];
export const LIST_TAGS: ReadonlySet<string> = new Set<string>(LIST_TAG_NAMES);

/** Composite tags: the rows of one entry share a seq and differ by subtag. */
export const COMPOSITE_SUBTAGS = {
  AcademicDegree: ['Degree', 'Field'],
  JobIdentity: ['LocalJobID'],
  RecordIdentity: ['RecordID', 'CreateTime'],
  SitePersonId: ['PersonID', 'Site'],
} as const;
export type CompositeTag = keyof typeof COMPOSITE_SUBTAGS;
/** Null prototype: looked up by packet text, where `constructor` must find nothing. */
export const COMPOSITE_TAGS: Readonly<Record<string, readonly string[]>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, readonly string[]>, COMPOSITE_SUBTAGS),
);

/** The subtags of a composite tag; undefined for any other tag, whatever its name. */
export function compositeSubtags(tag: string): readonly string[] | undefined {
  return Object.hasOwn(COMPOSITE_TAGS, tag) ? COMPOSITE_TAGS[tag] : undefined;
}

/** Calendar dates; a full timestamp is accepted too, as central has sent both forms. */
export const DATE_TAGS: ReadonlySet<string> = new Set(['StartDate', 'EndDate']);
/**
 * Points in time. A composite part is named `Tag/Subtag`, since the same subtag name may mean
 * something else under another tag.
 */
export const TIME_TAGS: ReadonlySet<string> = new Set([
  'AccountActivityTime',
  'SubmitTime',
  'StartTime',
  'EndTime',
  'RecordIdentity/CreateTime',
]);
/** Tags whose text must parse as a number (AMIE carries numbers as text). */
export const NUMERIC_TAGS: ReadonlySet<string> = new Set([
  'ServiceUnitsAllocated',
  'ServiceUnitsRemaining',
  'Charge',
  'NodeCount',
  'Processors',
]);
/** ISO 8601 durations, e.g. `PT3600S`. */
export const DURATION_TAGS: ReadonlySet<string> = new Set(['WallDuration']);

const CONTACT_FIELDS = [
  'BusinessPhoneComment',
  'BusinessPhoneExtension',
  'BusinessPhoneNumber',
  'City',
  'Country',
  'Department',
  'Email',
  'Fax',
  'HomePhoneComment',
  'HomePhoneExtension',
  'HomePhoneNumber',
  'MiddleName',
  'State',
  'StreetAddress',
  'StreetAddress2',
  'Title',
  'Zip',
] as const;
type ContactField = (typeof CONTACT_FIELDS)[number];

function contactTags<P extends string>(prefix: P): readonly `${P}${ContactField}`[] {
  return CONTACT_FIELDS.map((field): `${P}${ContactField}` => `${prefix}${field}`);
}
/** The doc's "Pi* contact tags". */
export const PI_CONTACT_TAGS = contactTags('Pi');
/** The doc's "User* contact tags". */
export const USER_CONTACT_TAGS = contactTags('User');
/** request_user_modify speaks of "the person", so its contact tags carry no prefix. */
export const PERSON_CONTACT_TAGS = contactTags('');

interface TagLists {
  readonly required: readonly string[];
  readonly allowed: readonly string[];
  readonly inferFromRequest?: Readonly<Record<string, string>>;
  /** The protocol reference gives no tag list for this type: any tag is accepted without report. */
  readonly lenient?: true;
}

const ACCOUNT_STATE_TAGS = {
  required: ['PersonID', 'ProjectID', 'ResourceList'],
  allowed: ['Comment'],
} as const;
/*
 * `inferFromRequest` is what the server fills in from the packet a reply answers
 * (amieclient's `_data_keys_not_required_in_reply`). amieclient fills all three tags of a
 * notify_account_inactivate but none of a notify_account_reactivate, which answers the same kind
 * of request: both take them over here.
 */
const NOTIFY_ACCOUNT_STATE_TAGS = {
  ...ACCOUNT_STATE_TAGS,
  inferFromRequest: { PersonID: 'PersonID', ProjectID: 'ProjectID', ResourceList: 'ResourceList' },
} as const;
/*
 * amieclient lets the server fill Comment and PersonID of a notify_project_inactivate/reactivate
 * from the request, though it lists neither as a tag these types carry: they are allowed here.
 */
const NOTIFY_PROJECT_STATE_TAGS = {
  required: ['ProjectID', 'ResourceList'],
  allowed: ['Comment', 'PersonID'],
  inferFromRequest: { Comment: 'Comment', PersonID: 'PersonID', ProjectID: 'ProjectID', ResourceList: 'ResourceList' },
} as const;
const PROJECT_STATE_REQUEST_ALLOWED = [
  'Comment',
  'AllocatedResource',
  'GrantNumber',
  'StartDate',
  'EndDate',
  'ServiceUnitsAllocated',
  'ServiceUnitsRemaining',
] as const;
// Central's packets: amieclient's fill-in list for data_project_create (GlobalID, PersonID) concerns
// a packet the site never sends, and names GlobalID, which the type does not carry.
const DATA_CREATE_TAGS = { required: ['PersonID', 'ProjectID'], allowed: ['DnList'] } as const;

/*
 * Types the protocol reference names but gives no tags for (the *_modify, *_resources,
 * *_user_* families that sites rarely see): nothing is required, a plausible set of tags is
 * offered for autocompletion, and `lenient` keeps any other tag from being reported.
 */
const PROJECT_CHANGE_TAGS = {
  required: [],
  allowed: [
    'ProjectID',
    'GrantNumber',
    'ResourceList',
    'ProjectTitle',
    'Abstract',
    'AllocationType',
    'StartDate',
    'EndDate',
    'ServiceUnitsAllocated',
    'ServiceUnitsRemaining',
    'Comment',
  ],
  lenient: true,
} as const;
/** request_user_modify's tags, which amieclient lists for notify_user_modify too (see there). */
const USER_MODIFY_ALLOWED = [
  'FirstName',
  'LastName',
  'Organization',
  'OrgCode',
  ...PERSON_CONTACT_TAGS,
  'AcademicDegree',
  'DnList',
  'NsfStatusCode',
  'CitizenshipList',
] as const;
const USER_CHANGE_TAGS = {
  required: [],
  allowed: [
    'PersonID',
    'GlobalID',
    'FirstName',
    'LastName',
    'Organization',
    'OrgCode',
    'DnList',
    'ResourceList',
    'Comment',
    ...PERSON_CONTACT_TAGS,
  ],
  lenient: true,
} as const;

/** Required and allowed tags per packet type, after §4 of the protocol reference. */
export const PACKET_TAGS = {
  data_account_create: DATA_CREATE_TAGS,
  data_project_create: DATA_CREATE_TAGS,
  inform_transaction_complete: { required: ['DetailCode', 'Message', 'StatusCode'], allowed: [] },
  notify_account_inactivate: NOTIFY_ACCOUNT_STATE_TAGS,
  notify_account_reactivate: NOTIFY_ACCOUNT_STATE_TAGS,
  notify_account_create: {
    required: [
      'AccountActivityTime',
      'ProjectID',
      'ResourceList',
      'UserFirstName',
      'UserLastName',
      'UserOrganization',
      'UserOrgCode',
      'UserPersonID',
      'UserRemoteSiteLogin',
    ],
    // UserEmail and UserMiddleName come with the User* contact tags. amieclient lists
    // AcademicDegree as required, yet as one the server fills from the request_account_create,
    // where it is optional: requiring it would refuse the answer to any RAC without a degree, so
    // it is allowed and filled in.
    allowed: [
      'UserDnList',
      'UserGlobalID',
      'UserUID',
      'RoleList',
      'NsfStatusCode',
      'AcademicDegree',
      'UserPasswordAccessEnable',
      'UserRequestedLoginList',
      'UserPosition',
      ...USER_CONTACT_TAGS,
    ],
    // amieclient's fill-in list, plus ResourceList and ProjectID: its reference example sends a NAC
    // without ResourceList (and fills ResourceList in for every other notify_* type), and the RAC
    // names the site's ProjectID. AccountActivityTime stays the site's to give, though that example
    // leaves it out too: nothing in the request could supply it.
    inferFromRequest: {
      ResourceList: 'ResourceList',
      ProjectID: 'ProjectID',
      UserPersonID: 'UserPersonID',
      UserFirstName: 'UserFirstName',
      UserLastName: 'UserLastName',
      UserMiddleName: 'UserMiddleName',
      UserOrganization: 'UserOrganization',
      UserOrgCode: 'UserOrgCode',
      AcademicDegree: 'AcademicDegree',
    },
  },
  notify_project_create: {
    required: [
      'GrantNumber',
      'PfosNumber',
      'PiOrgCode',
      'PiPersonID',
      'PiRemoteSiteLogin',
      'ProjectID',
      'ProjectTitle',
      'ResourceList',
      'ServiceUnitsAllocated',
      'StartDate',
    ],
    allowed: [
      ...PI_CONTACT_TAGS,
      // The PI as the RPC named them, which amieclient lets an NPC repeat.
      'PiFirstName',
      'PiLastName',
      'PiOrganization',
      'PiDnList',
      'PiRequestedLoginList',
      'PiPosition',
      'Abstract',
      'AcademicDegree',
      'AllocationType',
      'EndDate',
      'NsfStatusCode',
      'PiGlobalID',
      'PiUID',
      'ProjectGID',
      'ResourceLogin',
      'RoleList',
      'Sfos',
    ],
    inferFromRequest: {
      GrantNumber: 'GrantNumber',
      PfosNumber: 'PfosNumber',
      PiOrgCode: 'PiOrgCode',
      ProjectTitle: 'ProjectTitle',
      ResourceList: 'ResourceList',
      ServiceUnitsAllocated: 'ServiceUnitsAllocated',
      StartDate: 'StartDate',
    },
  },
  notify_project_inactivate: NOTIFY_PROJECT_STATE_TAGS,
  notify_project_modify: PROJECT_CHANGE_TAGS,
  notify_project_reactivate: NOTIFY_PROJECT_STATE_TAGS,
  notify_project_resources: PROJECT_CHANGE_TAGS,
  notify_project_usage: {
    // The reference lists the tags of one job without marking optional ones: what identifies
    // and charges the job is required, the descriptive rest is allowed.
    required: [
      'UsageType',
      'ProjectID',
      'JobIdentity',
      'RecordIdentity',
      'MachineName',
      'UserLogin',
      'StartTime',
      'EndTime',
      'Charge',
    ],
    allowed: ['SubmitTime', 'WallDuration', 'NodeCount', 'Processors', 'Queue', 'JobName'],
  },
  // A site's own change to a person (answered with an ITC). amieclient's list leaves out the
  // address tags (StreetAddress, StreetAddress2, Title, Zip), CitizenshipList and NsfStatusCode
  // that it lists for request_user_modify, the same change from central: both take them here.
  notify_user_modify: { required: ['ActionType', 'PersonID'], allowed: USER_MODIFY_ALLOWED },
  notify_user_reactivate: USER_CHANGE_TAGS,
  notify_user_suspend: USER_CHANGE_TAGS,
  request_account_create: {
    required: ['GrantNumber', 'ResourceList', 'UserFirstName', 'UserLastName', 'UserOrganization', 'UserOrgCode'],
    // UserEmail and UserMiddleName come with the User* contact tags.
    allowed: [
      'ProjectID',
      'UserPersonID',
      'UserGlobalID',
      'SitePersonId',
      'UserRequestedLoginList',
      'UserDnList',
      'AcademicDegree',
      'CitizenshipList',
      'NsfStatusCode',
      'RoleList',
      'AllocatedResource',
      'UserPasswordAccessEnable',
      ...USER_CONTACT_TAGS,
    ],
  },
  request_account_inactivate: ACCOUNT_STATE_TAGS,
  request_account_reactivate: ACCOUNT_STATE_TAGS,
  request_project_create: {
    required: [
      'AllocationType',
      'EndDate',
      'GrantNumber',
      'PfosNumber',
      'PiFirstName',
      'PiLastName',
      'PiOrganization',
      'PiOrgCode',
      'StartDate',
      'ResourceList',
      'RecordID',
      'ServiceUnitsAllocated',
    ],
    allowed: [
      'Abstract',
      'AcademicDegree',
      'AllocatedResource',
      'BoardType',
      'ChargeNumber',
      'CitizenshipList',
      'GrantType',
      'NsfStatusCode',
      ...PI_CONTACT_TAGS,
      'PiDnList',
      'PiGlobalID',
      'PiPersonID',
      'PiRequestedLoginList',
      'ProjectID',
      'ProjectTitle',
      'RequestType',
      'RoleList',
      'Sfos',
      'SitePersonId',
    ],
  },
  request_project_inactivate: { required: ['ProjectID', 'ResourceList'], allowed: PROJECT_STATE_REQUEST_ALLOWED },
  request_project_modify: PROJECT_CHANGE_TAGS,
  request_project_reactivate: {
    required: ['ProjectID', 'ResourceList'],
    allowed: [...PROJECT_STATE_REQUEST_ALLOWED, 'PersonID'],
  },
  request_project_resources: PROJECT_CHANGE_TAGS,
  request_user_modify: { required: ['ActionType', 'PersonID'], allowed: USER_MODIFY_ALLOWED },
  request_user_reactivate: USER_CHANGE_TAGS,
  request_user_suspend: USER_CHANGE_TAGS,
  request_user_create: USER_CHANGE_TAGS,
  notify_user_create: USER_CHANGE_TAGS,
  notify_person_ids: {
    required: ['PersonID', 'PrimaryPersonID'],
    allowed: ['PersonIDList', 'RemoveResourceList', 'ResourceLogin'],
  },
  notify_person_duplicate: {
    // Either GlobalID1 or PersonID1, and either GlobalID2 or PersonID2: validate.ts checks the pairs.
    required: [],
    allowed: ['GlobalID1', 'PersonID1', 'GlobalID2', 'PersonID2'],
  },
  request_person_merge: {
    required: ['KeepGlobalID', 'KeepPersonID', 'DeleteGlobalID', 'DeletePersonID'],
    allowed: ['KeepPortalLogin', 'DeletePortalLogin'],
  },
} as const satisfies { readonly [N in PacketTypeName]: TagLists };
export type PacketTags = typeof PACKET_TAGS;

/**
 * The type the site answers a received packet with (§3). An incoming ITC gets no answer here:
 * over the AMIE tables the transfer daemon closes the transaction. Over the REST API the source
 * answers it with a success ITC (amieclient's ITC expects one), outside the handler's view.
 */
const SITE_REPLY: Partial<Record<PacketTypeName, PacketTypeName>> = {
  request_project_create: 'notify_project_create',
  data_project_create: 'inform_transaction_complete',
  request_account_create: 'notify_account_create',
  data_account_create: 'inform_transaction_complete',
  request_project_inactivate: 'notify_project_inactivate',
  request_project_reactivate: 'notify_project_reactivate',
  request_account_inactivate: 'notify_account_inactivate',
  request_account_reactivate: 'notify_account_reactivate',
  request_user_modify: 'inform_transaction_complete',
  request_person_merge: 'inform_transaction_complete',
  notify_person_ids: 'inform_transaction_complete',
  notify_person_duplicate: 'inform_transaction_complete',
};

/**
 * The reply a sent packet waits for, from either side: the site's NPC/NAC/notify_* and NPU, and
 * the central side's requests as the simulator sends them. Only the last packet of a chain, the
 * ITC, expects nothing.
 */
const EXPECTED_REPLY: Partial<Record<PacketTypeName, PacketTypeName>> = {
  ...SITE_REPLY,
  notify_project_create: 'data_project_create',
  notify_account_create: 'data_account_create',
  notify_project_inactivate: 'inform_transaction_complete',
  notify_project_reactivate: 'inform_transaction_complete',
  notify_account_inactivate: 'inform_transaction_complete',
  notify_account_reactivate: 'inform_transaction_complete',
  notify_project_usage: 'inform_transaction_complete',
};

export interface PacketSpec {
  name: PacketTypeName;
  id: number;
  /** Tags that must be present with a non-empty value. */
  required: readonly string[];
  /** Optional tags (never repeating a required one). */
  allowed: readonly string[];
  /** For a packet the site receives: the type it answers with. */
  siteReply?: PacketTypeName;
  /** For a sent packet: the type of the reply it waits for. */
  expectedReply?: PacketTypeName;
  /** Reply tag -> request tag the dispatcher may copy when the handler did not set the reply tag. */
  inferFromRequest?: Readonly<Record<string, string>>;
  /** The protocol reference gives no tag list for this type: any tag is accepted without report. */
  lenient?: boolean;
}

function buildSpec(name: PacketTypeName): PacketSpec {
  const tags: TagLists = PACKET_TAGS[name];
  const spec: PacketSpec = {
    name,
    id: PACKET_TYPE_IDS[name],
    required: Object.freeze([...tags.required]),
    allowed: Object.freeze([...tags.allowed]),
  };
  const siteReply = SITE_REPLY[name];
  const expectedReply = EXPECTED_REPLY[name];
  if (siteReply) spec.siteReply = siteReply;
  if (expectedReply) spec.expectedReply = expectedReply;
  if (tags.inferFromRequest) spec.inferFromRequest = Object.freeze({ ...tags.inferFromRequest });
  if (tags.lenient) spec.lenient = true;
  return Object.freeze(spec);
}

export const PACKET_SPECS: { readonly [N in PacketTypeName]: PacketSpec } = Object.freeze(
  Object.fromEntries((Object.keys(PACKET_TYPE_IDS) as PacketTypeName[]).map((name) => [name, buildSpec(name)])) as {
    [N in PacketTypeName]: PacketSpec;
  },
);

/** The spec of a packet type, by `type_des` name or id. */
export function specOf(type: PacketTypeName | number): PacketSpec {
  if (typeof type === 'number') {
    const name = packetTypeName(type);
    if (!name) throw new Error(`unknown AMIE packet type id ${type}: type_des numbers types 1 to 31`);
    return PACKET_SPECS[name];
  }
  const spec = Object.prototype.hasOwnProperty.call(PACKET_SPECS, type) ? PACKET_SPECS[type] : undefined;
  if (!spec)
    throw new Error(
      `unknown AMIE packet type "${String(type)}": expected a type_des name such as request_project_create`,
    );
  return spec;
}
