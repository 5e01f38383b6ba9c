import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPgDatabase, type TestDatabase } from './helpers/db.js';
import { hasPostgres, pgSkipNote } from './helpers/env.js';
import { amieIn, amieInProcess, requireBuiltCli, tempDirs } from './helpers/cli.js';

// The command is tested as operators run it: the compiled program in a child process. What the
// embedded database's commands do is tested inside this process (amieHere), as the other command tests are.
const VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const SITE = 'site:\n  name: EXAMPLE\n  resource: cluster.example.org\n';

const amie = (args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) =>
  amieIn(opts.cwd ?? tempDir(), args, { env: opts.env, timeout: 60_000 });

/** `amie` inside this process, in `cwd`, with none of the caller's AMIE_* variables. */
const amieHere = (args: string[], cwd: string) => amieInProcess(args, { cwd, trimmed: true });

const tempDir = tempDirs('amie-cli-');

function configIn(dir: string, text: string): string {
  const file = join(dir, 'amie.yaml');
  writeFileSync(file, text);
  return file;
}

const stderrLines = (s: string) => s.split('\n').filter(Boolean);

requireBuiltCli();

describe('amie', () => {
  it('prints its version', async () => {
    const r = await amie(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: VERSION });
  });

  it('prints help naming the global options and the commands', async () => {
    const r = await amie(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['-c, --config <file>', '--debug', '--version', 'db', 'demo']) expect(r.stdout).toContain(word);
    const db = await amie(['db', '--help']);
    expect(db.code).toBe(0);
    expect(db.stdout).toMatch(/init[\s\S]*check/);
  });

  it('exits 2 on a command line it does not understand', async () => {
    const r = await amie(['db', 'frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });

  it('exits 2 naming every bad key in the configuration, without a stack trace', async () => {
    const dir = tempDir();
    configIn(dir, 'site:\n  name: A-VERY-LONG-SITE-NAME\n  resource: r\ndatabse:\n  path: ./db\n');
    const r = await amie(['-c', 'amie.yaml', 'db', 'init'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(stderrLines(r.stderr)).toEqual([
      'amie: amie.yaml: site.name: expected at most 16 characters, got "A-VERY-LONG-SITE-NAME"',
      'amie: amie.yaml: databse: unknown key (did you mean "database"?)',
    ]);
    expect(r.stdout).toBe('');
  });

  it('exits 2 when there is no configuration file, saying how to give one', async () => {
    const r = await amie(['db', 'check']);
    expect(r.code).toBe(2);
    expect(stderrLines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^amie: no configuration file: give -c FILE or set AMIE_CONFIG/);
  });

  it('finds the configuration through AMIE_CONFIG', async () => {
    const dir = tempDir();
    const file = configIn(dir, `${SITE}database:\n  url: postgres://nobody@127.0.0.1:1/x\n`);
    const r = await amie(['db', 'check'], { env: { AMIE_CONFIG: file } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('postgres://nobody@127.0.0.1:1/x');
  });

  it('exits 2 with one line when the database server cannot be reached', async () => {
    const dir = tempDir();
    configIn(dir, `${SITE}database:\n  url: postgres://nobody@127.0.0.1:1/x\n`);
    const r = await amie(['-c', 'amie.yaml', 'db', 'init'], { cwd: dir });
    expect(r.code).toBe(2);
    const lines = stderrLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^amie: cannot use database postgres:\/\/nobody@127\.0\.0\.1:1\/x: connection refused/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('never prints a database password, not even with --debug', async () => {
    const dir = tempDir();
    configIn(dir, `${SITE}database:\n  url: postgres://nobody@127.0.0.1:1/x\n  passwordEnv: AMIE_DB_PASSWORD\n`);
    for (const debug of [[], ['--debug']]) {
      const fromEnvVar = await amie([...debug, '-c', 'amie.yaml', 'db', 'init'], {
        cwd: dir,
        env: { AMIE_DB_PASSWORD: 'topsecret' },
      });
      expect(fromEnvVar.code).toBe(2);
      expect(fromEnvVar.stderr).toContain('postgres://nobody:***@127.0.0.1:1/x');
      const inUrl = await amie([...debug, 'db', 'init'], {
        env: { AMIE_CONFIG: join(dir, 'amie.yaml'), AMIE_DATABASE_URL: 'postgres://nobody:topsecret@127.0.0.1:1/x' },
      });
      expect(inUrl.code).toBe(2);
      for (const r of [fromEnvVar, inUrl]) expect(r.stdout + r.stderr).not.toContain('topsecret');
    }
  });

  it('db init creates the AMIE tables in an embedded database, and finds them there the second time', async () => {
    const dir = tempDir();
    configIn(dir, `${SITE}database:\n  path: ./var/db\n`);
    const first = await amieHere(['-c', 'amie.yaml', 'db', 'init'], dir);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const where = `embedded database ${join(dir, 'var', 'db')}`;
    expect(first.stdout).toMatch(new RegExp(`^${where}: AMIE tables created; toolkit migrations applied: \\S+`));

    const second = await amieHere(['-c', 'amie.yaml', 'db', 'init'], dir);
    expect(second).toMatchObject({
      code: 0,
      stderr: '',
      stdout: `${where}: AMIE tables already there; no toolkit migrations to apply`,
    });

    const check = await amieHere(['-c', 'amie.yaml', 'db', 'check'], dir);
    expect(check).toMatchObject({ code: 0, stderr: '' });
    expect(check.stdout.split('\n')).toEqual([
      `${where}: AMIE tables ready`,
      'incoming packets: none',
      'outgoing packets: none',
    ]);
  });

  it('db check on a database without the AMIE tables exits 2 and says to run db init', async () => {
    const dir = tempDir();
    configIn(dir, `${SITE}database:\n  path: ./db\n`);
    const r = await amieHere(['-c', 'amie.yaml', 'db', 'check'], dir);
    expect(r.code).toBe(2);
    expect(stderrLines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain('run `amie db init`');
  });
  // `amie demo` (the four scenarios) is tested in test/simulator/cli.test.ts.
});

describe('amie on a PostgreSQL server', () => {
  let server: TestDatabase | undefined;
  const available = hasPostgres();
  beforeAll(async () => {
    if (available) server = await freshPgDatabase();
  });
  afterAll(async () => {
    await server?.cleanup();
  });

  it.skipIf(!available)(
    `db init creates the tables, then finds them, never showing the password${pgSkipNote}`,
    async () => {
      const dir = tempDir();
      // The test server trusts local connections, so any password is accepted; what matters is that none is printed.
      configIn(dir, `${SITE}database:\n  url: ${server!.url}\n  passwordEnv: AMIE_DB_PASSWORD\n`);
      const env = { AMIE_DB_PASSWORD: 'topsecret' };
      const first = await amie(['-c', 'amie.yaml', 'db', 'init'], { cwd: dir, env });
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(
        /^postgres:\/\/[^@]*:\*\*\*@[^ ]+: AMIE tables created; toolkit migrations applied: \S+/,
      );
      const second = await amie(['-c', 'amie.yaml', 'db', 'init'], { cwd: dir, env });
      expect(second.code).toBe(0);
      expect(second.stdout).toContain('AMIE tables already there; no toolkit migrations to apply');
      const check = await amie(['-c', 'amie.yaml', 'db', 'check'], { cwd: dir, env });
      expect(check.code).toBe(0);
      for (const r of [first, second, check]) expect(r.stdout + r.stderr).not.toContain('topsecret');
    },
  );
});
