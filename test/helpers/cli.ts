/**
 * Running the compiled `amie` program the way cron and people do, in processes of its own,
 * and the sites (a directory, a config file, a fresh database) such tests run it in; npm and
 * the packed toolkit for the tests that install it as a site does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { openPglite, type Database } from '../../src/db/index.js';
import { SITE } from './amie.js';
import { CLI } from './cli-path.js';
import { initialisedPgliteDir, type DriverCase, type TestDatabase } from './db.js';

export { CLI };

/** Stops the test file at once, saying what to do, when the program has not been built. */
export function requireBuiltCli(): void {
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with npm run build (npm test does it)`);
  });
}

export interface AmieRun {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** What the process has written to stderr so far. */
  stderr(): string;
}

/** `amie` in a process of its own, as cron starts it, with `env` over this process's environment. */
export function runAmie(args: string[], env: NodeJS.ProcessEnv = {}): AmieRun {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (res) => child.on('close', (code, signal) => res({ code, signal, stdout, stderr })),
  );
  return { child, done, stderr: () => stderr };
}

/**
 * This process's environment without the caller's AMIE_* variables, nor the npm_* ones a run under
 * `npm test` sets (they would point npm elsewhere), plus `extra`.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AMIE_') || k.startsWith('npm_')) delete env[k];
  return { ...env, ...extra };
}

/** `file args` run to its end in `cwd`, in `env` alone (by default cleanEnv()), as a site runs npm, amie or a wrapper. */
export async function runIn(
  file: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number },
): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
  const r = await execa(file, args, {
    cwd: opts.cwd,
    env: opts.env ?? cleanEnv(),
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: opts.timeout ?? 60_000,
  });
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** `amie args` run to its end in `cwd`, with none of the caller's AMIE_* variables. */
export function amieIn(
  cwd: string,
  args: string[],
  opts: { env?: Record<string, string>; timeout?: number } = {},
): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
  return runIn('node', [CLI, ...args], { cwd, env: cleanEnv(opts.env), timeout: opts.timeout ?? 120_000 });
}

/**
 * `amie args` run to its end inside this process, in `cwd` (by default this one) with `env` (by
 * default cleanEnv()): the same program as the built one, from its sources, with its stdout and
 * stderr captured and its exit status returned. It spares the half second of CPU a process of
 * its own costs (Node, the bundle, PGlite's WebAssembly compiled afresh), so tests of what a
 * command does and prints use it; tests of `amie` as a process (exit on signals, locks between
 * processes, cron, an installed copy) start one (runAmie, amieIn, runIn).
 */
export async function amieInProcess(
  args: string[],
  opts: {
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    /** stdout and stderr without their final newline, as runIn and amieIn give them. */
    trimmed?: boolean;
  } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { main } = await import('../../src/cli/main.js');
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'amie', ...args], {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env: opts.env ?? cleanEnv(),
    cwd: opts.cwd ?? process.cwd(),
  });
  const end = (text: string) => (opts.trimmed ? text.replace(/\n$/, '') : text);
  return { code, stdout: end(stdout), stderr: end(stderr) };
}

/** npm as a site runs it, from the warm cache; the registry only for what the cache lacks. */
export function npm(args: string[], cwd: string, env?: NodeJS.ProcessEnv): ReturnType<typeof runIn> {
  return runIn('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd,
    env,
    timeout: 150_000,
  });
}

/**
 * The toolkit as a site gets a release: `npm pack` of a copy of this checkout with the tree
 * `npm run build` made (npm test builds it first), the tarball put in `dir`. The pack scripts
 * (prepack: remove dist; prepare: npm run build) are not run again: they would only repeat that
 * build (ten seconds), and a copy keeps this checkout's dist, which other test files are running,
 * alone. The tests are left out of the copy: they are not shipped.
 */
export async function packCheckout(dir: string): Promise<{ pack: Awaited<ReturnType<typeof runIn>>; tarball: string }> {
  const root = resolve('.');
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const project = join(dir, 'project');
  const skip = new Set(['node_modules', 'test', '.git', '.amie', 'coverage']);
  cpSync(root, project, {
    recursive: true,
    filter: (src) => {
      const rel = relative(root, src);
      if (skip.has(rel.split(/[\\/]/)[0]!) || rel.startsWith(join('dist', 'test'))) return false;
      return !src.endsWith('.tgz') && !src.endsWith('.log');
    },
  });
  const pack = await npm(['pack', '--ignore-scripts', '--pack-destination', dir], project);
  return { pack, tarball: join(dir, `amie-toolkit-${version}.tgz`) };
}

/**
 * A maker of temporary directories named `prefix…`, all removed when the test file ends; with
 * `mode` (0o755: other users, such as the ones Slurm runs a job as, may enter them).
 */
export function tempDirs(prefix: string, opts: { mode?: number } = {}): () => string {
  const dirs: string[] = [];
  afterAll(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    if (opts.mode !== undefined) chmodSync(d, opts.mode);
    return d;
  };
}

/**
 * A site for tests that run `amie`: a directory with the config file `amie.yaml` and a fresh
 * database, on the PostgreSQL server or embedded in the directory (`db`). The embedded one
 * admits one process at a time, so the test reaches it through withDb between runs.
 */
export class CliSite {
  readonly config: string;
  readonly pglitePath: string | undefined;

  private constructor(
    readonly dir: string,
    /** The server database (pg only). */
    readonly t: TestDatabase | undefined,
  ) {
    this.config = join(dir, 'amie.yaml');
    this.pglitePath = t ? undefined : join(dir, 'db');
  }

  /** With `init`, the database is as `amie db init` leaves it; otherwise there is none yet (PGlite) or it is empty. */
  static async open(driver: DriverCase, opts: { prefix?: string; init?: boolean } = {}): Promise<CliSite> {
    const dir = mkdtempSync(join(tmpdir(), opts.prefix ?? 'amie-site-'));
    try {
      const t = driver.name === 'pg' ? await driver.open({ init: opts.init }) : undefined;
      const site = new CliSite(dir, t);
      if (!t && opts.init) await initialisedPgliteDir(site.pglitePath!);
      return site;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The config line naming this site's database. */
  get databaseLine(): string {
    return this.t ? `database: { url: "${this.t.url}" }` : `database: { path: "${this.pglitePath}" }`;
  }

  /** Writes amie.yaml: the example site, this database, then `lines`; returns its path. */
  writeConfig(lines: string[]): string {
    writeFileSync(
      this.config,
      [`site: { name: ${SITE.name}, resource: ${SITE.resource} }`, this.databaseLine, ...lines].join('\n'),
    );
    return this.config;
  }

  /** Runs `fn` on the database, through a connection closed again before it returns (PGlite). */
  async withDb<T>(fn: (db: Database) => Promise<T>): Promise<T> {
    if (this.t) return fn(this.t.db);
    const db = await openPglite({ path: this.pglitePath! });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }

  async close(): Promise<void> {
    try {
      await this.t?.cleanup();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A CliSite for every test of the enclosing describe block, closed after it; none when the driver is missing. */
export function cliSiteEachTest(
  driver: DriverCase,
  opts: { prefix?: string; init?: boolean } = {},
): { readonly site: CliSite } {
  let current: CliSite | undefined;
  beforeEach(async () => {
    if (driver.available) current = await CliSite.open(driver, opts);
  });
  afterEach(async () => {
    const site = current;
    current = undefined;
    await site?.close();
  });
  return {
    get site() {
      if (!current) throw new Error(`no ${driver.name} test site is open here`);
      return current;
    },
  };
}
