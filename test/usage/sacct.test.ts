import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  SACCT_FIELDS,
  SacctError,
  isSacctSkip,
  parseSacctLine,
  parseSacctStream,
  parseTres,
  readSacct,
  sacctArgs,
  sacctEnv,
  type SacctJob,
  type SacctRecord,
  type SacctSkippedLine,
} from '../../src/usage/index.js';

import { processAlive } from '../../src/lockfile.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/sacct-odd.txt', import.meta.url));
const window = { since: new Date('2024-03-01T00:00:00Z'), until: new Date('2024-03-02T00:00:00Z') };

async function collect(
  it: AsyncIterable<SacctRecord>,
): Promise<{ jobs: Map<string, SacctJob>; skips: SacctSkippedLine[] }> {
  const jobs = new Map<string, SacctJob>();
  const skips: SacctSkippedLine[] = [];
  for await (const r of it) {
    if (isSacctSkip(r)) skips.push(r);
    else jobs.set(`${r.cluster}/${r.jobId}`, r);
  }
  return { jobs, skips };
}

function fixtureLines(): string[] {
  return readFileSync(FIXTURE, 'utf8').split('\n');
}

describe('sacctArgs and sacctEnv', () => {
  it('asks for every user, allocations only, finished states, parsable output and the UTC window', () => {
    const args = sacctArgs({ since: new Date('2024-03-01T10:00:00+02:00'), until: new Date('2024-03-02T00:00:00Z') });
    expect(args).toEqual([
      '--allusers',
      '--allocations',
      '--duplicates',
      '--noheader',
      '--parsable2',
      '--noconvert',
      '--state=CA,CD,F,NF,TO,OOM,PR,DL,RQ',
      '--starttime=2024-03-01T08:00:00',
      '--endtime=2024-03-02T00:00:00',
      `--format=${SACCT_FIELDS.join(',')}`,
    ]);
    // User text (a job name with a newline) could forge a line, so none is asked for.
    expect(SACCT_FIELDS).not.toContain('JobName');
    expect(SACCT_FIELDS).toContain('Cluster');
    expect(SACCT_FIELDS).toContain('JobIDRaw');
  });

  it('passes clusters, all clusters, and extra arguments last', () => {
    expect(sacctArgs({ ...window, clusters: ['delta', 'bridges-2'] })).toContain('--clusters=delta,bridges-2');
    expect(sacctArgs({ ...window, clusters: 'all' })).toContain('--clusters=all');
    expect(sacctArgs({ ...window, clusters: [] }).some((a) => a.startsWith('--clusters'))).toBe(false);
    expect(sacctArgs({ ...window, extraArgs: ['--partition=gpuA'] }).at(-1)).toBe('--partition=gpuA');
  });

  it('refuses a cluster name that is not one, naming the config key', () => {
    expect(() => sacctArgs({ ...window, clusters: ['delta,evil'] })).toThrow(/usage\.clusters: "delta,evil"/);
  });

  it('refuses an empty or reversed time window', () => {
    expect(() => sacctArgs({ since: window.until, until: window.since })).toThrow(/since .* must be before until/);
    expect(() => sacctArgs({ since: window.since, until: window.since })).toThrow(/must be before until/);
  });

  it('sets UTC and a fixed time format so times parse the same at every site', () => {
    expect(sacctEnv()).toMatchObject({ TZ: 'UTC', SLURM_TIME_FORMAT: '%Y-%m-%dT%H:%M:%S' });
  });

  it('[12.14] gives sacct the small site-command environment, never amie secrets', () => {
    const vars = {
      AMIE_SLACK_TOKEN: 'xoxb-secret',
      AMIE_USAGE_API_KEY: 'usage-secret',
      PGPASSWORD: 'db-secret',
      SLURM_CONF: '/etc/slurm/slurm.conf',
    };
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    try {
      Object.assign(process.env, vars);
      const env = sacctEnv();
      expect(Object.keys(env).sort()).toEqual(
        ['HOME', 'LANG', 'PATH', 'SLURM_CONF', 'SLURM_TIME_FORMAT', 'TZ'].filter((k) => k in env).sort(),
      );
      expect(env.SLURM_CONF).toBe('/etc/slurm/slurm.conf');
      expect(JSON.stringify(env)).not.toMatch(/secret/);
    } finally {
      // This worker runs other test files after this one: put back exactly what was there.
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

describe('parsing the odd-lines fixture', () => {
  let jobs: Map<string, SacctJob>;
  let skips: SacctSkippedLine[];
  beforeAll(async () => {
    ({ jobs, skips } = await collect(parseSacctStream(fixtureLines())));
  });
  const job = (key: string): SacctJob => {
    const j = jobs.get(key);
    if (!j) throw new Error(`no job ${key}; have ${[...jobs.keys()].join(', ')}`);
    return j;
  };
  const skipFor = (jobId: string) => skips.filter((s) => s.line.startsWith(`${jobId}|`));

  it('reads a plain job completely', () => {
    expect(job('delta/1001')).toEqual({
      cluster: 'delta',
      jobId: '1001',
      jobIdRaw: '1001',
      baseJobId: '1001',
      user: 'alice',
      account: 'abc123',
      partition: 'gpuA',
      state: 'COMPLETED',
      submit: new Date('2024-03-01T10:00:00Z'),
      start: new Date('2024-03-01T10:05:00Z'),
      end: new Date('2024-03-01T12:05:00Z'),
      elapsedSeconds: 7200,
      nodes: 1,
      cpus: 16,
      tres: { billing: 16, cpu: 16, 'gres/gpu': 2, mem: 16384, node: 1 },
      gpus: 2,
    });
  });

  it('splits array task and heterogeneous component ids', () => {
    expect(job('delta/123_4')).toMatchObject({ baseJobId: '123', arrayTaskId: '4', jobIdRaw: '130', gpus: 1 });
    expect(job('delta/123_4').hetComponent).toBeUndefined();
    expect(job('delta/200+0')).toMatchObject({
      baseJobId: '200',
      hetComponent: '0',
      jobIdRaw: '200',
      gpus: 0,
      nodes: 2,
    });
    expect(job('delta/200+1')).toMatchObject({ baseJobId: '200', hetComponent: '1', jobIdRaw: '201', gpus: 4 });
    expect(job('delta/200+1').arrayTaskId).toBeUndefined();
  });

  it('skips a pending array range, running and pending jobs, with the reason', () => {
    expect(skipFor('123_[5-9]')[0]?.skip).toMatch(/array range whose tasks never started/);
    expect(skipFor('300')[0]?.skip).toMatch(/line 6: job 300 has not finished \(state RUNNING\)/);
    expect(skipFor('301')[0]?.skip).toMatch(/state PENDING/);
  });

  it('reads Unknown and None times as null and keeps the job when it has ended', () => {
    expect(job('delta/302')).toMatchObject({ state: 'CANCELLED', start: null, elapsedSeconds: 0, gpus: 0, tres: {} });
    expect(job('delta/302').end).toEqual(new Date('2024-03-01T07:30:00Z'));
    expect(job('delta/304')).toMatchObject({ submit: null, start: null, state: 'FAILED' });
  });

  it('strips "by UID" from CANCELLED', () => {
    expect(job('delta/303').state).toBe('CANCELLED');
  });

  it('reads jobs with no GPUs and zero-length jobs', () => {
    expect(job('delta/305')).toMatchObject({ gpus: 0, cpus: 128, nodes: 4 });
    expect(job('delta/306')).toMatchObject({ gpus: 2, elapsedSeconds: 0 });
  });

  it('counts typed GPUs once: plain gres/gpu when present, typed counts summed otherwise', () => {
    expect(job('delta/307').gpus).toBe(2);
    expect(job('delta/307').tres['gres/gpu:a100']).toBe(2);
    expect(job('delta/308').gpus).toBe(2);
    expect(job('delta/309').gpus).toBe(4);
  });

  it('reads memory in MB whatever unit sacct printed', () => {
    expect(job('delta/1001').tres.mem).toBe(16 * 1024);
    expect(job('delta/123_4').tres.mem).toBe(512);
    expect(job('delta/200+0').tres.mem).toBe(1024 * 1024);
    expect(job('bridges/4501').tres.mem).toBe(60000);
    expect(parseTres('mem=512K')).toEqual({ mem: 0.5 });
    expect(parseTres('mem=1.5G,cpu=2K')).toEqual({ mem: 1536, cpu: 2048 });
    expect(parseTres('cpu=x')).toBeUndefined();
  });

  it('skips a line with more fields than asked for instead of guessing which is which', () => {
    expect(job('delta/310')).toMatchObject({ gpus: 1, elapsedSeconds: 3600 });
    expect(skipFor('311')[0]?.skip).toMatch(/^line 23: malformed: 16 fields, expected 15/);
  });

  it('keeps clusters apart and reads Elapsed with days', () => {
    expect(job('bridges/4501')).toMatchObject({ cluster: 'bridges', partition: 'GPU-shared', elapsedSeconds: 93784 });
    expect(job('bridges/4501').end).toEqual(new Date('2024-03-02T02:03:04Z'));
    // ElapsedRaw empty: Elapsed is the fallback
    expect(job('bridges/4502')).toMatchObject({ state: 'NODE_FAIL', elapsedSeconds: 600 });
    expect(new Set([...jobs.values()].map((j) => j.cluster))).toEqual(new Set(['delta', 'bridges']));
  });

  it('reports malformed lines and job steps with line numbers, and ignores blank lines', () => {
    expect(skipFor('4503')[0]?.skip).toMatch(/^line 19: malformed: 8 fields, expected 15/);
    expect(skipFor('4504.batch')[0]?.skip).toMatch(/^line 21: job 4504.batch is a job step/);
    expect(skips.map((s) => s.line)).not.toContain('');
  });

  it('accounts for every non-blank line exactly once', () => {
    const nonBlank = fixtureLines().filter((l) => l.trim() !== '').length;
    expect(jobs.size + skips.length).toBe(nonBlank);
    expect(jobs.size).toBe(15);
  });

  it('parseSacctLine without a line number gives the bare reason', () => {
    const r = parseSacctLine('1|2|3');
    expect(r).toEqual({ skip: expect.stringMatching(/^malformed: 3 fields/) });
  });
});

/**
 * The heap in use after a full collection: what a reader holds, not the garbage it left. The test
 * files of a worker share its heap, and how much garbage V8 lets pile up before collecting
 * depends on what ran before; measured raw, a reader that held nothing was once seen 145 MB up.
 * (vitest.config.ts starts the workers with --expose-gc.)
 */
function liveHeap(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed;
}

describe('parseSacctStream memory', () => {
  it('keeps the heap flat over 200,000 lines', async () => {
    function* lines() {
      for (let i = 0; i < 200_000; i++) {
        yield `${1_000_000 + i}|${1_000_000 + i}|delta|user${i % 500}|acct${i % 50}|gpuA|COMPLETED|2024-03-01T10:00:00|2024-03-01T10:05:00|2024-03-01T12:05:00|02:00:00|7200|1|16|billing=16,cpu=16,gres/gpu=2,mem=16G,node=1`;
      }
    }
    const before = liveHeap();
    let peak = before;
    let count = 0;
    let gpuSeconds = 0;
    for await (const r of parseSacctStream(lines())) {
      if (isSacctSkip(r)) throw new Error(r.skip);
      gpuSeconds += r.elapsedSeconds * r.gpus;
      if (++count % 20_000 === 0) peak = Math.max(peak, liveHeap());
    }
    expect(count).toBe(200_000);
    expect(gpuSeconds).toBe(200_000 * 7200 * 2);
    expect(peak - before).toBeLessThan(50 * 1024 * 1024);
  });
});

describe('readSacct with a stand-in sacct program', () => {
  let dir: string;
  const script = (name: string, body: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'amie-sacct-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs it with the argument array and environment, and parses its output like the file', async () => {
    const argsFile = join(dir, 'args');
    const fake = script(
      'sacct-ok',
      `for a in "$@"; do printf '%s\\n' "$a"; done > '${argsFile}'\n` +
        `[ "$TZ" = UTC ] && [ "$SLURM_TIME_FORMAT" = '%Y-%m-%dT%H:%M:%S' ] || { echo "bad env TZ=$TZ" >&2; exit 3; }\n` +
        `cat '${FIXTURE}'`,
    );
    const q = { ...window, clusters: ['delta', 'bridges'], sacctPath: fake };
    const fromProgram = await collect(readSacct(q));
    const fromFile = await collect(parseSacctStream(fixtureLines()));
    expect(fromProgram).toEqual(fromFile);
    expect(readFileSync(argsFile, 'utf8').trimEnd().split('\n')).toEqual(sacctArgs(q));
  });

  it('streams a large output without holding it', async () => {
    // ~100 MB of output in all: held in memory it would far exceed the bound below.
    const line = parseableLine().replace('|gpuA|', `|gpuA-${'x'.repeat(320)}|`);
    const fake = script('sacct-big', `yes '${line}' | head -n 200000`);
    const before = liveHeap();
    let peak = before;
    let count = 0;
    for await (const r of readSacct({ ...window, sacctPath: fake })) {
      if (isSacctSkip(r)) throw new Error(r.skip);
      if (++count % 20_000 === 0) peak = Math.max(peak, liveHeap());
    }
    expect(count).toBe(200_000);
    expect(peak - before).toBeLessThan(50 * 1024 * 1024);
  });

  it('throws naming the command and sacct stderr when it exits non-zero', async () => {
    const fake = script(
      'sacct-fail',
      `cat '${FIXTURE}' | head -n 2\necho 'sacct: error: Problem talking to the database: Connection refused' >&2\nexit 1`,
    );
    const seen: SacctRecord[] = [];
    const err = await (async () => {
      try {
        for await (const r of readSacct({ ...window, sacctPath: fake })) seen.push(r);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(seen).toHaveLength(2);
    expect(err).toBeInstanceOf(SacctError);
    const e = err as SacctError;
    expect(e.exitCode).toBe(1);
    expect(e.stderr).toBe('sacct: error: Problem talking to the database: Connection refused');
    expect(e.message).toMatch(/^sacct exited with code 1: sacct: error: Problem talking to the database/);
    expect(e.command).toContain(`${fake} --allusers`);
    expect(e.message).toContain(e.command);
  });

  it('throws when the program fails silently or does not exist', async () => {
    const drain = async (sacctPath: string) => {
      for await (const _ of readSacct({ ...window, sacctPath })) void _;
    };
    await expect(drain('false')).rejects.toThrow(/^sacct exited with code 1 \(command: false --allusers/);
    await expect(drain(join(dir, 'no-such-sacct'))).rejects.toThrow(/sacct could not run \(.*ENOENT.*\)/);
  });

  it('stops sacct when the reader stops early', async () => {
    const pidFile = join(dir, 'pid');
    const line = parseableLine();
    const fake = script('sacct-endless', `echo $$ > '${pidFile}'\nexec yes '${line}'`);
    let count = 0;
    for await (const _ of readSacct({ ...window, sacctPath: fake })) {
      if (++count === 5) break;
    }
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(processAlive(pid)).toBe(false);
  });

  it('stops sacct and rethrows the reason when the signal aborts', async () => {
    const pidFile = join(dir, 'pid2');
    const fake = script('sacct-endless2', `echo $$ > '${pidFile}'\nexec yes '${parseableLine()}'`);
    const ac = new AbortController();
    const reason = new Error('usage run cancelled');
    let count = 0;
    await expect(
      (async () => {
        for await (const _ of readSacct({ ...window, sacctPath: fake }, { signal: ac.signal })) {
          if (++count === 5) ac.abort(reason);
        }
      })(),
    ).rejects.toBe(reason);
    expect(existsSync(pidFile)).toBe(true);
    expect(processAlive(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
  });
});

function parseableLine(): string {
  return '1001|1001|delta|alice|abc123|gpuA|COMPLETED|2024-03-01T10:00:00|2024-03-01T10:05:00|2024-03-01T12:05:00|02:00:00|7200|1|16|billing=16,cpu=16,gres/gpu=2,mem=16G,node=1';
}
