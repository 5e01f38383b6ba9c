/**
 * Reading finished job allocations from Slurm's accounting with `sacct`.
 *
 * sacct runs with an argument array (never a shell), `TZ=UTC` and a fixed
 * `SLURM_TIME_FORMAT`, so its times parse the same on every site. Its output is
 * read line by line as it arrives: a month of a large cluster is millions of
 * lines, and memory must not grow with it.
 *
 * Every field asked for is set by Slurm or its administrators, never by the job's owner:
 * sacct prints text as it is, so a JobName (or Comment, WCKey) holding a newline and a
 * record-shaped tail would become a second, forged job. A line without exactly the fields
 * asked for is counted and skipped, never charged.
 */
import { commandEnv } from '../slurm/run.js';

/** The `--format` fields, in output order. No user text (JobName, Comment, WCKey): see above. */
export const SACCT_FIELDS = [
  'JobID',
  'JobIDRaw',
  'Cluster',
  'User',
  'Account',
  'Partition',
  'State',
  'Submit',
  'Start',
  'End',
  'Elapsed',
  'ElapsedRaw',
  'NNodes',
  'NCPUS',
  'AllocTRES',
] as const;
export type SacctField = (typeof SACCT_FIELDS)[number];

/**
 * Job states sacct is asked for (`-s`): the allocation has ended. CA=CANCELLED,
 * CD=COMPLETED, F=FAILED, NF=NODE_FAIL, TO=TIMEOUT, OOM=OUT_OF_MEMORY,
 * PR=PREEMPTED, DL=DEADLINE, RQ=REQUEUED (an earlier run of a job that was requeued:
 * its GPU time was used, and only `--duplicates` shows it).
 */
export const SACCT_STATES = ['CA', 'CD', 'F', 'NF', 'TO', 'OOM', 'PR', 'DL', 'RQ'] as const;

/** States whose allocation is over, as sacct prints them; anything else may still accrue time. */
const FINISHED_STATES = new Set([
  'COMPLETED',
  'CANCELLED',
  'FAILED',
  'NODE_FAIL',
  'TIMEOUT',
  'OUT_OF_MEMORY',
  'PREEMPTED',
  'DEADLINE',
  'BOOT_FAIL',
  'REQUEUED',
]);

export const SLURM_TIME_FORMAT = '%Y-%m-%dT%H:%M:%S';

export interface SacctJob {
  /** Cluster the job ran on, so output of several clusters stays attributable. */
  cluster: string;
  /** Job id as sacct displays it, e.g. `123`, `123_4` (array task), `200+1` (heterogeneous component). */
  jobId: string;
  /** Slurm's own unique id of this allocation (differs from jobId for array tasks and het components). */
  jobIdRaw: string;
  /** The id before any array or het suffix. */
  baseJobId: string;
  arrayTaskId?: string;
  hetComponent?: string;
  user: string;
  account: string;
  partition: string;
  /** Job state without the ` by UID` that sacct appends to CANCELLED. */
  state: string;
  /** UTC; null where sacct prints Unknown or None. */
  submit: Date | null;
  start: Date | null;
  end: Date | null;
  elapsedSeconds: number;
  nodes: number;
  cpus: number;
  /** AllocTRES as numbers: billing, cpu, node, gres/gpu, gres/gpu:TYPE ... and mem in MB. */
  tres: Record<string, number>;
  /** Allocated GPUs: gres/gpu, or the sum of gres/gpu:TYPE when Slurm gave only typed counts. */
  gpus: number;
}

export interface SacctQuery {
  /** Jobs that ended at or after this instant ... */
  since: Date;
  /** ... and before this one (sacct's --endtime). */
  until: Date;
  /** `--clusters` value: names, or 'all'. Absent: the cluster sacct is configured for. */
  clusters?: string[] | 'all';
  /** Program to run; default `sacct` from PATH. */
  sacctPath?: string;
  /** Appended after the toolkit's own arguments, for site-specific filters. */
  extraArgs?: string[];
  /**
   * sacct is stopped, and SacctError thrown, when it prints nothing for this long while it
   * is being read (a hung slurmdbd must not hold the usage lock for ever). Default 600 s.
   */
  timeoutMs?: number;
}

export const DEFAULT_SACCT_TIMEOUT_MS = 600_000;

export interface SacctSkip {
  skip: string;
}
export interface SacctSkippedLine extends SacctSkip {
  line: string;
}
export type SacctRecord = SacctJob | SacctSkippedLine;

export function isSacctSkip(r: SacctJob | SacctSkip): r is SacctSkip {
  return 'skip' in r;
}

/** sacct failed to run or exited non-zero; `command` and `stderr` say what to look at. */
export class SacctError extends Error {
  override name = 'SacctError';
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** sacct's time arguments, in UTC because sacctEnv() sets TZ=UTC. */
export function formatSacctTime(d: Date): string {
  if (Number.isNaN(d.getTime())) throw new RangeError('sacct time window: invalid Date');
  return d.toISOString().slice(0, 19);
}

const CLUSTER_NAME = /^[A-Za-z0-9_.-]+$/;

export function sacctArgs(q: SacctQuery): string[] {
  if (!(q.since.getTime() < q.until.getTime())) {
    throw new RangeError(
      `sacct time window: since (${formatSacctTime(q.since)}Z) must be before until (${formatSacctTime(q.until)}Z)`,
    );
  }
  const args = [
    '--allusers',
    '--allocations',
    // Every accounting record of a job, not only its last: each run of a requeued job is one.
    '--duplicates',
    '--noheader',
    '--parsable2',
    // Unit conversion rounds (1536M would print as 1.50G, large counts as K): ask for raw numbers.
    '--noconvert',
    `--state=${SACCT_STATES.join(',')}`,
    `--starttime=${formatSacctTime(q.since)}`,
    `--endtime=${formatSacctTime(q.until)}`,
    `--format=${SACCT_FIELDS.join(',')}`,
  ];
  if (q.clusters === 'all') {
    args.push('--clusters=all');
  } else if (q.clusters && q.clusters.length > 0) {
    for (const c of q.clusters) {
      if (!CLUSTER_NAME.test(c)) {
        throw new Error(`usage.clusters: "${c}" is not a Slurm cluster name (letters, digits, _ . - only)`);
      }
    }
    args.push(`--clusters=${q.clusters.join(',')}`);
  }
  if (q.extraArgs) args.push(...q.extraArgs);
  return args;
}

export function sacctEnv(): Record<string, string> {
  // Only the small environment every site command gets (no API key, token or DSN reaches sacct).
  return { ...commandEnv(), TZ: 'UTC', SLURM_TIME_FORMAT };
}

const JOB_ID = /^(\d+)(?:_(\d+|\[[^\]]*\]))?(?:\+(\d+))?(?:\.(\S+))?$/;
const TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/;
const ELAPSED = /^(?:(\d+)-)?(\d+):(\d{2}):(\d{2})$/;
const UNSIGNED = /^\d+$/;

/** A sacct time in UTC; null for the words sacct uses when there is no time. */
function parseTime(s: string): Date | null | undefined {
  if (s === '' || s === 'Unknown' || s === 'None' || s === 'N/A') return null;
  const m = TIME.exec(s);
  if (!m) return undefined;
  const d = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** `[D-]HH:MM:SS` in seconds; the fallback when ElapsedRaw is missing. */
export function parseElapsed(s: string): number | undefined {
  const m = ELAPSED.exec(s);
  if (!m) return undefined;
  return (m[1] ? +m[1] * 86400 : 0) + +m[2]! * 3600 + +m[3]! * 60 + +m[4]!;
}

const UNIT_POWER: Record<string, number> = { K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 };

/**
 * AllocTRES, e.g. `billing=4,cpu=4,gres/gpu:a100=2,gres/gpu=2,mem=16G,node=1`.
 * Memory is Slurm's MB-based count, so mem is stored in MB (16G → 16384, 512K → 0.5);
 * other counts take a suffix as powers of 1024 of the plain count.
 * Returns undefined when an entry is not `name=number[unit]`.
 */
export function parseTres(s: string): Record<string, number> | undefined {
  // Keyed by sacct text: no prototype, so a TRES named `__proto__` is plain data.
  const tres = Object.create(null) as Record<string, number>;
  if (s === '') return tres;
  for (const part of s.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    const name = part.slice(0, eq);
    const m = /^(\d+(?:\.\d+)?)([KMGTPE]?)$/.exec(part.slice(eq + 1));
    if (!m) return undefined;
    let value = Number(m[1]);
    const unit = m[2]!;
    if (name === 'mem') {
      value *= 1024 ** ((unit ? UNIT_POWER[unit]! : 2) - 2);
    } else if (unit) {
      value *= 1024 ** UNIT_POWER[unit]!;
    }
    tres[name] = value;
  }
  return tres;
}

/** gres/gpu when present (Slurm adds it beside typed counts); else the typed counts summed. */
function gpusOf(tres: Record<string, number>): number {
  if (tres['gres/gpu'] !== undefined) return tres['gres/gpu'];
  let sum = 0;
  for (const [k, v] of Object.entries(tres)) if (k.startsWith('gres/gpu:')) sum += v;
  return sum;
}

/**
 * One line of sacct output (in SACCT_FIELDS order) to a job, or a reason it is
 * not one: an allocation that has not ended, a pending array range, a job step,
 * or a malformed line. `lineNo` only makes the reason easier to find.
 */
export function parseSacctLine(line: string, lineNo?: number): SacctJob | SacctSkip {
  const at = lineNo === undefined ? '' : `line ${lineNo}: `;
  const f = line.replace(/\r$/, '').split('|');
  if (f.length !== SACCT_FIELDS.length) {
    return {
      skip: `${at}malformed: ${f.length} fields, expected ${SACCT_FIELDS.length} (${SACCT_FIELDS.join('|')})`,
    };
  }
  const [
    jobId,
    jobIdRaw,
    cluster,
    user,
    account,
    partition,
    rawState,
    submitS,
    startS,
    endS,
    elapsedS,
    elapsedRawS,
    nodesS,
    cpusS,
    tresS,
  ] = f as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];

  const id = JOB_ID.exec(jobId);
  if (!id) return { skip: `${at}malformed JobID "${jobId}"` };
  const [, baseJobId, arrayPart, hetComponent, step] = id;
  if (step !== undefined) return { skip: `${at}job ${jobId} is a job step, not an allocation` };
  if (arrayPart?.startsWith('[')) {
    return { skip: `${at}job ${jobId} is an array range whose tasks never started` };
  }
  if (!UNSIGNED.test(jobIdRaw)) return { skip: `${at}job ${jobId}: bad JobIDRaw "${jobIdRaw}"` };

  const state = rawState.split(' ')[0] ?? '';
  if (!FINISHED_STATES.has(state)) {
    return { skip: `${at}job ${jobId} has not finished (state ${state || 'empty'}); it is read once it ends` };
  }

  const submit = parseTime(submitS);
  const start = parseTime(startS);
  const end = parseTime(endS);
  if (submit === undefined) return { skip: `${at}job ${jobId}: bad Submit time "${submitS}"` };
  if (start === undefined) return { skip: `${at}job ${jobId}: bad Start time "${startS}"` };
  if (end === undefined) return { skip: `${at}job ${jobId}: bad End time "${endS}"` };
  if (end === null) {
    return { skip: `${at}job ${jobId} has no End time (state ${state}); it is read once it ends` };
  }

  const elapsedSeconds = UNSIGNED.test(elapsedRawS) ? Number(elapsedRawS) : parseElapsed(elapsedS);
  if (elapsedSeconds === undefined) {
    return { skip: `${at}job ${jobId}: bad ElapsedRaw "${elapsedRawS}" and Elapsed "${elapsedS}"` };
  }
  if (!UNSIGNED.test(nodesS)) return { skip: `${at}job ${jobId}: bad NNodes "${nodesS}"` };
  if (!UNSIGNED.test(cpusS)) return { skip: `${at}job ${jobId}: bad NCPUS "${cpusS}"` };
  const tres = parseTres(tresS);
  if (!tres) return { skip: `${at}job ${jobId}: bad AllocTRES "${tresS}"` };

  const job: SacctJob = {
    cluster,
    jobId,
    jobIdRaw,
    baseJobId: baseJobId!,
    user,
    account,
    partition,
    state,
    submit,
    start,
    end,
    elapsedSeconds,
    nodes: Number(nodesS),
    cpus: Number(cpusS),
    tres,
    gpus: gpusOf(tres),
  };
  if (arrayPart !== undefined) job.arrayTaskId = arrayPart;
  if (hetComponent !== undefined) job.hetComponent = hetComponent;
  return job;
}

/** Parses lines one at a time; blank lines are ignored, everything else yields a job or a skip. */
export async function* parseSacctStream(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<SacctRecord> {
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    const r = parseSacctLine(line, lineNo);
    yield isSacctSkip(r) ? { skip: r.skip, line } : r;
  }
}

/**
 * Runs sacct for the query's window and yields each finished allocation as it is
 * read. Stops sacct if the caller stops iterating or `signal` aborts, and when it prints
 * nothing for `timeoutMs` while being waited for (time the caller spends on a batch does
 * not count, so a slow Usage API cannot make a healthy sacct time out).
 * Throws SacctError naming the command and sacct's stderr when it cannot run, exits
 * non-zero or times out.
 */
export async function* readSacct(q: SacctQuery, opts: { signal?: AbortSignal } = {}): AsyncGenerator<SacctRecord> {
  const program = q.sacctPath ?? 'sacct';
  const args = sacctArgs(q);
  const command = [program, ...args].join(' ');
  const timeoutMs = q.timeoutMs ?? DEFAULT_SACCT_TIMEOUT_MS;
  // Loaded only here, when sacct runs: the rest of the usage code (and its tests) does without it.
  const { execa } = await import('execa');
  const subprocess = execa(program, args, {
    env: sacctEnv(),
    extendEnv: false,
    stdin: 'ignore',
    // stdout is consumed line by line below; keeping it too would hold the whole output.
    buffer: { stdout: false, stderr: true },
    maxBuffer: { stderr: 1_000_000 },
    reject: false,
    forceKillAfterDelay: 5000,
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
  });
  let timedOut = false;
  /** Awaits `p` with the watchdog armed: sacct is stopped if it does not come in time. */
  const watched = async <T>(p: Promise<T>): Promise<T> => {
    const timer = setTimeout(() => {
      timedOut = true;
      subprocess.kill();
    }, timeoutMs);
    try {
      return await p;
    } finally {
      clearTimeout(timer);
    }
  };
  const lines = subprocess.iterable({ from: 'stdout' })[Symbol.asyncIterator]();
  const stream = async function* (): AsyncGenerator<string> {
    try {
      for (;;) {
        const next = await watched(lines.next());
        if (next.done) return;
        yield next.value;
      }
    } finally {
      await lines.return?.();
    }
  };
  let finished = false;
  try {
    try {
      yield* parseSacctStream(stream());
    } catch (err) {
      // The iterable fails when sacct does; the awaited result below says why more precisely.
      const result = await subprocess;
      finished = true;
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw sacctFailure(command, result, err, timedOut ? timeoutMs : undefined);
    }
    const result = await watched(subprocess);
    finished = true;
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (result.failed || timedOut) throw sacctFailure(command, result, undefined, timedOut ? timeoutMs : undefined);
  } finally {
    if (!finished) {
      subprocess.kill();
      await subprocess.catch(() => undefined);
    }
  }
}

interface ExecaOutcome {
  failed: boolean;
  exitCode?: number;
  signal?: string;
  stderr?: unknown;
  originalMessage?: string;
  cause?: unknown;
}

function sacctFailure(command: string, result: ExecaOutcome, iterError: unknown, timedOutAfterMs?: number): SacctError {
  const stderr = typeof result.stderr === 'string' ? result.stderr.trim() : '';
  let why: string;
  if (timedOutAfterMs !== undefined) {
    why = `printed nothing for ${timedOutAfterMs / 1000} s and was stopped (usage.sacctTimeoutSeconds)`;
  } else if (result.exitCode !== undefined) why = `exited with code ${result.exitCode}`;
  else if (result.signal) why = `was killed by ${result.signal}`;
  else why = `could not run (${result.originalMessage ?? String(result.cause ?? iterError)})`;
  const detail = stderr ? `: ${stderr}` : '';
  return new SacctError(`sacct ${why}${detail} (command: ${command})`, command, result.exitCode, stderr, {
    cause: result.cause ?? iterError ?? result,
  });
}
