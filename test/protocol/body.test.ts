import { describe, expect, it } from 'vitest';
import { PacketBody, type DataRow } from '../../src/protocol/index.js';

const row = (tag: string, seq: number, value: string | null, subtag: string | null = null): DataRow => ({
  tag,
  subtag,
  seq,
  value,
});

/** Code-point order, as toRows promises (locale order would vary by machine). */
const sortRows = (rows: DataRow[]) =>
  [...rows].sort((a, b) => {
    if (a.tag !== b.tag) return a.tag < b.tag ? -1 : 1;
    if (a.seq !== b.seq) return a.seq - b.seq;
    return (a.subtag ?? '') < (b.subtag ?? '') ? -1 : (a.subtag ?? '') > (b.subtag ?? '') ? 1 : 0;
  });

/** A request_account_create body as the AMIE tables hold it, with every value shape §5 describes. */
const RAC_ROWS: DataRow[] = [
  row('GrantNumber', 0, 'TG-ABC123'),
  row('ResourceList', 0, 'cluster.example.org'),
  row('UserFirstName', 0, 'Zoë'),
  row('UserLastName', 0, 'O\'Neil "the" 名前'),
  row('UserOrganization', 0, 'Example University\nDept. of Physics'),
  row('UserOrgCode', 0, '0012345'),
  row('UserRequestedLoginList', 0, ''),
  row('UserDnList', 0, '/C=US/O=Example/CN=Zoe'),
  row('UserDnList', 1, '/C=US/O=Other/CN=Zoe, Jr.'),
  row('UserDnList', 2, 'CN=tab\there'),
  row('SitePersonId', 0, 'zoe', 'PersonID'),
  row('SitePersonId', 0, 'X-PORTAL', 'Site'),
  row('SitePersonId', 1, 'zoe@example.org', 'PersonID'),
  row('SitePersonId', 1, 'X-ORCID', 'Site'),
  row('AcademicDegree', 0, 'PhD', 'Degree'),
  row('AcademicDegree', 0, 'Physics', 'Field'),
  row('RoleList', 0, 'PI'),
  row('SomeNewTag', 0, 'kept'),
  row('SomeNewComposite', 0, 'a', 'X'),
];

describe('PacketBody', () => {
  it('round trips rows -> JSON -> rows, with lists, composites and awkward text', () => {
    const body = PacketBody.fromRows(RAC_ROWS);
    expect(body.problems).toEqual([]);
    const json = body.toJSON();
    expect(json).toMatchObject({
      ResourceList: ['cluster.example.org'],
      UserRequestedLoginList: [''],
      RoleList: ['PI'],
      UserDnList: ['/C=US/O=Example/CN=Zoe', '/C=US/O=Other/CN=Zoe, Jr.', 'CN=tab\there'],
      SitePersonId: [
        { PersonID: 'zoe', Site: 'X-PORTAL' },
        { PersonID: 'zoe@example.org', Site: 'X-ORCID' },
      ],
      AcademicDegree: [{ Degree: 'PhD', Field: 'Physics' }],
      UserLastName: 'O\'Neil "the" 名前',
      SomeNewTag: 'kept',
      SomeNewComposite: [{ X: 'a' }],
    });
    // Through real JSON text, as the REST API carries it.
    const again = PacketBody.fromJSON(JSON.parse(JSON.stringify(json)));
    expect(again.problems).toEqual([]);
    expect(again.toRows()).toEqual(sortRows(RAC_ROWS));
  });

  it('orders rows by tag, then seq, then subtag', () => {
    const rows = PacketBody.fromRows([...RAC_ROWS].reverse()).toRows();
    expect(rows.map((r) => `${r.tag}/${r.seq}/${r.subtag ?? '-'}`).slice(0, 6)).toEqual([
      'AcademicDegree/0/Degree',
      'AcademicDegree/0/Field',
      'GrantNumber/0/-',
      'ResourceList/0/-',
      'RoleList/0/-',
      'SitePersonId/0/PersonID',
    ]);
  });

  it('reads single values, lists and entries', () => {
    const body = PacketBody.fromRows(RAC_ROWS);
    expect(body.get('UserFirstName')).toBe('Zoë');
    expect(body.get('UserDnList')).toBe('/C=US/O=Example/CN=Zoe');
    expect(body.get('Absent')).toBeUndefined();
    expect(body.getList('UserRequestedLoginList')).toEqual(['']);
    expect(body.getEntries('SitePersonId')[1]).toEqual({ PersonID: 'zoe@example.org', Site: 'X-ORCID' });
    expect(body.has('GrantNumber')).toBe(true);
    expect(body.has('UserRequestedLoginList')).toBe(false);
    expect(body.has('Absent')).toBe(false);
    expect(body.tags()).toContain('SitePersonId');
  });

  it('shapes JSON by tag kind: lists always arrays, composites always objects, others by their rows', () => {
    const body = PacketBody.fromRows([
      row('ResourceList', 0, 'only'),
      row('JobIdentity', 0, '42', 'LocalJobID'),
      row('Odd', 0, 'a'),
      row('Odd', 1, 'b'),
      row('Plain', 0, null),
    ]);
    expect(body.toJSON()).toEqual({ ResourceList: ['only'], JobIdentity: [{ LocalJobID: '42' }], Odd: ['a', 'b'] });
  });

  it('edits: set, setList, setEntries, delete, clone', () => {
    const body = PacketBody.fromTags({ ProjectID: 'p-1', Gone: undefined, AlsoGone: null });
    expect(body.tags()).toEqual(['ProjectID']);
    body
      .set('ProjectID', 'p-2')
      .setList('DnList', ['a', 'b'])
      .setEntries('SitePersonId', [{ PersonID: 'x', Site: 'S' }]);
    const copy = body.clone();
    body.set('ProjectID', undefined).delete('DnList');
    expect(body.tags()).toEqual(['SitePersonId']);
    expect(copy.toRows()).toEqual([
      row('DnList', 0, 'a'),
      row('DnList', 1, 'b'),
      row('ProjectID', 0, 'p-2'),
      row('SitePersonId', 0, 'x', 'PersonID'),
      row('SitePersonId', 0, 'S', 'Site'),
    ]);
  });

  it('turns JSON numbers into text and takes a lone object as one composite entry', () => {
    const body = PacketBody.fromJSON({
      ServiceUnitsAllocated: 1000.5,
      NodeCount: 4,
      AcademicDegree: { Degree: 'MS', Field: 'CS' },
      ResourceList: ['r'],
    });
    expect(body.problems).toEqual([]);
    expect(body.get('ServiceUnitsAllocated')).toBe('1000.5');
    expect(body.getEntries('AcademicDegree')).toEqual([{ Degree: 'MS', Field: 'CS' }]);
  });

  describe('structural problems name the tag and never throw', () => {
    it('a seq gap', () => {
      const body = PacketBody.fromRows([row('DnList', 0, 'a'), row('DnList', 1, 'b'), row('DnList', 3, 'd')]);
      expect(body.problems).toEqual([{ tag: 'DnList', message: 'DnList: seq 2 is missing (rows have 0, 1, 3)' }]);
      expect(body.getList('DnList')).toEqual(['a', 'b', 'd']);
    });

    it('a huge seq is reported as a range, not enumerated', () => {
      const body = PacketBody.fromRows([row('DnList', 0, 'a'), row('DnList', 2_000_000_000, 'b')]);
      expect(body.problems[0]!.message).toBe('DnList: seqs 1-1999999999 are missing (rows have 0, 2000000000)');
    });

    it('a duplicate row keeps the first', () => {
      const body = PacketBody.fromRows([row('ProjectID', 0, 'p-1'), row('ProjectID', 0, 'p-2')]);
      expect(body.problems).toEqual([
        { tag: 'ProjectID', message: 'ProjectID: duplicate row for seq 0; the first one is kept' },
      ]);
      expect(body.get('ProjectID')).toBe('p-1');
    });

    it('a row without a tag', () => {
      const body = PacketBody.fromRows([
        { tag: null as unknown as string, subtag: null, seq: 0, value: 'stray' },
        row('ProjectID', 0, 'p-1'),
      ]);
      expect(body.problems).toHaveLength(1);
      expect(body.problems[0]!.message).toMatch(/data row 1 has no tag .*"stray"/);
      expect(body.tags()).toEqual(['ProjectID']);
    });

    it('a composite entry missing a subtag, a composite row without one, a list row with one', () => {
      const body = PacketBody.fromRows([
        row('SitePersonId', 0, 'zoe', 'PersonID'),
        row('AcademicDegree', 0, 'PhD'),
        row('DnList', 0, 'x', 'Weird'),
      ]);
      expect(body.problems.map((p) => p.message)).toEqual([
        'SitePersonId: entry at seq 0 has no Site',
        'AcademicDegree: row at seq 0 has no subtag; expected Degree and Field',
        'AcademicDegree: entry at seq 0 has no Degree or Field',
        'DnList: row at seq 0 has subtag Weird, but a list tag has none',
      ]);
    });

    it('a negative seq', () => {
      const body = PacketBody.fromRows([row('DnList', -1, 'x')]);
      expect(body.problems[0]!.message).toBe('DnList: seq -1 is not a non-negative integer');
    });

    it('JSON that is not an object of tags, or holds shapes a body cannot', () => {
      expect(PacketBody.fromJSON([1, 2]).problems[0]!.message).toMatch(/must be a JSON object of tags, got an array/);
      expect(PacketBody.fromJSON('text').problems[0]!.message).toMatch(/got a string/);
      const body = PacketBody.fromJSON({
        Mixed: ['a', { X: 'b' }],
        Nested: [{ X: { deep: 1 } }],
        ListOfLists: [['a']],
        Ok: 'fine',
      });
      expect(body.problems.map((p) => p.tag)).toEqual(['Mixed', 'Nested', 'ListOfLists']);
      expect(body.problems[0]!.message).toMatch(/^Mixed: the array mixes strings and objects/);
      expect(body.problems[1]!.message).toBe('Nested: entry 0 has an object for subtag X; expected a string');
      expect(body.problems[2]!.message).toBe('ListOfLists: item 0 is an array; expected a string');
      expect(body.get('Ok')).toBe('fine');
    });
  });
});
