/**
 * The embedded database's memory settings and its template: every open runs with the small
 * settings, a new database is made from the template (on disk, in memory and as a throw-away
 * directory) and works as one made by PGlite's initdb, and the CLI commands that create or
 * open one still do their work.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPglite, type Database } from '../src/db/index.js';
import {
  findPgliteTemplate,
  PGLITE_SETTINGS,
  pgliteVersion,
  unpackPgliteTemplate,
  writePgliteTemplate,
} from '../src/db/pglite-template.js';
import { initDatabase } from '../src/store/index.js';
import { CLI, amieInProcess, runIn } from './helpers/cli.js';

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'amie-pglite-mem-'));
  // What `npm run build` does; a tree built with tsc alone has no template yet.
  if (!findPgliteTemplate()) await writePgliteTemplate();
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `amie` run in `cwd` with no AMIE_* variables from outside (inside this process). */
const amie = (args: string[], cwd: string) => amieInProcess(args, { cwd });

async function settingsOf(db: Database): Promise<Map<string, string>> {
  const { rows } = await db.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])`,
    [PGLITE_SETTINGS.map(([n]) => n)],
  );
  // shared_buffers comes in 8 kB pages: 16MB is 2048.
  return new Map(rows.map((r) => [r.name, r.unit === '8kB' ? `${(Number(r.setting) * 8) / 1024}MB` : r.setting]));
}

/** The toolkit's schema goes in and is usable: the proof that the database is a working one. */
async function exercise(db: Database): Promise<void> {
  await initDatabase(db);
  await db.query(`INSERT INTO amie_toolkit.packet_errors (packet_rec_id, error_count) VALUES (1, 1)`);
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM amie_toolkit.packet_errors`);
  expect(rows[0]!.n).toBe(1);
}

describe('embedded database memory', () => {
  it('runs every open with the small PostgreSQL settings', async () => {
    const db = await openPglite();
    try {
      const s = await settingsOf(db);
      for (const [name, value] of PGLITE_SETTINGS) expect(s.get(name), name).toBe(value);
      await exercise(db);
    } finally {
      await db.close();
    }
  });

  it('makes a new on-disk database from the template, and it reopens and keeps its data', async () => {
    const path = join(dir, 'disk', 'db');
    const db = await openPglite({ path });
    try {
      expect(existsSync(join(path, 'PG_VERSION'))).toBe(true);
      // One database: the template leaves out template0 and template1, which nothing reads.
      const { rows } = await db.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1');
      expect(rows.map((r) => r.datname)).toEqual(['postgres']);
      await exercise(db);
    } finally {
      await db.close();
    }
    // No staging directory is left beside it.
    expect(readdirSync(join(dir, 'disk')).sort()).toEqual(['db']);
    const again = await openPglite({ path, create: false });
    try {
      const { rows } = await again.query<{ n: number }>(`SELECT count(*)::int AS n FROM amie_toolkit.packet_errors`);
      expect(rows[0]!.n).toBe(1);
      expect((await settingsOf(again)).get('shared_buffers')).toBe('16MB');
    } finally {
      await again.close();
    }
  });

  it('fills an empty directory made beforehand', async () => {
    const path = join(dir, 'empty');
    mkdirSync(path);
    const db = await openPglite({ path });
    try {
      await exercise(db);
    } finally {
      await db.close();
    }
  });

  it('removes a throw-away database with its directory when closed', async () => {
    const db = await openPglite({ temporary: true });
    const where = /\((.*)\/db, removed when done\)/.exec(db.description)?.[1];
    expect(where, db.description).toBeTruthy();
    try {
      expect(existsSync(join(where!, 'db', 'PG_VERSION'))).toBe(true);
      await exercise(db);
    } finally {
      await db.close();
    }
    expect(existsSync(where!)).toBe(false);
  });

  it('still works without a template (PGlite initdb), with the same settings', async () => {
    const db = await openPglite({ template: false });
    try {
      expect((await settingsOf(db)).get('shared_buffers')).toBe('16MB');
      await exercise(db);
    } finally {
      await db.close();
    }
  }, 180_000);

  it('refuses a template entry outside the data directory, and leaves nothing behind', () => {
    const header = (name: string, size: number, flag: string) => {
      const h = Buffer.alloc(512);
      h.write(name, 0);
      h.write(size.toString(8).padStart(11, '0'), 124);
      h.write(flag, 156);
      return h;
    };
    const body = Buffer.alloc(512);
    body.write('x');
    const file = join(dir, 'evil.tar.gz');
    writeFileSync(file, gzipSync(Buffer.concat([header('../../escaped', 1, '0'), body, Buffer.alloc(1024)])));
    const target = join(dir, 'evil-target');
    expect(() => unpackPgliteTemplate(file, target)).toThrow(/outside the directory/);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(join(dir, '..', 'escaped'))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith('evil-target'))).toEqual([]);
  });

  it('removes what a killed unpacking left behind, and only when its process is gone', () => {
    const target = join(dir, 'after-kill');
    const dead = `${target}.new-2147483646`; // no such process
    const living = `${target}.new-${process.ppid}`; // a process that is running: it may be unpacking
    mkdirSync(join(dead, 'base'), { recursive: true });
    mkdirSync(living);
    unpackPgliteTemplate(findPgliteTemplate()!, target);
    expect(existsSync(join(target, 'PG_VERSION'))).toBe(true);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(living)).toBe(true);
  });
});

describe('amie commands on the embedded database', () => {
  /** A site directory `name` whose amie.yaml names no database: the embedded one, made by `db init`. */
  const embeddedSite = (name: string) => {
    const cwd = join(dir, name);
    mkdirSync(cwd);
    writeFileSync(
      join(cwd, 'amie.yaml'),
      'site:\n  name: EXAMPLE\n  resource: cluster.example.org\nhandler: registry\n',
    );
    return cwd;
  };

  it('db init creates it from the template, process runs on it, and the demo passes', async () => {
    const cwd = embeddedSite('cli');
    const init = await amie(['-c', 'amie.yaml', 'db', 'init'], cwd);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/AMIE tables created/);
    const run = await amie(['-c', 'amie.yaml', 'process'], cwd);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/0 packet\(s\)/);
    const demo = await amie(['demo'], cwd);
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/throw-away database/);
    expect(demo.stdout).toMatch(/verdict: passed/);
    // The throw-away database is gone with the demo.
    const dbDir = /\((\S+)\/db, removed when done\)/.exec(demo.stdout)?.[1];
    expect(dbDir).toBeTruthy();
    expect(existsSync(dbDir!)).toBe(false);
  }, 240_000);

  it("an idle process on it peaks well under the 215 MB that optimising PostgreSQL's WebAssembly costs", async () => {
    const cwd = embeddedSite('idle');
    expect((await amie(['-c', 'amie.yaml', 'db', 'init'], cwd)).code).toBe(0);
    // The process's own peak (VmHWM: getrusage's maxRSS would report the larger test process it was forked from).
    const probe = `data:text/javascript,import{readFileSync}from'node:fs';process.on('exit',()=>process.stderr.write(readFileSync('/proc/self/status','utf8').match(/VmHWM.*/)[0]+'\\n'))`;
    const run = await runIn('node', ['--import', probe, CLI, '-c', 'amie.yaml', 'status'], { cwd });
    const kib = Number(/VmHWM:\s+(\d+) kB/.exec(run.stderr)?.[1]);
    expect(kib, run.stderr).toBeGreaterThan(0);
    // Measured: 135 MB with the baseline compiler only, 215 MB with V8's optimising compiler.
    expect(kib / 1024).toBeLessThan(175);
  });
});

it('Ctrl-C in the demo removes its throw-away database and ends the demo as interrupted', async () => {
  // A temporary directory of its own, so that the demo's database is the only one in it.
  const tmp = mkdtempSync(join(dir, 'tmp-'));
  const child = spawn(process.execPath, [CLI, 'demo'], {
    cwd: dir,
    env: { ...process.env, TMPDIR: tmp },
    stdio: 'ignore',
  });
  const ended = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
  const databases = () => readdirSync(tmp).filter((n) => n.startsWith('amie-db-'));
  while (databases().length === 0 && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  expect(await ended).toBe('SIGINT');
  expect(databases()).toEqual([]);
}, 120_000);

it('the package depends on exactly the PGlite version its template is made for', () => {
  // A range would let an install bring a newer PGlite, for which no template ships: initdb's peak again.
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> };
  expect(pkg.dependencies['@electric-sql/pglite']).toBe(pgliteVersion());
});
