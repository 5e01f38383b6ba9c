import { describe, expect, expectTypeOf, it } from 'vitest';
import { PacketBody, readTags, bodyFromTags, type ReplyTagsOf, type TagsOf } from '../../src/protocol/index.js';

describe('typed tag view', () => {
  it('derives required, optional, list and composite tags from the spec', () => {
    expectTypeOf<TagsOf<'request_account_create'>['UserFirstName']>().toEqualTypeOf<string>();
    expectTypeOf<TagsOf<'request_account_create'>['UserDnList']>().toEqualTypeOf<string[] | undefined>();
    expectTypeOf<TagsOf<'request_account_create'>['ResourceList']>().toEqualTypeOf<string[]>();
    expectTypeOf<TagsOf<'request_account_create'>['SitePersonId']>().toEqualTypeOf<
      Array<{ PersonID: string; Site: string }> | undefined
    >();
    expectTypeOf<TagsOf<'request_project_create'>['PiBusinessPhoneExtension']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<TagsOf<'notify_project_usage'>['RecordIdentity']>().toEqualTypeOf<
      Array<{ RecordID: string; CreateTime: string }>
    >();
    expectTypeOf<TagsOf<'request_account_create'>>().not.toHaveProperty('PiFirstName');
  });

  it('lets a reply leave out what the request supplies, and nothing else', () => {
    expectTypeOf<ReplyTagsOf<'notify_account_create'>['UserFirstName']>().toEqualTypeOf<string | undefined>();
    // The server takes UserPersonID over from the RAC when the site leaves it out (amieclient).
    expectTypeOf<ReplyTagsOf<'notify_account_create'>['UserPersonID']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<ReplyTagsOf<'notify_account_create'>['UserRemoteSiteLogin']>().toEqualTypeOf<string>();
    expectTypeOf<ReplyTagsOf<'notify_project_create'>['PiRemoteSiteLogin']>().toEqualTypeOf<string>();
    expectTypeOf<ReplyTagsOf<'notify_project_create'>['ResourceList']>().toEqualTypeOf<string[] | undefined>();
    const nac: ReplyTagsOf<'notify_account_create'> = {
      AccountActivityTime: '2024-07-01T12:00:00Z',
      UserPersonID: 'u1',
      UserRemoteSiteLogin: 'ann',
    };
    expect(bodyFromTags(nac).get('UserRemoteSiteLogin')).toBe('ann');
  });

  it('reads a body as the typed view, keeping unexpected tags', () => {
    const body = PacketBody.fromTags({
      GrantNumber: 'TG-1',
      ResourceList: ['r.example.org'],
      UserFirstName: 'Ann',
      UserLastName: 'Lee',
      UserOrganization: 'Example U',
      UserOrgCode: '1',
      SitePersonId: [{ PersonID: 'ann', Site: 'X-PORTAL' }],
      SomethingNew: 'x',
    });
    const tags = readTags('request_account_create', body);
    expect(tags.UserFirstName).toBe('Ann');
    expect(tags.ResourceList).toEqual(['r.example.org']);
    expect(tags.SitePersonId?.[0]?.Site).toBe('X-PORTAL');
    expect(tags.SomethingNew).toBe('x');
  });
});
