import { describe, expect, it } from 'vitest';
import {
  PacketBody,
  formatProblems,
  isIsoDateTime,
  unexpectedTags,
  validateBody,
  type DataRow,
  type TagValue,
} from '../../src/protocol/index.js';

const RAC: Record<string, TagValue> = {
  GrantNumber: 'TG-ABC123',
  ResourceList: ['cluster.example.org'],
  UserFirstName: 'Ann',
  UserLastName: 'Lee',
  UserOrganization: 'Example University',
  UserOrgCode: '0012345',
  UserRequestedLoginList: [''],
};

const RPC: Record<string, TagValue> = {
  AllocationType: 'new',
  EndDate: '2025-06-30',
  GrantNumber: 'TG-ABC123',
  PfosNumber: '12345',
  PiFirstName: 'Ann',
  PiLastName: 'Lee',
  PiOrganization: 'Example University',
  PiOrgCode: '0012345',
  StartDate: '2024-07-01T00:00:00.000-05:00',
  ResourceList: ['cluster.example.org'],
  RecordID: 'rec-1',
  ServiceUnitsAllocated: '1000',
};

const messages = (type: Parameters<typeof validateBody>[0], tags: Record<string, TagValue | undefined>) =>
  validateBody(type, PacketBody.fromTags(tags)).map((p) => p.message);

describe('validateBody', () => {
  it('refuses control characters and overlong values in one-line tags, names the tag; free text keeps line breaks', () => {
    const bad = messages('request_account_create', {
      ...RAC,
      UserFirstName: '\u0001Ann',
      UserLastName: 'Evil\r\nroot:x:0:0:\u202e',
    });
    expect(bad.some((m) => m.startsWith('UserFirstName:') && m.includes('U+0001'))).toBe(true);
    expect(bad.some((m) => m.startsWith('UserLastName:') && m.includes('U+000D'))).toBe(true);
    expect(messages('request_account_create', { ...RAC, UserLastName: 'L'.repeat(2000) })).toEqual([
      'UserLastName: value is 2000 characters long, more than the 1024 allowed',
    ]);
    // Surrounding whitespace is not the value's: a trailing line break is harmless.
    expect(messages('request_account_create', { ...RAC, UserLastName: 'Lee\r\n' })).toEqual([]);
    expect(messages('request_project_create', { ...RPC, Abstract: 'Line one.\n\tLine two.' })).toEqual([]);
    expect(messages('request_project_create', { ...RPC, Abstract: 'x'.repeat(70_000) })[0]).toMatch(
      /^Abstract: value is 70000 characters long/,
    );
  });

  it('refuses year 0, which no calendar date has', () => {
    expect(messages('request_project_create', { ...RPC, StartDate: '0000-01-01' })[0]).toMatch(
      /^StartDate: "0000-01-01" is not an ISO 8601 date/,
    );
  });

  it('accepts complete bodies', () => {
    expect(messages('request_account_create', RAC)).toEqual([]);
    expect(messages('request_project_create', RPC)).toEqual([]);
    expect(
      messages('inform_transaction_complete', { StatusCode: 'Success', DetailCode: '1', Message: 'done' }),
    ).toEqual([]);
    expect(messages('notify_person_duplicate', { GlobalID1: 'g1', PersonID2: 'p2' })).toEqual([]);
    expect(messages('notify_project_modify', { Anything: 'goes' })).toEqual([]);
  });

  it('reports a missing required tag by name', () => {
    expect(messages('request_account_create', { ...RAC, UserLastName: undefined })).toEqual([
      'UserLastName: required tag is missing',
    ]);
  });

  it('reports null, empty and blank required values as missing values', () => {
    const rows: DataRow[] = PacketBody.fromTags({
      ...RAC,
      UserLastName: undefined,
      UserOrgCode: '  ',
      GrantNumber: '',
    }).toRows();
    rows.push({ tag: 'UserLastName', subtag: null, seq: 0, value: null });
    expect(validateBody('request_account_create', PacketBody.fromRows(rows)).map((p) => p.message)).toEqual([
      'GrantNumber: required tag is empty',
      'UserLastName: required tag has no value (null)',
      'UserOrgCode: required tag is empty',
    ]);
  });

  it('reports every problem at once, each with its tag', () => {
    const rows: DataRow[] = PacketBody.fromTags({
      ...RPC,
      PiLastName: undefined,
      ResourceList: ['a.example.org', 'b.example.org'],
      StartDate: '2024-13-01',
      EndDate: 'next tuesday',
      ServiceUnitsAllocated: 'lots',
      PiCity: 'nul\u0000here',
    }).toRows();
    rows.push({ tag: 'PiDnList', subtag: null, seq: 2, value: 'gap' });
    const problems = validateBody('request_project_create', PacketBody.fromRows(rows));
    expect(problems.map((p) => p.tag)).toEqual([
      'PiDnList',
      'PiLastName',
      'ResourceList',
      'EndDate',
      'PiCity',
      'ServiceUnitsAllocated',
      'StartDate',
    ]);
    for (const p of problems) expect(p.message.startsWith(`${p.tag}: `)).toBe(true);
    const line = formatProblems(problems);
    expect(line).toContain(
      'PiLastName: required tag is missing; ResourceList: expected exactly one resource, got 2 (a.example.org, b.example.org)',
    );
    expect(line).toContain('StartDate: "2024-13-01" is not an ISO 8601 date');
    expect(line).toContain('EndDate: "next tuesday" is not an ISO 8601 date');
    expect(line).toContain('ServiceUnitsAllocated: "lots" is not a number');
    expect(line).toContain('PiCity: value at seq 0 contains a NUL character');
    expect(line).toContain('PiDnList: seqs 0-1 are missing');
    expect(line).not.toContain('\n');
  });

  it('wants exactly one resource where the type carries ResourceList', () => {
    expect(messages('request_account_inactivate', { PersonID: 'p', ProjectID: 'x', ResourceList: [] })).toEqual([
      'ResourceList: required tag is missing',
    ]);
    expect(messages('notify_project_inactivate', { ProjectID: 'x', ResourceList: ['a', 'b'] })).toEqual([
      'ResourceList: expected exactly one resource, got 2 (a, b)',
    ]);
  });

  it('checks ActionType, StatusCode and DetailCode', () => {
    expect(messages('request_user_modify', { ActionType: 'replace', PersonID: 'p' })).toEqual([]);
    expect(messages('request_user_modify', { ActionType: 'upsert', PersonID: 'p' })).toEqual([
      'ActionType: "upsert" is not one of add, delete, replace',
    ]);
    expect(messages('inform_transaction_complete', { StatusCode: 'OK', DetailCode: '3', Message: 'm' })).toEqual([
      'StatusCode: "OK" is not one of Success, Failure',
      'DetailCode: "3" is not one of 1, 2 (1 success, 2 failure)',
    ]);
  });

  it('checks numbers, times and durations of a usage packet, including composite parts', () => {
    const npu = {
      UsageType: 'normal',
      ProjectID: 'p-1',
      JobIdentity: [{ LocalJobID: '123_4' }],
      RecordIdentity: [{ RecordID: 'r-1', CreateTime: 'yesterday' }],
      MachineName: 'cluster.example.org',
      UserLogin: 'ann',
      StartTime: '2024-07-01 10:00:00',
      EndTime: '2024-07-01T11:00:00.123456Z',
      Charge: '1.5e2',
      NodeCount: 'two',
      Processors: '8',
      WallDuration: '3600',
    };
    expect(messages('notify_project_usage', npu)).toEqual([
      'NodeCount: "two" is not a number',
      'RecordIdentity: "yesterday" (subtag CreateTime) is not an ISO 8601 time, e.g. 2024-07-01T12:00:00Z',
      'WallDuration: "3600" is not an ISO 8601 duration, e.g. PT3600S',
    ]);
    expect(
      messages('notify_project_usage', {
        ...npu,
        RecordIdentity: [{ RecordID: 'r-1', CreateTime: '2024-07-01T11:00:00+02:00' }],
        NodeCount: '2',
        WallDuration: 'PT3600S',
      }),
    ).toEqual([]);
  });

  it("applies notify_person_duplicate's either/or rule to each pair", () => {
    expect(messages('notify_person_duplicate', { PersonID1: 'a' })).toEqual([
      'PersonID2: either GlobalID2 or PersonID2 is required',
    ]);
    expect(messages('notify_person_duplicate', {})).toHaveLength(2);
  });

  it('rejects tags that data_tbl cannot store', () => {
    expect(messages('notify_project_modify', { ['T'.repeat(33)]: 'x' })).toEqual([
      `${'T'.repeat(33)}: tag name is longer than 32 characters`,
    ]);
  });
});

describe('isIsoDateTime', () => {
  it.each([
    '2024-07-01',
    '2024-02-29',
    '2024-07-01T12:00',
    '2024-07-01T12:00:00',
    '2024-07-01 12:00:00',
    '2024-07-01T12:00:00.5Z',
    '2024-07-01T12:00:00,123+05:30',
    '2024-07-01T12:00:00-0800',
    '2024-07-01T23:59:60Z',
  ])('accepts %s', (text) => expect(isIsoDateTime(text)).toBe(true));
  it.each([
    '2024-13-01',
    '2023-02-29',
    '2024-07-32',
    'next tuesday',
    '07/01/2024',
    '2024-07-01T25:00:00',
    '2024-07-01T12:00:00 Z',
    '20240701',
    '',
  ])('rejects %s', (text) => expect(isIsoDateTime(text)).toBe(false));
});

describe('unexpectedTags', () => {
  it('lists tags the type does not name, and none for types the reference leaves open', () => {
    const body = PacketBody.fromTags({ ...RAC, PiFirstName: 'x', Surprise: 'y' });
    expect(unexpectedTags('request_account_create', body)).toEqual(['PiFirstName', 'Surprise']);
    expect(unexpectedTags('request_user_create', body)).toEqual([]);
  });

  it('an unknown row from the tables is kept and reported as unexpected, not lost', () => {
    const rows = PacketBody.fromTags(RAC).toRows();
    rows.push({ tag: 'LegacyOddity', subtag: 'Part', seq: 0, value: 'v' });
    const body = PacketBody.fromRows(rows);
    expect(validateBody('request_account_create', body)).toEqual([]);
    expect(unexpectedTags('request_account_create', body)).toEqual(['LegacyOddity']);
    expect(body.toJSON().LegacyOddity).toEqual([{ Part: 'v' }]);
  });
});
