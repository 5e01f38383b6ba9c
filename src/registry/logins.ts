/**
 * Login rules. Names and requested logins come from the other side of the protocol and end up
 * as Unix user names and in site scripts' argument lists, so nothing reaches a login that does
 * not match LOGIN_PATTERN and is not a plain, non-system name.
 */

/** What useradd and Slurm accept everywhere: lower case, no leading digit or dash, at most 32. */
export const LOGIN_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
export const LOGIN_MAX_LENGTH = 32;

/** System and service accounts a person must never get, whatever they ask for. */
export const SYSTEM_LOGINS: readonly string[] = [
  'root',
  'bin',
  'daemon',
  'adm',
  'admin',
  'administrator',
  'lp',
  'sync',
  'shutdown',
  'halt',
  'mail',
  'news',
  'uucp',
  'operator',
  'games',
  'gopher',
  'ftp',
  'nobody',
  'nfsnobody',
  'nogroup',
  'sys',
  'man',
  'proxy',
  'www-data',
  'www',
  'backup',
  'list',
  'irc',
  'gnats',
  'sshd',
  'ssh',
  'postgres',
  'mysql',
  'mariadb',
  'slurm',
  'munge',
  'apache',
  'nginx',
  'httpd',
  'sudo',
  'wheel',
  'staff',
  'users',
  'user',
  'guest',
  'support',
  'help',
  'info',
  'security',
  'abuse',
  'postmaster',
  'webmaster',
  'hostmaster',
  'noreply',
  'no-reply',
  'dbus',
  'polkitd',
  'messagebus',
  'syslog',
  'ntp',
  'chrony',
  'rpc',
  'rpcuser',
  'tss',
  'avahi',
  'colord',
  'pulse',
  'nscd',
  'ldap',
  'openldap',
  'named',
  'bind',
  'dnsmasq',
  'tcpdump',
  'docker',
  'podman',
  'systemd',
  'amie',
  'toor',
  'test',
  'kmem',
  'tty',
  'disk',
  'audio',
  'video',
  'cdrom',
  'floppy',
  'tape',
  'dialout',
  'input',
  'render',
  'kvm',
  'shadow',
  'utmp',
  'plugdev',
];

const SYSTEM_LOGIN_SET = new Set(SYSTEM_LOGINS);

/** Families of system names (systemd-network, _apt …). */
const SYSTEM_PREFIXES = ['systemd-', '_'];

/** jdoe, or john_doe (a dot would be outside LOGIN_PATTERN). */
export type LoginStyle = 'first-initial-last' | 'first_last';

export function isReservedLogin(login: string, extraReserved: Iterable<string> = []): boolean {
  if (SYSTEM_LOGIN_SET.has(login)) return true;
  if (SYSTEM_PREFIXES.some((p) => login.startsWith(p))) return true;
  for (const r of extraReserved) if (r === login) return true;
  return false;
}

/** A login a person may be given: the right shape and not a system or reserved name. */
export function isAcceptableLogin(login: string, extraReserved: Iterable<string> = []): boolean {
  return LOGIN_PATTERN.test(login) && !isReservedLogin(login, extraReserved);
}

/**
 * Lower-case ASCII letters and digits only: accents are taken off (José → jose), everything
 * else (quotes, `$(…)`, spaces, newlines, other scripts) is dropped.
 */
export function asciiLetters(name: string | undefined): string {
  return (name ?? '')
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/ß/g, 'ss')
    .replace(/[æ]/g, 'ae')
    .replace(/[ø]/g, 'o')
    .replace(/[łđ]/g, (c) => (c === 'ł' ? 'l' : 'd'))
    .replace(/[^a-z0-9]/g, '');
}

/**
 * The login derived from a name, before any conflict is resolved. Room is left for a numeric
 * suffix so a taken base can still grow one within the 32-character limit.
 */
export function loginFromName(
  first: string | undefined,
  last: string | undefined,
  style: LoginStyle = 'first-initial-last',
): string {
  const f = asciiLetters(first);
  const l = asciiLetters(last);
  let base = style === 'first_last' ? (f && l ? `${f}_${l}` : f || l) : `${f.slice(0, 1)}${l}` || f;
  if (base.length === 0) return 'user';
  if (/^[0-9]/.test(base)) base = `u${base}`;
  return base.slice(0, LOGIN_MAX_LENGTH - 4);
}

export interface LoginRequest {
  /** Logins the request asks for, in order of preference (UserRequestedLoginList / PiRequestedLoginList). */
  requested?: readonly string[];
  firstName?: string;
  lastName?: string;
  style?: LoginStyle;
  reserved?: Iterable<string>;
  /** How many numbered variants of the derived login to offer (jdoe1, jdoe2 …). */
  variants?: number;
}

/**
 * Every login the person could get, best first: the requested ones that are acceptable, then
 * the one derived from the name, then numbered variants. The caller takes the first that is free.
 */
export function loginCandidates(req: LoginRequest): string[] {
  const reserved = new Set(req.reserved ?? []);
  const out = new Set<string>();
  const add = (login: string) => {
    if (!out.has(login) && isAcceptableLogin(login, reserved)) out.add(login);
  };
  for (const r of req.requested ?? []) add(r.trim());
  const base = loginFromName(req.firstName, req.lastName, req.style);
  add(base);
  const variants = req.variants ?? 200;
  // A digit suffix keeps an acceptable base in LOGIN_PATTERN and out of the system families,
  // so the variants only need the reserved-name and duplicate checks (this runs per packet).
  const shapeOk = LOGIN_PATTERN.test(base) && !SYSTEM_PREFIXES.some((p) => base.startsWith(p));
  for (let n = 1; n <= variants; n++) {
    const login = `${base}${n}`;
    if (!shapeOk) add(login);
    else if (!out.has(login) && !SYSTEM_LOGIN_SET.has(login) && !reserved.has(login)) out.add(login);
  }
  return [...out];
}
