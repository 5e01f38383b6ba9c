/**
 * The one-node Slurm test cluster started by `test/slurm/cluster.sh start`:
 * whether it is there, and the few sacctmgr/sbatch/sacct steps tests need to
 * put real jobs into its accounting. Every program runs through execa with an
 * argument array; names are checked against strict patterns first.
 * And, for tests without the cluster, a stand-in that writes down the commands it is given.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { afterAll, beforeAll, inject } from 'vitest';
import { acquireLockFile } from '../../src/lockfile.js';
import { serviceAvailable } from './env.js';
import { SINFO, usableNode } from './slurm-probe.js';

/** ClusterName in the test cluster's slurm.conf, as sacct and sacctmgr report it. */
export const SLURM_TEST_CLUSTER = 'amietest';
/** The cluster's only (and default) partition. */
export const SLURM_TEST_PARTITION = 'batch';

const HOW_TO_ENABLE = 'run `bash test/slurm/cluster.sh start` (as root)';
const LOGIN_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
const ACCOUNT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Job states after which sacct's record of the job no longer changes. */
const FINISHED_STATES = new Set([
  'COMPLETED',
  'FAILED',
  'CANCELLED',
  'TIMEOUT',
  'NODE_FAIL',
  'OUT_OF_MEMORY',
  'PREEMPTED',
  'BOOT_FAIL',
  'DEADLINE',
  'REVOKED',
]);

let cachedReachable: boolean | undefined;

/** The run's answer, from the global setup; asked here only outside it. */
function clusterAnswers(): boolean {
  const provided = inject('slurmClusterAnswers');
  if (typeof provided === 'boolean') return provided;
  try {
    return usableNode(execaSync('sinfo', SINFO.args, SINFO.options));
  } catch {
    return false; // sinfo not installed
  }
}

/**
 * True when the test cluster takes jobs. The answer is cached for the test file.
 * Under AMIE_TEST_REQUIRE_SERVICES=1 a missing cluster fails instead of skipping.
 */
export function hasSlurm(): boolean {
  cachedReachable ??= clusterAnswers();
  return serviceAvailable('Slurm test cluster', cachedReachable, HOW_TO_ENABLE);
}

/** Title suffix that tells a reader of the test report why a Slurm test did not run. */
export function slurmSkipNote(): string {
  cachedReachable ??= clusterAnswers();
  return cachedReachable ? '' : ' [skipped: no Slurm test cluster]';
}

function checkAccount(name: string): void {
  if (!ACCOUNT_PATTERN.test(name)) {
    throw new Error(`Slurm account name ${JSON.stringify(name)} must match ${ACCOUNT_PATTERN}`);
  }
}

function checkLogin(login: string): void {
  if (!LOGIN_PATTERN.test(login)) {
    throw new Error(`login ${JSON.stringify(login)} must match ${LOGIN_PATTERN}`);
  }
}

async function sacctmgr(args: string[]): Promise<string> {
  const r = await execa('sacctmgr', args, { timeout: 30_000, stdin: 'ignore' });
  return r.stdout;
}

/** Creates the Slurm account on the test cluster unless it exists. */
export async function ensureSlurmAccount(name: string): Promise<void> {
  checkAccount(name);
  const existing = await sacctmgr(['-n', '-P', 'show', 'account', `where`, `name=${name}`, 'format=account']);
  if (existing.split('\n').some((l) => l.trim() === name)) return;
  await sacctmgr([
    '-i',
    'add',
    'account',
    name,
    `cluster=${SLURM_TEST_CLUSTER}`,
    `description=${name}`,
    `organization=${name}`,
  ]);
}

async function unixIds(login: string): Promise<{ uid: number; gid: number } | undefined> {
  const uid = await execa('id', ['-u', login], { reject: false, stdin: 'ignore' });
  if (uid.exitCode !== 0) return undefined;
  const gid = await execa('id', ['-g', login], { stdin: 'ignore' });
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Makes `login` a Unix user (without a home directory) and gives it an
 * association with `account`, which must exist. Works for root too, so root
 * can submit with `-A account`.
 */
export async function ensureSlurmUser(login: string, account: string): Promise<void> {
  checkLogin(login);
  checkAccount(account);
  if (!(await unixIds(login))) {
    await execa('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', login], { stdin: 'ignore' });
  }
  const assoc = await sacctmgr([
    '-n',
    '-P',
    'show',
    'assoc',
    'where',
    `user=${login}`,
    `account=${account}`,
    `cluster=${SLURM_TEST_CLUSTER}`,
    'format=user',
  ]);
  if (assoc.split('\n').some((l) => l.trim() === login)) return;
  await sacctmgr(['-i', 'add', 'user', login, `account=${account}`, `cluster=${SLURM_TEST_CLUSTER}`]);
}

/** The Slurm account `name` (made unless it exists) with root associated, so that a test can submit as root. */
export async function ensureRootAccount(name: string): Promise<void> {
  await ensureSlurmAccount(name);
  await ensureSlurmUser('root', name);
}

export interface TestJob {
  /** Slurm account charged (`-A`); the user needs an association with it. */
  account: string;
  /** Unix login that submits and runs the job; root when left out. */
  user?: string;
  /** Pretend GPUs to allocate (`--gres=gpu:N`); 0 for a CPU-only job. */
  gpus: number;
  /** How long the job sleeps. */
  seconds: number;
  partition?: string;
}

/** Submits `sleep N` as the given user and returns the job id. */
export async function submitJob(job: TestJob): Promise<string> {
  checkAccount(job.account);
  if (!Number.isInteger(job.gpus) || job.gpus < 0 || job.gpus > 4) {
    throw new Error(`gpus must be an integer from 0 to 4 (the test node has four), got ${job.gpus}`);
  }
  if (!Number.isInteger(job.seconds) || job.seconds < 0) {
    throw new Error(`seconds must be a non-negative integer, got ${job.seconds}`);
  }
  const args = ['--parsable', '-A', job.account, '-o', '/dev/null', '-e', '/dev/null', '-n', '1', '--chdir', '/tmp'];
  // A time limit a little over the sleep, in minutes, so a stuck job cannot hold the node for long.
  args.push('-t', String(Math.ceil(job.seconds / 60) + 1));
  if (job.partition !== undefined) {
    if (!/^[A-Za-z0-9_-]+$/.test(job.partition)) throw new Error(`bad partition name ${JSON.stringify(job.partition)}`);
    args.push('-p', job.partition);
  }
  if (job.gpus > 0) args.push(`--gres=gpu:${job.gpus}`);
  args.push('--wrap', `sleep ${job.seconds}`);

  let ids: { uid: number; gid: number } | undefined;
  if (job.user !== undefined && job.user !== 'root') {
    checkLogin(job.user);
    ids = await unixIds(job.user);
    if (!ids) throw new Error(`Unix user ${job.user} does not exist; call ensureSlurmUser first`);
  }
  // slurmctld learns of a new association from slurmdbd a moment after
  // sacctmgr returns, so a first refusal of a fresh account is retried briefly.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await execa('sbatch', args, {
      timeout: 30_000,
      reject: false,
      stdin: 'ignore',
      cwd: '/tmp',
      ...(ids ?? {}),
    });
    if (r.exitCode === 0) return r.stdout.trim().split(';')[0]!;
    const fresh = /Invalid account|association/i.test(r.stderr);
    if (!fresh || Date.now() > deadline) {
      throw new Error(
        `sbatch -A ${job.account} as ${job.user ?? 'root'} failed (exit ${r.exitCode}): ${r.stderr.trim()}`,
      );
    }
    await new Promise((res) => setTimeout(res, 500));
  }
}

/**
 * Waits until sacct records every job as finished, and returns each job's
 * final state (COMPLETED, FAILED, ...). Throws with the states seen when the
 * time runs out.
 */
export async function waitForJobs(ids: string[], timeoutMs = 60_000): Promise<Map<string, string>> {
  for (const id of ids) if (!/^\d+$/.test(id)) throw new Error(`job id ${JSON.stringify(id)} is not a number`);
  const deadline = Date.now() + timeoutMs;
  let states = new Map<string, string>();
  for (;;) {
    const r = await execa('sacct', ['-a', '-X', '-n', '-P', '-j', ids.join(','), '--format', 'JobID,State'], {
      timeout: 15_000,
      reject: false,
      stdin: 'ignore',
    });
    if (r.exitCode === 0) {
      states = new Map();
      for (const line of r.stdout.split('\n')) {
        const [id, state] = line.split('|');
        // "CANCELLED by 0" carries the canceller after the state word.
        if (id && state) states.set(id, state.split(' ')[0]!);
      }
      if (ids.every((id) => FINISHED_STATES.has(states.get(id) ?? ''))) return states;
    }
    if (Date.now() > deadline) {
      const seen = ids.map((id) => `${id}=${states.get(id) ?? 'not in sacct'}`).join(', ');
      throw new Error(`Slurm jobs not finished after ${timeoutMs} ms: ${seen}`);
    }
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** `sacctmgr -n -P show …` as rows of fields. */
export async function sacctmgrRows(args: string[]): Promise<string[][]> {
  const out = await sacctmgr(['-n', '-P', 'show', ...args]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('|'));
}

/** A range of uids a test file gives its logins: far from any real user, so leftovers are recognisable. */
export interface TestUidRange {
  start: number;
  end: number;
}

/** Unix users (login -> uid) in a test uid range. */
export async function testUnixUsers(range: TestUidRange): Promise<Map<string, number>> {
  const r = await execa('getent', ['passwd'], { stdin: 'ignore' });
  const out = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const [login, , uid] = line.split(':');
    if (login && Number(uid) >= range.start && Number(uid) <= range.end) out.set(login, Number(uid));
  }
  return out;
}

/**
 * Removes what a test made: the Slurm accounts whose names start with `prefix` (their jobs
 * cancelled first) and their users, and every Unix user in the test's uid range.
 */
export async function removeTestSlurmObjects(prefix: string | undefined, uids: TestUidRange): Promise<void> {
  if (prefix) {
    const rows = await sacctmgrRows(['assoc', 'where', `cluster=${SLURM_TEST_CLUSTER}`, 'format=account,user']);
    const mine = rows.filter(([account = '']) => account.startsWith(prefix));
    const accounts = [...new Set(mine.map(([account]) => account!))];
    const users = [...new Set(mine.map(([, user = '']) => user).filter((u) => u && u !== 'root'))];
    if (accounts.length > 0) {
      await execa('scancel', [`--account=${accounts.join(',')}`], { reject: false, stdin: 'ignore' });
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const q = await execa('squeue', ['-h', `--account=${accounts.join(',')}`], { reject: false, stdin: 'ignore' });
        if (q.stdout.trim() === '') break;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    await removeSlurmUsersAndAccounts(users, accounts);
  }
  for (const login of (await testUnixUsers(uids)).keys()) {
    await execa('userdel', ['--remove', login], { reject: false, stdin: 'ignore' });
  }
}

/** Removes the Slurm users and the accounts named (either list may be empty); what is not there is no error. */
export async function removeSlurmUsersAndAccounts(users: string[], accounts: string[]): Promise<void> {
  if (users.length > 0)
    await execa('sacctmgr', ['-i', 'remove', 'user', 'where', `name=${users.join(',')}`], {
      reject: false,
      stdin: 'ignore',
    });
  if (accounts.length > 0)
    await execa('sacctmgr', ['-i', 'remove', 'account', 'where', `name=${accounts.join(',')}`], {
      reject: false,
      stdin: 'ignore',
    });
}

/** Submits as `user` under `account` until slurmctld has the new limit and refuses; returns sbatch's complaint. */
export async function expectSubmitRefused(account: string, user: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let id: string;
    try {
      id = await submitJob({ account, user, gpus: 0, seconds: 1 });
    } catch (err) {
      return (err as Error).message;
    }
    await execa('scancel', [id], { reject: false, stdin: 'ignore' });
    if (Date.now() > deadline) {
      throw new Error(
        `sbatch -A ${account} as ${user} was accepted (job ${id}): GrpSubmitJobs=0 is not enforced. slurmctld must run with ` +
          'AccountingStorageEnforce=associations,limits; `bash test/slurm/cluster.sh start` restarts it when its slurm.conf is newer',
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * The cluster's accounts, associations and Unix users are one machine's: two test files that
 * play scenarios on it at once make the same people with different uids. A file that changes
 * them calls this at its top, and such files take turns (a lock file, whichever worker runs them).
 */
export function takeTurnsOnTheCluster(): void {
  let release: (() => void) | undefined;
  beforeAll(async () => {
    release = await acquireLockFile(join(tmpdir(), 'amie-test-slurm-cluster.lock'), {
      waitMs: 30 * 60_000,
      retryMs: 500,
    });
  }, 31 * 60_000);
  afterAll(() => release?.());
}

/** One call of a commandRecorder program: its arguments and its environment. */
export interface RecordedCommand {
  argv: string[];
  env: Record<string, string>;
}

/**
 * A stand-in for sacctmgr, scancel or a site's useradd: a program in `dir` that writes down each
 * call's arguments and environment, as JSON, in `dir`/calls.jsonl and succeeds printing nothing.
 */
export function commandRecorder(dir: string): { program: string; calls: () => RecordedCommand[] } {
  const program = join(dir, 'record.mjs');
  const calls = join(dir, 'calls.jsonl');
  writeFileSync(
    program,
    `#!/usr/bin/env node\nimport { appendFileSync } from 'node:fs';\n` +
      `appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ argv: process.argv.slice(2), env: process.env }) + '\\n');\n`,
  );
  chmodSync(program, 0o755);
  return {
    program,
    calls: () =>
      existsSync(calls)
        ? readFileSync(calls, 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as RecordedCommand)
        : [],
  };
}
