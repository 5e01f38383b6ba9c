import { describe, expect, it } from 'vitest';
import { PacketBody, unexpectedTags, validateBody } from '../../src/protocol/index.js';
import {
  RestPacketError,
  claimedFromRest,
  packetListOf,
  parseReplyPacket,
  parseRestPacket,
  postedPacketRecId,
  replyPacketJson,
  toRestPacketJson,
} from '../../src/sources/index.js';

/** A request_account_create the way the ACCESS REST API serves one, oddities included. */
function realLookingRac(over: { packetRecId?: number; transRecId?: number } = {}) {
  return {
    DATA_TYPE: 'Packet',
    type: 'request_account_create',
    type_id: 16,
    header: {
      packet_rec_id: over.packetRecId ?? 212345678,
      packet_id: 1,
      transaction_id: 123456,
      trans_rec_id: over.transRecId ?? 98765432,
      expected_reply_list: [{ type: 'notify_account_create', timeout: 30240 }],
      local_site_name: 'EXAMPLE',
      remote_site_name: 'XSEDE',
      originating_site_name: 'XSEDE',
      outgoing_flag: false,
      transaction_state: 'in-progress',
      packet_state: 'in-progress',
      packet_timestamp: '2024-03-05T17:02:33.417Z',
      client_state: null,
      client_json: null,
    },
    body: {
      GrantNumber: 'TG-ABC123',
      ProjectID: 'p-abc123',
      ResourceList: ['cluster.example.org'],
      AllocatedResource: 'cluster.example.org',
      UserFirstName: 'Zoë',
      UserLastName: "O'Neil-Smith",
      UserOrganization: 'Université de Montréal',
      UserOrgCode: '0012345',
      UserGlobalID: '71717',
      UserEmail: 'zoe@example.edu',
      UserRequestedLoginList: [''],
      UserDnList: ['/C=US/O=Example/CN=Zoe ONeil', '/DC=org/DC=cilogon/C=US/O=Example/CN=Zoe ONeil A12345'],
      SitePersonId: [
        { Site: 'X-PORTAL', PersonID: 'zoneil' },
        { Site: 'XSEDE', PersonID: '71717' },
      ],
      AcademicDegree: [
        { Degree: 'PhD', Field: 'Physics' },
        { Degree: 'MS', Field: 'Computer Science' },
      ],
      CitizenshipList: ['Canada', 'France'],
      RoleList: ['Allocation Manager'],
      NsfStatusCode: 'GS',
      UserBusinessPhoneNumber: '+1 412 555 0100',
      // Tags a newer central side may add: kept, reported as unexpected, never fatal.
      UserPreferredPronouns: 'she/her',
      PortalTags: ['a', 'b'],
    },
  };
}

describe('AMIE REST packet JSON', () => {
  it('reads a real-looking RAC: header ids, timestamp with ms and Z, composite and list tags, extra tags', () => {
    const p = parseRestPacket(realLookingRac());
    expect(p).toMatchObject({
      packetRecId: 212345678,
      packetId: 1,
      type: 'request_account_create',
      typeId: 16,
      transRecId: 98765432,
      transactionId: 123456,
      originatingSiteName: 'XSEDE',
      localSiteName: 'EXAMPLE',
      remoteSiteName: 'XSEDE',
      transactionState: 'in-progress',
      packetState: 'in-progress',
      outgoing: false,
      inReplyTo: null,
      clientState: null,
      expectedReplyList: [{ type: 'notify_account_create', timeout: 30240 }],
    });
    expect(p.timestamp?.toISOString()).toBe('2024-03-05T17:02:33.417Z');
    expect(p.body.getEntries('SitePersonId')).toEqual([
      { Site: 'X-PORTAL', PersonID: 'zoneil' },
      { Site: 'XSEDE', PersonID: '71717' },
    ]);
    expect(p.body.getEntries('AcademicDegree')).toEqual([
      { Degree: 'PhD', Field: 'Physics' },
      { Degree: 'MS', Field: 'Computer Science' },
    ]);
    // An empty requested-login list is one empty string: present, but not a login.
    expect(p.body.getList('UserRequestedLoginList')).toEqual(['']);
    expect(p.body.has('UserRequestedLoginList')).toBe(false);
    expect(p.body.getList('UserDnList')).toHaveLength(2);
    expect(p.body.get('UserFirstName')).toBe('Zoë');
    expect(p.body.problems).toEqual([]);
    expect(validateBody('request_account_create', p.body)).toEqual([]);
    expect(unexpectedTags('request_account_create', p.body).sort()).toEqual(['PortalTags', 'UserPreferredPronouns']);
    // The rows are those the AMIE tables would hold: seq ties the parts of a composite entry.
    expect(p.body.toRows().filter((r) => r.tag === 'SitePersonId')).toEqual([
      { tag: 'SitePersonId', subtag: 'PersonID', seq: 0, value: 'zoneil' },
      { tag: 'SitePersonId', subtag: 'Site', seq: 0, value: 'X-PORTAL' },
      { tag: 'SitePersonId', subtag: 'PersonID', seq: 1, value: '71717' },
      { tag: 'SitePersonId', subtag: 'Site', seq: 1, value: 'XSEDE' },
    ]);
  });

  it('gives the dispatcher a ClaimedPacket, with the opening request for a DAC', () => {
    const rac = parseRestPacket(realLookingRac());
    const dac = parseRestPacket({
      type: 'data_account_create',
      type_id: '1',
      header: {
        ...realLookingRac().header,
        packet_rec_id: '212345690',
        packet_id: 3,
        expected_reply_list: [{ type: 'inform_transaction_complete', timeout: 30240 }],
        packet_timestamp: '2024-03-05T17:40:00+00:00',
      },
      body: { PersonID: 'u-zoe', ProjectID: 'p-abc123', DnList: ['/C=US/CN=Zoe'] },
    });
    const claimed = claimedFromRest(dac, rac, 2);
    expect(claimed).toMatchObject({
      packetRecId: 212345690,
      packetId: 3,
      typeId: 1,
      errorCount: 2,
      transaction: { transRecId: 98765432, transactionId: 123456, originatingSiteName: 'XSEDE', state: 'in-progress' },
      request: { packetRecId: 212345678, packetId: 1, typeId: 16 },
    });
    expect(claimed.request!.body.get('ResourceList')).toBe('cluster.example.org');
  });

  it('writes a reply with in_reply_to, the transaction ids and the expected reply; multi-valued tags stay arrays', () => {
    const rac = parseRestPacket(realLookingRac());
    const body = PacketBody.fromTags({
      UserPersonID: 'u-zoe',
      UserRemoteSiteLogin: 'zoneil',
      UserDnList: ['/C=US/CN=Zoe'],
      ResourceList: ['cluster.example.org'],
    });
    const json = replyPacketJson(
      {
        type: 'notify_account_create',
        rows: body.toRows(),
        expectedReply: { type: 'data_account_create', timeoutMinutes: 30240 },
      },
      rac,
    );
    expect(json).toEqual({
      DATA_TYPE: 'Packet',
      type: 'notify_account_create',
      type_id: 6,
      header: {
        in_reply_to: 212345678,
        trans_rec_id: 98765432,
        transaction_id: 123456,
        originating_site_name: 'XSEDE',
        local_site_name: 'EXAMPLE',
        remote_site_name: 'XSEDE',
        expected_reply_list: [{ type: 'data_account_create', timeout: 30240 }],
      },
      body: {
        ResourceList: ['cluster.example.org'],
        UserDnList: ['/C=US/CN=Zoe'],
        UserPersonID: 'u-zoe',
        UserRemoteSiteLogin: 'zoneil',
      },
    });
    // The server side reads it back.
    const reply = parseReplyPacket(JSON.parse(JSON.stringify(json)));
    expect(reply).toMatchObject({ type: 'notify_account_create', typeId: 6, inReplyTo: 212345678 });
    expect(reply.body.getList('UserDnList')).toEqual(['/C=US/CN=Zoe']);
  });

  it('serves a packet back as the JSON it was read from (server side)', () => {
    const json = realLookingRac();
    const again = toRestPacketJson(parseRestPacket(json));
    const { client_state: _s, client_json: _j, ...header } = json.header;
    expect(again.header).toEqual(header);
    expect(again.header.packet_timestamp).toBe('2024-03-05T17:02:33.417Z');
    expect(again.body).toEqual(json.body);
  });

  it('keeps a body that does not fit the model, with its problems, for a failure reply', () => {
    const json = realLookingRac();
    (json.body as Record<string, unknown>).SitePersonId = [{ Site: 'X-PORTAL', PersonID: 'zoneil' }, 'stray'];
    (json.body as Record<string, unknown>).ResourceList = { nested: { deep: 1 } };
    const p = parseRestPacket(json);
    expect(p.body.problems.map((x) => x.message).join('; ')).toMatch(
      /SitePersonId: the array mixes strings and objects/,
    );
    expect(p.body.problems.map((x) => x.message).join('; ')).toMatch(
      /ResourceList: entry 0 has an object for subtag nested/,
    );
  });

  it('refuses header shapes it cannot answer, naming the packet and the field', () => {
    const bad = (patch: (j: ReturnType<typeof realLookingRac>) => void) => {
      const j = realLookingRac();
      patch(j);
      try {
        parseRestPacket(j, 'item 3 of GET packets/EXAMPLE');
      } catch (err) {
        expect(err).toBeInstanceOf(RestPacketError);
        return (err as RestPacketError).message;
      }
      throw new Error('expected a RestPacketError');
    };
    expect(bad((j) => ((j.header as Record<string, unknown>).trans_rec_id = 'abc'))).toBe(
      'AMIE REST packet 212345678 (request_account_create): header.trans_rec_id: expected a whole number, got "abc"',
    );
    expect(bad((j) => delete (j.header as Record<string, unknown>).packet_rec_id)).toBe(
      'AMIE REST packet (item 3 of GET packets/EXAMPLE): header.packet_rec_id: expected a whole number, got nothing',
    );
    expect(bad((j) => (j.header.packet_timestamp = '05/03/2024 17:02'))).toMatch(
      /header\.packet_timestamp: expected an ISO 8601 time/,
    );
    expect(bad((j) => (j.header.transaction_state = 'sleepy'))).toMatch(
      /header\.transaction_state: expected one of completed, in-progress/,
    );
    expect(bad((j) => (j.type_id = 19))).toMatch(/type_id: expected 16 for type request_account_create, got 19/);
    expect(bad((j) => ((j as Record<string, unknown>).header = []))).toMatch(
      /header: expected an object, got an array/,
    );
    expect(bad((j) => ((j as Record<string, unknown>).body = 'text'))).toMatch(
      /body: expected an object of tags, got "text"/,
    );
    expect(() => parseRestPacket('not a packet')).toThrow(/packet: expected a JSON object/);
  });

  it('reads the list envelope of both endpoints and the id of a POSTed packet', () => {
    expect(packetListOf({ message: 'ok', result: [1, 2] }, 'GET packets/X')).toEqual([1, 2]);
    expect(packetListOf({ result: { DATA_TYPE: 'transaction', DATA: [3] } }, 'GET transactions/X/1/packets')).toEqual([
      3,
    ]);
    expect(() => packetListOf({ message: 'ok', packets: [] }, 'AMIE REST API answered GET packets/X')).toThrow(
      'AMIE REST API answered GET packets/X: expected {"message": ..., "result": [packet, ...]}, got an object with keys message, packets',
    );
    expect(postedPacketRecId({ message: 'ok', result: { header: { packet_rec_id: 77 } } })).toBe(77);
    expect(postedPacketRecId({ packet_rec_id: '78' })).toBe(78);
    expect(postedPacketRecId({ message: 'ok' })).toBeNull();
  });
});
