/**
 * Synthetic sacct output (`--parsable2`, SACCT_FIELDS order) as a busy GPU cluster prints it, for
 * the usage benchmarks and the scale tests: mostly GPU jobs (plain and typed gres/gpu TRES), some
 * CPU-only jobs, array tasks, heterogeneous components, cancelled and timed-out jobs, a few job
 * steps and never-started array ranges (which the reader skips), a few still running, and
 * accounts no project is mapped to. Deterministic: line `i` is always the same line.
 * Also single jobs written out field by field, and a stand-in sacct program that prints them.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Queryable } from '../../src/db/index.js';
import { SACCT_FIELDS, parseSacctStream, type SacctField, type SacctRecord } from '../../src/usage/sacct.js';

/** The accounts the lines charge to; map these to projects. `zzz999` is deliberately left unmapped. */
export const BENCH_ACCOUNTS = ['abc123', 'def456', 'ghi789', 'jkl012'] as const;
const ALL_ACCOUNTS = [...BENCH_ACCOUNTS, 'zzz999'];

export interface SacctLineOptions {
  /** First job number (ids are first + i), so a later "day" gets jobs of its own. */
  firstJob?: number;
  /** Submit time of line 0; one job is submitted each second after it. */
  start?: Date;
  cluster?: string;
}

/** Line `i` of the synthetic output. */
export function sacctLine(i: number, opts: SacctLineOptions = {}): string {
  const first = opts.firstJob ?? 100_000;
  const base = (opts.start ?? new Date(Date.UTC(2024, 2, 1))).getTime();
  const cluster = opts.cluster ?? 'delta';
  const n = first + i;
  const submit = new Date(base + i * 1000);
  const start = new Date(submit.getTime() + 30_000);
  const elapsed = 60 + (i % 7200);
  const end = new Date(start.getTime() + elapsed * 1000);
  const t = (d: Date) => d.toISOString().slice(0, 19);
  const gpus = i % 5 === 0 ? 0 : 1 + (i % 4);
  const typed = i % 3 === 0;
  const tres = gpus
    ? `billing=${16 * gpus},cpu=16,${typed ? `gres/gpu:a100=${gpus},` : ''}gres/gpu=${gpus},mem=${64 * gpus}G,node=1`
    : 'billing=16,cpu=16,mem=64G,node=1';
  let id = String(n);
  if (i % 10 === 3) id = `${n}_${i % 100}`; // array task
  if (i % 97 === 5) id = `${n}+${i % 2}`; // heterogeneous component
  if (i % 211 === 7) id = `${n}.batch`; // a job step (sacct --allocations hides them; the reader skips them)
  if (i % 499 === 11) id = `${n}_[1-${i % 50}]`; // an array range that never started
  const state =
    i % 1000 === 7 ? 'RUNNING' : i % 50 === 1 ? 'CANCELLED by 1234' : i % 60 === 2 ? 'TIMEOUT' : 'COMPLETED';
  const running = state === 'RUNNING';
  return [
    id,
    String(n),
    cluster,
    `user${i % 300}`,
    ALL_ACCOUNTS[i % 41 === 0 ? 4 : i % 4],
    gpus ? 'gpu' : 'cpu',
    state,
    t(submit),
    t(start),
    running ? 'Unknown' : t(end),
    '01:00:00',
    String(elapsed),
    '1',
    '16',
    tres,
  ].join('|');
}

/** Lines 0 .. n-1. */
export function* sacctLines(n: number, opts: SacctLineOptions = {}): Generator<string> {
  for (let i = 0; i < n; i++) yield sacctLine(i, opts);
}

/**
 * Fills reported_jobs with `n` jobs reported by earlier runs (a year of a busy cluster: job ids
 * 1 .. n, below those sacctLine makes by default), in one statement, and analyses the table as
 * autovacuum would.
 */
export async function seedReportedJobs(db: Queryable, n: number): Promise<void> {
  await db.query(
    `INSERT INTO amie_toolkit.reported_jobs
       (cluster, job_id, submit_time, start_time, end_time, account, project_id, user_login, charge, charge_unit,
        sink, status, reported_at, updated_at)
     SELECT 'delta', g::text, t, t, t + interval '1 hour', 'abc123', 'p-abc123', 'user' || (g % 300), 1.5, 'gpu-hours',
            CASE WHEN g % 2 = 0 THEN 'amie-db' ELSE 'usage-api' END, 'reported', t, t
       FROM generate_series(1, $1::int) AS g, LATERAL (SELECT timestamptz '2023-01-01' + g * interval '30 s' AS t) AS s`,
    [n],
  );
  await db.exec('ANALYZE amie_toolkit.reported_jobs');
}

/**
 * One finished job, by sacct field: by default alice's hour on delta on 2024-03-01, four cores and
 * two GPUs charged to abc123; `fields` replaces any of it.
 */
export function sacctFields(id: string, fields: Partial<Record<SacctField, string>> = {}): Record<SacctField, string> {
  return {
    JobID: id,
    JobIDRaw: id,
    Cluster: 'delta',
    User: 'alice',
    Account: 'abc123',
    Partition: 'gpu',
    State: 'COMPLETED',
    Submit: '2024-03-01T10:00:00',
    Start: '2024-03-01T10:00:05',
    End: '2024-03-01T11:00:05',
    Elapsed: '01:00:00',
    ElapsedRaw: '3600',
    NNodes: '1',
    NCPUS: '4',
    AllocTRES: 'billing=4,cpu=4,gres/gpu=2,mem=8G,node=1',
    ...fields,
  };
}

/** That job (see sacctFields) as a line of sacct's output, in SACCT_FIELDS order. */
export function sacctJob(id: string, fields: Partial<Record<SacctField, string>> = {}): string {
  const job = sacctFields(id, fields);
  return SACCT_FIELDS.map((f) => job[f]).join('|');
}

/** The jobs the reader makes of `lines`, as `amie report-usage` gets them from sacct. */
export async function sacctRecords(lines: Iterable<string>): Promise<SacctRecord[]> {
  const out: SacctRecord[] = [];
  for await (const r of parseSacctStream(lines)) out.push(r);
  return out;
}

/**
 * A stand-in for sacct in `dir` (the config's usage.sacctPath) that prints `lines`; with
 * `waitFor`, it then blocks until that file exists. Returns its path.
 */
export function fakeSacct(dir: string, lines: string[], opts: { waitFor?: string } = {}): string {
  const jobs = join(dir, 'jobs.txt');
  writeFileSync(jobs, `${lines.join('\n')}\n`);
  const sacct = join(dir, 'sacct');
  const wait = opts.waitFor ? `while [ ! -e '${opts.waitFor}' ]; do sleep 0.1; done\n` : '';
  writeFileSync(sacct, `#!/bin/sh\ncat '${jobs}'\n${wait}`);
  chmodSync(sacct, 0o755);
  return sacct;
}
