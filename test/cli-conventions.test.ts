import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { amieInProcess, CLI } from './helpers/cli.js';
import { holdLockFileFor } from './helpers/reliability.js';
import { wholeNumberOption } from '../src/cli/conventions.js';

// The conventions every `amie` command follows: help and mistakes on the command line inside this
// process; a closed pipe and a wait for the embedded database on the compiled program, as operators run it.
const DB_MODULE = pathToFileURL(resolve('dist/src/db/index.js')).href;

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AMIE_')) delete env[k];
  return env;
}

let dir: string;
let config: string;

const amie = (args: string[]) => amieInProcess(args, { cwd: dir, env: cleanEnv(), trimmed: true });

/** Runs `amie` with the reading end of its stdout already closed, as `amie ... | head -1` leaves it. */
function amieIntoClosedPipe(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stderr }));
  });
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with npm run build`);
  dir = mkdtempSync(join(tmpdir(), 'amie-conventions-'));
  config = join(dir, 'amie.yaml');
  writeFileSync(
    config,
    'site:\n  name: EXAMPLE\n  resource: cluster.example.org\ndatabase:\n  path: ./db\nhandler: registry\nlog:\n  level: silent\n',
  );
  const init = await amie(['-c', config, 'db', 'init']);
  expect(init.code, init.stderr).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('[14.9] amie on the command line', () => {
  it('[14.9] a closed pipe ends any command quietly with exit 0 (amie packets list | head -1)', async () => {
    for (const args of [['-c', config, 'packets', 'list'], ['-c', config, 'db', 'check'], ['--help'], ['--version']]) {
      const r = await amieIntoClosedPipe(args);
      expect({ args, ...r }).toEqual({ args, code: 0, stderr: '' });
    }
  });

  it('[14.9] amie help follows the whole command path and shows the global options', async () => {
    const r = await amie(['help', 'db', 'init']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: amie db init /);
    expect(r.stdout).toContain('-c, --config <file>');
    expect(r.stdout).toContain('--debug');
    // The same help as --help on the command itself.
    const flag = await amie(['db', 'init', '--help']);
    expect(flag).toEqual(r);
    const packets = await amie(['help', 'packets', 'list']);
    expect(packets.stdout).toMatch(/^Usage: amie packets list /);
  });

  it('[14.9] amie help nosuch answers in one line with exit 2, not with the whole help', async () => {
    const r = await amie(['help', 'nosuch']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')[0]).toBe("amie: unknown command 'nosuch'");
    expect(r.stderr).not.toContain('Usage:');
    const typo = await amie(['help', 'pakets']);
    expect(typo.code).toBe(2);
    expect(typo.stderr.split('\n')[0]).toBe("amie: unknown command 'pakets' (did you mean packets?)");
    // The same answer without the help command, at any level.
    expect((await amie(['pakets'])).stderr.split('\n')[0]).toBe(
      "amie: unknown command 'pakets' (did you mean packets?)",
    );
    const sub = await amie(['db', 'int']);
    expect(sub.code).toBe(2);
    expect(sub.stderr.split('\n')[0]).toBe("amie: unknown command 'int' in 'amie db' (did you mean init?)");
  });

  it('[14.9] mistakes on the command line say amie:, like every other error, and name the help to read', async () => {
    const r = await amie(['-c', config, 'db', 'init', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      "amie: unknown option '--bogus'",
      '(run amie help db init for usage)',
    ]);
    const typo = await amie(['-c', config, 'process', '--debgu']);
    expect(typo.stderr.split('\n')[0]).toBe("amie: unknown option '--debgu' (did you mean --debug?)");
    const missing = await amie(['packets', 'show']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^amie: missing required argument/);
    for (const res of [r, typo, missing]) expect(res.stderr).not.toMatch(/^error:/m);
  });

  it('[14.9] every command takes at most three lines in the top-level help', async () => {
    const r = await amie(['--help']);
    expect(r.code).toBe(0);
    const commands = r.stdout
      .slice(r.stdout.indexOf('Commands:\n') + 'Commands:\n'.length)
      .split('\n')
      .filter(Boolean);
    const entries: string[][] = [];
    for (const line of commands) {
      if (/^ {2}\S/.test(line)) entries.push([line]);
      else entries.at(-1)!.push(line);
    }
    expect(entries.map((e) => e[0]!.trim().split(' ')[0])).toContain('simulate');
    for (const entry of entries) expect(entry.length, entry.join('\n')).toBeLessThanOrEqual(3);
  });

  it('[14.9] a command waiting for the embedded database says once, on stderr, that it waits and for whom', async () => {
    // Another process holds the database, as a long `amie process` would.
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { openPglite } from ${JSON.stringify(DB_MODULE)};
        const db = await openPglite({ path: ${JSON.stringify(join(dir, 'db'))} });
        process.stdout.write('held\\n');
        process.stdin.on('data', () => {}).on('end', async () => { await db.close(); process.exit(0); });`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((held, fail) => {
        holder.stdout.on('data', (d: Buffer) => d.toString().includes('held') && held());
        holder.on('exit', (code) => fail(new Error(`the holder exited ${code}`)));
      });
      const waiter = execa(process.execPath, [CLI, '-c', config, 'db', 'check'], {
        cwd: dir,
        env: cleanEnv(),
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
      });
      let stderr = '';
      waiter.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const until = Date.now() + 15_000;
      while (!stderr.includes('waiting') && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 500)); // a second line would be there by now
      holder.stdin.end();
      const r = await waiter;
      expect(r.exitCode, stderr).toBe(0);
      const lines = stderr.split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(
          `^amie: waiting up to 60 s for process ${holder.pid}, which holds embedded database .*db \\(lock .*db\\.lock\\)$`,
        ),
      );
    } finally {
      holder.kill();
    }
  });
});

describe('amie inside another process (main with its own stdout and stderr)', () => {
  it("writes only to the streams it is given, never to the process's own", async () => {
    const lock = join(dir, 'db.lock');
    // What the in-process tests rely on, and a script running amie would: output, messages,
    // --debug traces, help and usage mistakes, and the log all go where they are sent.
    const written: string[] = [];
    const spies = [process.stdout, process.stderr].map((stream) =>
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        written.push(String(chunk));
        return true;
      }),
    );
    const runs: Array<Awaited<ReturnType<typeof amieInProcess>>> = [];
    try {
      for (const args of [
        ['--help'],
        ['--version'],
        ['db', 'frobnicate'],
        ['-c', config, 'process', '--debgu'],
        ['--debug', '-c', config, 'process'],
        ['-c', config, 'status', '--json'],
        ['--debug', '-c', join(dir, 'missing.yaml'), 'status'],
        ['--debug', '-c', config, 'packets', 'show', '999'],
      ])
        runs.push(await amieInProcess(args, { cwd: dir, env: { ...cleanEnv(), AMIE_LOG_LEVEL: 'debug' } }));
      // A wait for the embedded database, held by a live process until the lock is removed: the
      // message goes to the given stderr too.
      const released = holdLockFileFor(lock, 400);
      runs.push(await amieInProcess(['-c', config, 'db', 'check'], { cwd: dir, env: cleanEnv() }));
      await released;
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(written).toEqual([]);
    // Each run did write: its help, its log lines, its errors.
    expect(runs.map((r) => r.code)).toEqual([0, 0, 2, 2, 0, 0, 3, 2, 0]);
    for (const r of runs) expect(r.stdout + r.stderr).not.toBe('');
    expect(runs[4]!.stderr).toMatch(/^\{"level":30,.*"msg":"run finished"\}$/m);
    expect(runs[8]!.stderr).toBe(
      `amie: waiting up to 60 s for process ${process.ppid}, which holds embedded database ${join(dir, 'db')} (lock ${lock})\n`,
    );
  });
});

describe('counting options (--limit, --watch, --days, a packet_rec_id)', () => {
  it('take digits only, from 1 up to their maximum, and name the option otherwise', () => {
    expect(wholeNumberOption('--limit', '5')).toBe(5);
    expect(wholeNumberOption('--days', '366', 366)).toBe(366);
    for (const bad of ['0', '-1', '1e3', ' 5', '0x10', '5.0', '', 'ten', '99999999999999999999'])
      expect(() => wholeNumberOption('--limit', bad), bad).toThrow(
        `--limit: expected a positive whole number, got "${bad}"`,
      );
    expect(() => wholeNumberOption('--days', '367', 366)).toThrow('--days: expected a whole number from 1 to 366');
  });
});
