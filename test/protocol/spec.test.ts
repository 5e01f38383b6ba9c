import { describe, expect, it } from 'vitest';
import {
  COMPOSITE_TAGS,
  LIST_TAGS,
  PACKET_SPECS,
  PACKET_TYPE_IDS,
  specOf,
  type PacketTypeName,
} from '../../src/protocol/index.js';
import { TYPE_DES } from '../helpers/amie.js';

// Written out from the protocol reference (§4 tags), not derived from the code under test.
const REQUIRED: Record<PacketTypeName, string[]> = {
  request_project_create: [
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
  notify_project_create: [
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
  data_project_create: ['PersonID', 'ProjectID'],
  data_account_create: ['PersonID', 'ProjectID'],
  request_account_create: [
    'GrantNumber',
    'ResourceList',
    'UserFirstName',
    'UserLastName',
    'UserOrganization',
    'UserOrgCode',
  ],
  notify_account_create: [
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
  request_account_inactivate: ['PersonID', 'ProjectID', 'ResourceList'],
  notify_account_inactivate: ['PersonID', 'ProjectID', 'ResourceList'],
  request_account_reactivate: ['PersonID', 'ProjectID', 'ResourceList'],
  notify_account_reactivate: ['PersonID', 'ProjectID', 'ResourceList'],
  request_project_inactivate: ['ProjectID', 'ResourceList'],
  request_project_reactivate: ['ProjectID', 'ResourceList'],
  notify_project_inactivate: ['ProjectID', 'ResourceList'],
  notify_project_reactivate: ['ProjectID', 'ResourceList'],
  request_user_modify: ['ActionType', 'PersonID'],
  request_person_merge: ['KeepGlobalID', 'KeepPersonID', 'DeleteGlobalID', 'DeletePersonID'],
  notify_person_ids: ['PersonID', 'PrimaryPersonID'],
  notify_person_duplicate: [],
  inform_transaction_complete: ['DetailCode', 'Message', 'StatusCode'],
  notify_project_usage: [
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
  // amieclient's list (the protocol reference gives none).
  notify_user_modify: ['ActionType', 'PersonID'],
  // The reference gives no tags for these.
  notify_project_modify: [],
  notify_project_resources: [],
  notify_user_reactivate: [],
  notify_user_suspend: [],
  request_project_modify: [],
  request_project_resources: [],
  request_user_reactivate: [],
  request_user_suspend: [],
  request_user_create: [],
  notify_user_create: [],
};

const CONTACT = [
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
];

describe('packet types', () => {
  it('has all 31 type_des ids and names, each once', () => {
    expect(Object.keys(PACKET_SPECS)).toHaveLength(31);
    for (const [id, name] of TYPE_DES) {
      expect(specOf(id).name).toBe(name);
      expect(specOf(name as PacketTypeName).id).toBe(id);
      expect(PACKET_TYPE_IDS[name as PacketTypeName]).toBe(id);
    }
    const ids = Object.values(PACKET_SPECS).map((s) => s.id);
    expect(new Set(ids).size).toBe(31);
  });

  it.each(Object.entries(REQUIRED))('%s requires exactly the tags of the reference', (name, required) => {
    expect([...specOf(name as PacketTypeName).required].sort()).toEqual([...required].sort());
  });

  it.each(Object.values(PACKET_SPECS).map((s) => [s.name, s] as const))('%s lists each tag once', (_name, spec) => {
    expect(new Set(spec.allowed).size).toBe(spec.allowed.length);
    expect(spec.allowed.filter((t) => spec.required.includes(t))).toEqual([]);
    for (const [reply, request] of Object.entries(spec.inferFromRequest ?? {})) {
      expect(spec.required.includes(reply) || spec.allowed.includes(reply)).toBe(true);
      expect(request).toBe(reply);
    }
  });

  it('spells out the Pi and User contact tags', () => {
    for (const field of CONTACT) {
      expect(specOf('request_project_create').allowed).toContain(`Pi${field}`);
      expect(specOf('notify_project_create').allowed).toContain(`Pi${field}`);
      expect(specOf('request_account_create').allowed).toContain(`User${field}`);
      expect(specOf('notify_account_create').allowed).toContain(`User${field}`);
      expect(specOf('request_user_modify').allowed).toContain(field);
    }
    expect(specOf('request_account_create').allowed).toEqual(
      expect.arrayContaining(['UserPasswordAccessEnable', 'SitePersonId', 'UserRequestedLoginList', 'UserDnList']),
    );
    expect(specOf('data_project_create').allowed).toEqual(['DnList']);
  });

  it('marks the types the reference gives no tags for as lenient, and no others', () => {
    const lenient = Object.values(PACKET_SPECS)
      .filter((s) => s.lenient)
      .map((s) => s.name)
      .sort();
    expect(lenient).toEqual([
      'notify_project_modify',
      'notify_project_resources',
      'notify_user_create',
      'notify_user_reactivate',
      'notify_user_suspend',
      'request_project_modify',
      'request_project_resources',
      'request_user_create',
      'request_user_reactivate',
      'request_user_suspend',
    ]);
  });

  it('knows the reply chains of both sides', () => {
    const siteReplies = Object.fromEntries(
      Object.values(PACKET_SPECS)
        .filter((s) => s.siteReply)
        .map((s) => [s.name, s.siteReply]),
    );
    expect(siteReplies).toEqual({
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
    });
    expect(specOf('notify_project_create').expectedReply).toBe('data_project_create');
    expect(specOf('notify_account_create').expectedReply).toBe('data_account_create');
    expect(specOf('notify_project_usage').expectedReply).toBe('inform_transaction_complete');
    expect(specOf('notify_account_inactivate').expectedReply).toBe('inform_transaction_complete');
    expect(specOf('request_project_create').expectedReply).toBe('notify_project_create');
    expect(specOf('data_account_create').expectedReply).toBe('inform_transaction_complete');
    expect(specOf('inform_transaction_complete').expectedReply).toBeUndefined();
    expect(specOf('inform_transaction_complete').siteReply).toBeUndefined();
  });

  it('names what NPC and NAC may take from the request', () => {
    expect(Object.keys(specOf('notify_project_create').inferFromRequest!).sort()).toEqual([
      'GrantNumber',
      'PfosNumber',
      'PiOrgCode',
      'ProjectTitle',
      'ResourceList',
      'ServiceUnitsAllocated',
      'StartDate',
    ]);
    expect(Object.keys(specOf('notify_account_create').inferFromRequest!).sort()).toEqual([
      'AcademicDegree',
      'ProjectID',
      'ResourceList',
      'UserFirstName',
      'UserLastName',
      'UserMiddleName',
      'UserOrgCode',
      'UserOrganization',
      'UserPersonID',
    ]);
    expect(Object.keys(specOf('notify_account_reactivate').inferFromRequest!).sort()).toEqual([
      'PersonID',
      'ProjectID',
      'ResourceList',
    ]);
    expect(Object.keys(specOf('notify_project_inactivate').inferFromRequest!).sort()).toEqual([
      'Comment',
      'PersonID',
      'ProjectID',
      'ResourceList',
    ]);
  });

  it('describes list and composite tags', () => {
    for (const tag of [
      'ResourceList',
      'DnList',
      'PiDnList',
      'UserDnList',
      'UserRequestedLoginList',
      'PiRequestedLoginList',
      'RoleList',
      'CitizenshipList',
      'PersonIDList',
      'RemoveResourceList',
    ]) {
      expect(LIST_TAGS.has(tag)).toBe(true);
    }
    expect(COMPOSITE_TAGS).toEqual({
      AcademicDegree: ['Degree', 'Field'],
      JobIdentity: ['LocalJobID'],
      RecordIdentity: ['RecordID', 'CreateTime'],
      SitePersonId: ['PersonID', 'Site'],
    });
  });

  it('names the unknown type or id it was asked for', () => {
    expect(() => specOf(99)).toThrow(/packet type id 99/);
    expect(() => specOf('request_pony' as PacketTypeName)).toThrow(/"request_pony"/);
  });
});
