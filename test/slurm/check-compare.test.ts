/**
 * The comparison behind `amie slurm check` on parsed fixtures, no cluster needed: sacctmgr's
 * and getent's output read as hostile text (field counts, names like `__proto__`, `|` and
 * options), each kind of difference, what is foreign, and the repair commands planned.
 */
import { describe, expect, it } from 'vitest';
import { compareSlurm, parsePasswd, planRepairs, type CompareRules, type RegistryView } from '../../src/slurm/check.js';
import { parseAssociations, parseCoordinators } from '../../src/slurm/index.js';
import type { RegistryAccount, RegistryPerson, RegistryProject } from '../../src/registry/index.js';

const person = (personId: string, login: string | null, uid: number | null, mergedInto: string | null = null) =>
  ({
    personId,
    globalId: null,
    firstName: 'Ann',
    middleName: null,
    lastName: personId,
    email: null,
    organization: 'Example U',
    orgCode: null,
    details: {},
    login,
    uid,
    mergedInto,
  }) satisfies RegistryPerson & { mergedInto: string | null };

const project = (projectId: string, pi: string, piLogin: string, active: boolean, serviceUnits: number) =>
  ({
    projectId,
    grantNumber: `G-${projectId}`,
    title: `Title of ${projectId}`,
    piPersonId: pi,
    resource: 'r1',
    active,
    serviceUnits,
    startDate: null,
    endDate: null,
    slurmAccount: projectId.toLowerCase(),
    piLogin,
  }) satisfies RegistryProject & { piLogin: string | null };

const account = (personId: string, projectId: string, login: string | null, active = true): RegistryAccount => ({
  personId,
  projectId,
  resource: 'r1',
  active,
  login,
});

const rules: CompareRules = {
  clustersOf: () => ['c1'],
  accountFor: (p) => p.slurmAccount ?? p.projectId.toLowerCase(),
  allocation: { tres: 'gres/gpu', minutesPerUnit: 60 },
  usesUid: true,
};

const registry: RegistryView = {
  people: [
    person('P1', 'ann', 5001),
    person('P2', 'bob', 5002),
    person('P3', 'cy', 5003),
    person('P4', 'old', 5004, 'P2'),
  ],
  projects: [project('PA', 'P1', 'ann', true, 10), project('PB', 'P3', 'cy', false, 2)],
  accounts: [account('P1', 'PA', 'ann'), account('P2', 'PA', 'bob'), account('P3', 'PB', 'cy', false)],
};

/** What the handler leaves: every association, limit and coordinator as the registry says. */
const MATCHING = [
  'c1|root||||',
  'c1|root|root|||',
  'c1|pa||root|gres/gpu=600|',
  'c1|pa|ann|pa||',
  'c1|pa|bob|pa||',
  'c1|pb||root|cpu=10,gres/gpu=120|0',
  'c1|pb|cy|pb||0',
].join('\n');
const COORDS = 'root|\nann|pa\ncy|pb\nbob|\n';
const UNIX = new Map([
  ['ann', 5001],
  ['bob', 5002],
  ['cy', 5003],
]);

const view = (assoc: string, coords = COORDS, unix: ReadonlyMap<string, number> = UNIX) => ({
  clusters: ['c1'],
  associations: parseAssociations(assoc),
  coordinators: parseCoordinators(coords),
  unixUsers: unix,
});
const summary = (assoc: string, coords = COORDS, unix: ReadonlyMap<string, number> = UNIX) => {
  const r = compareSlurm(registry, view(assoc, coords, unix), rules);
  return { differences: r.differences.map((d) => `${d.project} ${d.kind} ${d.detail}`), foreign: r.foreign };
};

describe('reading sacctmgr and getent output', () => {
  it('refuses lines without their fields, and keys every table by outside text in a Map', () => {
    expect(() => parseAssociations('c1|pa|ann|pa||')).not.toThrow();
    expect(() => parseAssociations('c1|pa|ann|pa|')).toThrow(/line 1 has 5 fields, expected 6/);
    expect(() => parseAssociations('c1|pa|ann|pa|||x')).toThrow(/line 1 has 7 fields, expected 6/);
    expect(() => parseAssociations('c1|pa|ann|pa||many')).toThrow(/GrpSubmitJobs "many" is not a number/);
    expect(() => parseCoordinators('ann|pa|x')).toThrow(/line 1 has 3 fields, expected 2/);
    expect(() => parsePasswd('ann:x:notanumber:1:g:/h:/bin/sh')).toThrow(/not a passwd entry/);

    const [a] = parseAssociations('c1|__proto__|constructor|pa|__proto__=5,gres/gpu=,cpu=x,gres/gpu=7|');
    expect(a!.grpTresMins).toEqual(
      new Map([
        ['__proto__', 5],
        ['gres/gpu', 7],
      ]),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const coords = parseCoordinators('__proto__|pa,constructor\nhasOwnProperty|');
    expect([...coords.keys()]).toEqual(['__proto__', 'hasOwnProperty']);
    expect([...coords.get('__proto__')!]).toEqual(['pa', 'constructor']);
    expect(parsePasswd('__proto__:x:7:7::/:/bin/sh\n')).toEqual(new Map([['__proto__', 7]]));
  });
});

describe('compareSlurm', () => {
  it('finds nothing when Slurm holds what the registry says; other TRES and Slurm’s root are not its business', () => {
    expect(summary(MATCHING)).toEqual({ differences: [], foreign: [] });
  });

  it('finds each kind of difference, sorted by project and kind', () => {
    const drifted = [
      'c1|root||||',
      'c1|pa||root|gres/gpu=5|0',
      'c1|pa|bob|pa||0',
      'c1|pa|eve|pa||',
      'c1|pa|old|pa||',
      'c1|pb||root|cpu=10|',
      'c1|pb|cy|pb||',
    ].join('\n');
    const r = summary(drifted, 'bob|pa\nann|\n', new Map([['ann', 9]]));
    expect(r.differences).toEqual([
      'PA unix-user-missing Unix user bob missing',
      'PA unix-uid Unix user ann has uid 9, the registry gave it 5001 (not repaired: a person must decide)',
      'PA allocation GrpTRESMins on c1 is gres/gpu=5; the allocation (10 SUs) gives gres/gpu=600',
      'PA account-submit GrpSubmitJobs=0 on c1, but the project is active: its jobs are refused',
      'PA user-missing Slurm user ann (active account) missing on c1',
      'PA user-submit Slurm user bob has GrpSubmitJobs=0 on c1, but the account is active: its jobs are refused',
      'PA user-extra Slurm user eve on c1 has no account of the project in the registry, and can submit',
      'PA user-extra Slurm user old on c1 is the login of a person merged into P2, and can still submit',
      'PA coordinator-missing the PI ann does not coordinate pa',
      "PA coordinator-extra bob coordinates pa but is not the project's PI in the registry",
      'PB unix-user-missing Unix user cy missing',
      'PB allocation GrpTRESMins on c1 is unset for gres/gpu; the allocation (2 SUs) gives gres/gpu=120',
      'PB account-submit GrpSubmitJobs unset on c1, but the project is inactive: it can still submit',
      'PB user-submit Slurm user cy has GrpSubmitJobs unset on c1, but the account is inactive: it can still submit',
      'PB coordinator-missing the PI cy does not coordinate pb',
    ]);
  });

  it('lists blocked strangers and accounts of no project apart; a missing account and an account on a cluster of no account', () => {
    const assoc = [
      'c1|root||||',
      'c1|pa|ann|pa||', // pa's own association is gone
      'c1|pa|bob|pa||',
      'c1|pa|eve|pa||0', // blocked stranger: foreign
      'c1|pa|old|pa||0', // blocked retired login: the registry's, not foreign
      'c1|pb||root|gres/gpu=120|0',
      'c1|pb|cy|pb||0',
      'c2|pb||root||', // on a cluster where pb has no account
      'c1|__proto__||root||',
      'c1|__proto__|constructor|__proto__||',
      'c1|hasownproperty||root||',
      'c3|elsewhere||root||', // not a checked cluster
    ].join('\n');
    const r = compareSlurm(registry, { ...view(assoc), clusters: ['c1', 'c2'] }, rules);
    expect(r.differences.map((d) => [d.project, d.kind, d.cluster])).toEqual([
      ['PA', 'account-missing', 'c1'],
      ['PB', 'account-extra', 'c2'],
    ]);
    expect(r.foreign).toEqual([
      {
        cluster: 'c1',
        account: '__proto__',
        user: null,
        detail: "not a registry project's account (1 user association)",
      },
      {
        cluster: 'c1',
        account: 'hasownproperty',
        user: null,
        detail: "not a registry project's account (0 user associations)",
      },
      { cluster: 'c1', account: 'pa', user: 'eve', detail: 'blocked; not an account of PA in the registry' },
    ]);
  });

  it('plans the handler’s commands; a name sacctmgr would refuse gets none, and says why', () => {
    const assoc = [
      'c1|root||||',
      'c1|pa|bob|pa||',
      'c1|pa|--evil=x|pa||',
      'c1|pa|a b|pa||',
      'c1|pb||root|gres/gpu=120|0',
      'c1|pb|cy|pb||0',
    ].join('\n');
    const compared = compareSlurm(registry, view(assoc), rules);
    const planned = planRepairs(
      compared.differences,
      {
        allocation: rules.allocation,
        parentAccount: 'amie',
        sacctmgrPath: '/usr/bin/sacctmgr',
        createUserArgv: (p, pr, a) => ['make-user', p.login!, pr.projectId, a],
      },
      (c) => c,
    );
    const fixes = Object.fromEntries(planned.map((d) => [`${d.kind} ${d.user ?? ''}`, d.fix]));
    expect(fixes['account-missing ']).toEqual([
      [
        '/usr/bin/sacctmgr',
        '-i',
        'add',
        'account',
        'pa',
        'cluster=c1',
        'description=Title of PA',
        'organization=Example U',
        'parent=amie',
      ],
      [
        '/usr/bin/sacctmgr',
        '-i',
        'modify',
        'account',
        'where',
        'name=pa',
        'cluster=c1',
        'set',
        'GrpTRESMins=gres/gpu=600',
      ],
    ]);
    expect(fixes['user-missing ann']).toEqual([
      ['/usr/bin/sacctmgr', '-i', 'add', 'user', 'ann', 'account=pa', 'cluster=c1'],
    ]);
    expect(fixes['user-extra --evil=x']).toEqual([]);
    expect(fixes['user-extra a b']).toEqual([]);
    expect(planned.find((d) => d.user === '--evil=x')!.detail).toMatch(
      /\(not repairable here: Slurm user "--evil=x" is not usable with sacctmgr: expected/,
    );
    // Differences the planner passes on carry no registry record.
    expect(Object.keys(planned[0]!).sort()).toEqual([
      'cluster',
      'detail',
      'fix',
      'kind',
      'project',
      'slurmAccount',
      'user',
    ]);
  });
});
