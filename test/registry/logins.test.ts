import { describe, expect, it } from 'vitest';
import {
  LOGIN_PATTERN,
  asciiLetters,
  isAcceptableLogin,
  loginCandidates,
  loginFromName,
} from '../../src/registry/index.js';
import { nextAllocation } from '../../src/registry/index.js';

describe('login rules', () => {
  it('derives logins from names, accents taken off and everything else dropped', () => {
    expect(loginFromName('Jane', 'Doe')).toBe('jdoe');
    expect(loginFromName('José', 'Núñez')).toBe('jnunez');
    expect(loginFromName('Jane', "O'Neil-Smith")).toBe('joneilsmith');
    expect(loginFromName('Jane', 'Doe', 'first_last')).toBe('jane_doe');
    expect(loginFromName('', '')).toBe('user');
    expect(loginFromName('李', '小龙')).toBe('user');
    expect(loginFromName('4', 'Tran')).toBe('u4tran');
    expect(loginFromName('A'.repeat(100), 'B'.repeat(100)).length).toBeLessThanOrEqual(28);
    expect(asciiLetters('$(rm -rf /)\n; "x"')).toBe('rmrfx');
  });

  it('refuses system, reserved and malformed logins', () => {
    for (const bad of [
      'root',
      'daemon',
      'admin',
      'systemd-network',
      '_apt',
      'Root',
      '1abc',
      '-x',
      'a b',
      'a;b',
      '$(id)',
      'x'.repeat(33),
      '',
    ]) {
      expect(isAcceptableLogin(bad), bad).toBe(false);
    }
    expect(isAcceptableLogin('jdoe')).toBe(true);
    expect(isAcceptableLogin('jdoe', ['jdoe'])).toBe(false);
  });

  it('offers requested logins first, then the derived one and numbered variants, all well-formed', () => {
    const c = loginCandidates({
      requested: ['root', 'Bad', 'annlee', 'annlee'],
      firstName: 'Ann',
      lastName: 'Lee',
      variants: 3,
    });
    expect(c).toEqual(['annlee', 'alee', 'alee1', 'alee2', 'alee3']);
    const hostile = loginCandidates({ requested: ["'; DROP TABLE x; --"], firstName: '`id`', lastName: '$(reboot)' });
    for (const l of hostile) expect(l).toMatch(LOGIN_PATTERN);
    expect(loginCandidates({ firstName: 'R', lastName: 'Oot', variants: 1 })).toEqual(['root1']);
  });
});

describe('allocation actions', () => {
  const before = { serviceUnits: 100, startDate: '2026-01-01', endDate: '2026-12-31' };
  it('new and renewal replace, supplement-like types add, extension moves the end date', () => {
    expect(nextAllocation(null, 'new', 50, '2026-01-01', '2026-12-31')).toEqual({
      serviceUnits: 50,
      startDate: '2026-01-01',
      endDate: '2026-12-31',
    });
    expect(nextAllocation(before, 'renewal', 70, '2027-01-01', '2027-12-31')).toEqual({
      serviceUnits: 70,
      startDate: '2027-01-01',
      endDate: '2027-12-31',
    });
    expect(nextAllocation(before, 'supplement', 20, '2026-06-01', '2026-10-31')).toEqual({
      serviceUnits: 120,
      startDate: '2026-01-01',
      endDate: '2026-12-31',
    });
    expect(nextAllocation(before, 'transfer', -30, null, null).serviceUnits).toBe(70);
    expect(nextAllocation(before, 'extension', 999, null, '2027-03-31')).toEqual({
      serviceUnits: 100,
      startDate: '2026-01-01',
      endDate: '2027-03-31',
    });
  });
});
