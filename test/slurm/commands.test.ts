/**
 * The Slurm handler's parts that need no cluster: running commands, argument templates,
 * cleaning text for sacctmgr, the grid-mapfile, the handler's options and the example configs.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/index.js';
import { loadHandlerClass } from '../../src/dispatch/index.js';
import '../../handlers/index.js';
import { SlurmHandler, slurmOptionsSchema } from '../../handlers/slurm.js';
import {
  CommandError,
  applyGridMapChange,
  expandArgv,
  formatArgv,
  runCommand,
  slurmText,
  updateGridMapfile,
} from '../../src/slurm/index.js';
import { SITE, quietLog } from '../helpers/amie.js';
import { tempDirs } from '../helpers/cli.js';

const tempDir = tempDirs('amie-slurm-unit-');

const HOSTILE = ['$(touch /tmp/x)', '`touch /tmp/x`', `O'Brien "the" ; rm -rf /`, 'a\nb\r\nc\u0000d', '|=,'];

describe('runCommand', () => {
  it('passes each argument as it is, without a shell', async () => {
    const r = await runCommand(
      ['node', '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', ...HOSTILE.slice(0, 3)],
      { log: quietLog },
    );
    expect(JSON.parse(r.stdout)).toEqual(HOSTILE.slice(0, 3));
  });

  it('names the command, its exit code and its stderr when it fails', async () => {
    const err = await runCommand(
      ['node', '-e', 'console.error("make-user: LDAP is down"); process.exit(3)', 'jdoe x'],
      { log: quietLog },
    ).catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.message).toBe(
      'command failed (exit 3): node -e "console.error(\\"make-user: LDAP is down\\"); process.exit(3)" "jdoe x": make-user: LDAP is down',
    );
    expect(err.exitCode).toBe(3);
  });

  it('keeps stderr in the message bounded, treats listed exit codes as answers, and stops slow commands', async () => {
    const long = await runCommand(['node', '-e', 'console.error("x".repeat(5000) + "END"); process.exit(1)'], {
      log: quietLog,
    }).catch((e) => e);
    expect(long.message.length).toBeLessThan(1200);
    expect(long.message).toMatch(/…x+END$/);
    expect((await runCommand(['node', '-e', 'process.exit(2)'], { log: quietLog, okExitCodes: [2] })).exitCode).toBe(2);
    const slow = await runCommand(['node', '-e', 'setTimeout(() => {}, 10000)'], {
      log: quietLog,
      timeoutMs: 300,
    }).catch((e) => e);
    expect(slow.message).toBe('command timed out after 300 ms: node -e "setTimeout(() => {}, 10000)"');
    const missing = await runCommand(['/nonexistent/make-user', 'jdoe'], { log: quietLog }).catch((e) => e);
    expect(missing.message).toMatch(/^command could not run \(.*ENOENT.*\): \/nonexistent\/make-user jdoe$/);
  });

  it('only logs the argument list under dry run', async () => {
    const dir = tempDir();
    const lines: Array<{ msg: string; argv: string[] }> = [];
    const log = (await import('pino')).default({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const r = await runCommand(['touch', join(dir, 'made')], { log, dryRun: true });
    expect(r.dryRun).toBe(true);
    expect(existsSync(join(dir, 'made'))).toBe(false);
    expect(lines.map((l) => l.argv)).toEqual([['touch', join(dir, 'made')]]);
    expect(lines[0]!.msg).toBe(`dry run: would run touch ${join(dir, 'made')}`);
  });
});

describe('argument templates', () => {
  it('substitutes inside one argument, makes values single-line, and never splits an argument', () => {
    const argv = expandArgv(['make-user', '{login}', '--gecos={fullName}', '{email}'], {
      login: 'jdoe',
      fullName: HOSTILE[3],
      email: null,
    });
    expect(argv).toEqual(['make-user', 'jdoe', '--gecos=a b c d', '']);
    for (const h of HOSTILE) expect(expandArgv(['x', '{v}'], { v: h })).toHaveLength(2);
    expect(() => expandArgv(['x', '{nope}'], {})).toThrow('argument template "{nope}": no value for {nope}');
  });

  it('formats argument lists for people, quoting what needs it', () => {
    expect(formatArgv(['sacctmgr', '-i', 'add', 'account', 'tg-abc', 'description=a b', 'x\ny'])).toBe(
      'sacctmgr -i add account tg-abc "description=a b" "x\\ny"',
    );
  });

  it('cleans packet text for sacctmgr values', () => {
    expect(slurmText(`Turbulent mixing: "what's next?" (x)`)).toBe('Turbulent mixing: whats next? (x)');
    expect(slurmText('Université de Montréal | a=b\n$(touch /tmp/x) `id`')).toBe(
      'Université de Montréal a b (touch /tmp/x) id',
    );
    expect(slurmText('x'.repeat(500))).toHaveLength(200);
  });
});

describe('grid-mapfile', () => {
  it('adds, removes and moves mappings, keeping lines it does not know', () => {
    let t = '# site comment\n"/CN=Old" olduser\n';
    t = applyGridMapChange(t, { login: 'jdoe', add: ['/C=US/O=Université/CN=Jane Doe', '/CN=Old'] }).text;
    expect(t).toBe('# site comment\n"/CN=Old" olduser,jdoe\n"/C=US/O=Université/CN=Jane Doe" jdoe\n');
    // A repeat changes nothing.
    expect(applyGridMapChange(t, { login: 'jdoe', add: ['/CN=Old'] })).toEqual({ text: t, added: [], removed: [] });
    t = applyGridMapChange(t, { login: 'jdoe', remove: ['/CN=Old'] }).text;
    expect(t).toBe('# site comment\n"/CN=Old" olduser\n"/C=US/O=Université/CN=Jane Doe" jdoe\n');
    t = applyGridMapChange(t, { login: 'jdoe', takeFrom: 'olduser' }).text;
    expect(t).toBe('# site comment\n"/CN=Old" jdoe\n"/C=US/O=Université/CN=Jane Doe" jdoe\n');
  });

  it('refuses DNs it cannot write, naming them', () => {
    expect(() => applyGridMapChange('', { login: 'jdoe', add: ['/CN=Mallory" root'] })).toThrow(
      'DN "/CN=Mallory\\" root" cannot go into a grid-mapfile: it is empty or holds a double quote, a backslash or a control character',
    );
    expect(() => applyGridMapChange('', { login: 'jdoe', add: ['/CN=a\n"/CN=b" root'] })).toThrow(
      /cannot go into a grid-mapfile/,
    );
    expect(() => applyGridMapChange('', { login: 'root;x', add: ['/CN=a'] })).toThrow(/login "root;x" must match/);
  });

  it('serialises concurrent writers with its lock and writes atomically, keeping the mode', async () => {
    const file = join(tempDir(), 'grid-mapfile');
    writeFileSync(file, '');
    chmodSync(file, 0o640);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        updateGridMapfile(file, { login: `user${i}`, add: [`/CN=Person ${i}`] }, { log: quietLog }),
      ),
    );
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `"/CN=Person ${i}" user${i}`).sort());
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(join(file, '..'))).toEqual(['grid-mapfile']);
  });

  it('takes over a lock left by a dead process, and waits for a live one, then says who holds it', async () => {
    const dir = tempDir();
    const file = join(dir, 'grid-mapfile');
    const dead = spawn('true');
    await new Promise((r) => dead.on('exit', r));
    writeFileSync(`${file}.lock`, `${dead.pid} ${(await import('node:os')).hostname()} 2020-01-01T00:00:00Z\n`);
    await updateGridMapfile(file, { login: 'jdoe', add: ['/CN=Jane'] }, { log: quietLog });
    expect(readFileSync(file, 'utf8')).toBe('"/CN=Jane" jdoe\n');
    expect(existsSync(`${file}.lock`)).toBe(false);

    writeFileSync(`${file}.lock`, `${process.pid} ${(await import('node:os')).hostname()} now\n`);
    const err = await updateGridMapfile(
      file,
      { login: 'jdoe', add: ['/CN=Other'] },
      { log: quietLog, lockTimeoutMs: 200 },
    ).catch((e) => e);
    expect(err.message).toBe(
      `grid-mapfile ${file} is locked by ${process.pid} ${(await import('node:os')).hostname()} now (lock file ${file}.lock); try again later`,
    );
    expect(readFileSync(file, 'utf8')).toBe('"/CN=Jane" jdoe\n');
  });
});

describe('Slurm handler options', () => {
  const problems = (options: unknown) => {
    const r = slurmOptionsSchema.safeParse(options);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('has defaults for everything and knows the registry options', () => {
    const o = slurmOptionsSchema.parse({});
    expect(o.allocation).toEqual({ tres: 'gres/gpu', minutesPerUnit: 60 });
    expect(o.createUser[0]).toBe('useradd');
    expect(o.uidRange).toEqual({ start: 100000, end: 1999999999 });
    expect(problems({ uidRange: { start: 5, end: 10 }, cluster: 'cluster1', allocation: { tres: 'cpu' } })).toEqual([]);
  });

  it('refuses unknown keys and placeholders and bad names, naming each (a relative gridMapfile is taken from the config file)', () => {
    expect(
      problems({
        clustr: 'x',
        createUser: ['/usr/local/sbin/make-user', '{login}', '{homeDir}'],
        accountName: '{grantNumber}',
        accountPrefix: 'X ',
        allocation: { tres: 'gpu' },
        gridMapfile: 'grid-mapfile',
      }),
    ).toEqual([
      'accountName: expected a template using {projectId} and no other placeholder',
      'accountPrefix: expected lower-case letters, digits, "_" or "-"',
      'allocation.tres: expected a TRES such as gres/gpu or cpu',
      expect.stringMatching(
        /^createUser: unknown placeholder \{homeDir\} \(known: \{login\} \{uid\} .* \{slurmAccount\}\)$/,
      ),
      ': Unrecognized key: "clustr"',
    ]);
  });

  it('names Slurm accounts by the rule and refuses ProjectIDs that give no valid name', () => {
    const h = new SlurmHandler({
      db: null as never,
      log: quietLog,
      site: SITE,
      options: { accountPrefix: 'acc-' },
      dryRun: false,
    });
    expect(h.accountNameFor('TG-ABC123')).toBe('acc-tg-abc123');
    expect(() => h.accountNameFor('TG ABC/1')).toThrow(
      'handler.options.accountName: ProjectID "TG ABC/1" gives the Slurm account name "acc-tg abc/1", which does not match /^[a-z0-9][a-z0-9_-]{0,62}$/',
    );
  });
});

describe('example configurations', () => {
  const configDir = resolve('config');
  for (const name of readdirSync(configDir).filter((f) => f.endsWith('.yaml'))) {
    it(`config/${name} loads, and its handler and options are accepted`, async () => {
      const cfg = parseConfig(readFileSync(join(configDir, name), 'utf8'), `config/${name}`, { AMIE_DB_PASSWORD: 'x' });
      if (cfg.handler !== undefined) {
        const loaded = await loadHandlerClass(cfg.handler, configDir);
        expect(loaded.cls).toBeTypeOf('function');
      }
    });
  }

  it('config/slurm-site.yaml uses the slurm handler', () => {
    const cfg = parseConfig(readFileSync('config/slurm-site.yaml', 'utf8'), 'config/slurm-site.yaml', {
      AMIE_DB_PASSWORD: 'x',
    });
    expect(cfg.handler).toMatchObject({ module: 'slurm', options: { cluster: 'cluster1' } });
  });
});
