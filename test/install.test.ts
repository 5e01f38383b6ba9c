import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, npm, packCheckout, runIn } from './helpers/cli.js';

// `amie` as a site gets it: the package packed with `npm pack`, installed with npm into a
// prefix (npm install -g --prefix) and into a site directory (node_modules/.bin/amie), and run
// from somewhere else, by hand and through the cron wrappers.
const ROOT = resolve('.');
const VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const WRAPPERS = ['amie-process.sh', 'amie-report-usage.sh', 'amie-slurm.sh'];
const BASH = ['/bin/bash', '/usr/bin/bash'].find((p) => existsSync(p)) ?? 'bash';
/** Where node is: the installed amie runs `env node`, so every PATH given below holds it. */
const NODE_DIR = dirname(process.execPath);

let tmp: string;
let tarball: string;
let prefix: string;
let site: string;
let elsewhere: string;
let config: string;

describe('[14.1] amie installed from the packed package', () => {
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'amie-install-'));
    const { pack, tarball: packed } = await packCheckout(tmp);
    tarball = packed;
    expect(pack.code, pack.stderr).toBe(0);
    expect(existsSync(tarball), pack.stdout).toBe(true);

    prefix = join(tmp, 'prefix');
    site = join(tmp, 'site');
    elsewhere = join(tmp, 'elsewhere');
    mkdirSync(site);
    mkdirSync(elsewhere);
    // A site directory: its own package.json, amie among its dependencies.
    writeFileSync(join(site, 'package.json'), JSON.stringify({ name: 'example-site', private: true }));
    const [global, local] = await Promise.all([
      npm(['install', '-g', '--prefix', prefix, tarball], tmp),
      npm(['install', tarball], site),
    ]);
    expect(global.code, global.stderr).toBe(0);
    expect(local.code, local.stderr).toBe(0);

    config = join(elsewhere, 'amie.yaml');
    writeFileSync(
      config,
      'site:\n  name: EXAMPLE\n  resource: cluster.example.org\ndatabase:\n  path: ./db\nhandler: registry\nlog:\n  level: silent\n',
    );
  }, 300_000);
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('[14.1] npm pack of a checkout builds it afresh: prepack removes dist, prepare runs the build', () => {
    // What makes a release tarball the clean build this suite's tarball is made from.
    const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    expect(scripts.prepack).toMatch(/rmSync\('dist', \{ recursive: true, force: true \}\)/);
    expect(scripts.prepare).toBe('npm run build');
    expect(scripts.build).toMatch(/^tsc -p tsconfig\.build\.json && .*build:bundle && npm run build:template$/);
  });

  it('[14.1] npm pack ships dist, config and the examples, and no compiled tests', async () => {
    const files = (await execa('tar', ['tzf', tarball])).stdout.split('\n');
    for (const f of [
      'dist/bundle/cli/main.js',
      'dist/bundle/index.js',
      'dist/bundle/handlers/registry.js',
      'dist/src/index.d.ts',
      'dist/handlers/registry.d.ts',
      'config/amie.yaml',
      ...WRAPPERS.map((w) => `examples/cron/${w}`),
    ])
      expect(files).toContain(`package/${f}`);
    expect(files.filter((f) => f.startsWith('package/dist/test/') || f.startsWith('package/test/'))).toEqual([]);
    // One copy of the code: tsc's modules stay behind (their declarations ship), the bundle runs.
    expect(files.filter((f) => /^package\/dist\/(src|handlers)\/.*\.js$/.test(f))).toEqual([]);
    // The same rule on this checkout, whose dist holds the compiled tests once the benchmarks ran
    // (`npm run bench` compiles them): one is put there for this check if there is none.
    const probe = join(ROOT, 'dist', 'test', `install-probe-${process.pid}.js`);
    mkdirSync(dirname(probe), { recursive: true });
    writeFileSync(probe, '');
    try {
      const dry = await runIn('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
      const listed = (JSON.parse(dry.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
      expect(listed).toContain('dist/bundle/cli/main.js');
      expect(listed).not.toContain(`dist/test/install-probe-${process.pid}.js`);
      expect(listed.filter((p) => p.startsWith('dist/test/'))).toEqual([]);
    } finally {
      rmSync(probe, { force: true });
    }
  });

  it('[14.1] npm install -g --prefix: amie --version, demo and db init run from another directory', async () => {
    const amie = join(prefix, 'bin', 'amie');
    const env = cleanEnv({ PATH: `${join(prefix, 'bin')}:${NODE_DIR}:/usr/bin:/bin` });
    expect(await runIn(amie, ['--version'], { cwd: elsewhere, env })).toMatchObject({ code: 0, stdout: VERSION });
    // On the PATH by its bare name, as the README and the cron wrappers call it.
    expect(await runIn(BASH, ['-c', 'amie --version'], { cwd: elsewhere, env })).toMatchObject({
      code: 0,
      stdout: VERSION,
    });
    const demo = await runIn(amie, ['demo'], { cwd: elsewhere, env, timeout: 120_000 });
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/verdict: passed/);
    const init = await runIn(amie, ['-c', config, 'db', 'init'], { cwd: elsewhere, env });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/AMIE tables (created|already there)/);
  }, 180_000);

  it('[14.1] npm install in a site directory: node_modules/.bin/amie runs', async () => {
    const amie = join(site, 'node_modules', '.bin', 'amie');
    const env = cleanEnv({ PATH: `${NODE_DIR}:/usr/bin:/bin` });
    expect(await runIn(amie, ['--version'], { cwd: elsewhere, env })).toMatchObject({ code: 0, stdout: VERSION });
    const dir = mkdtempSync(join(tmp, 'site-db-'));
    const siteConfig = join(dir, 'amie.yaml');
    writeFileSync(siteConfig, readFileSync(config, 'utf8'));
    const init = await runIn(amie, ['-c', siteConfig, 'db', 'init'], { cwd: site, env });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/AMIE tables created/);
  });

  it('[14.1] the installed cron wrapper finds amie through AMIE_BIN, else the PATH', async () => {
    const wrapper = join(prefix, 'lib', 'node_modules', 'amie-toolkit', 'examples', 'cron', 'amie-process.sh');
    const logs = join(tmp, 'log');
    const init = await runIn(join(prefix, 'bin', 'amie'), ['-c', config, 'db', 'init'], {
      cwd: elsewhere,
      env: cleanEnv({ PATH: `${NODE_DIR}:/usr/bin:/bin` }),
    });
    expect(init.code, init.stderr).toBe(0);
    // cron's own PATH, which has neither amie nor, here, node's directory unless given.
    const byBin = await runIn(BASH, [wrapper, config], {
      cwd: elsewhere,
      env: cleanEnv({ PATH: `${NODE_DIR}:/usr/bin:/bin`, AMIE_BIN: join(prefix, 'bin', 'amie'), AMIE_LOG_DIR: logs }),
    });
    expect(byBin.code, byBin.stderr).toBe(0);
    // A clean run is quiet for cron; its summary goes to the summary log.
    expect(byBin.stdout).toBe('');
    const byPath = await runIn(BASH, [wrapper, config], {
      cwd: elsewhere,
      env: cleanEnv({ PATH: `${join(prefix, 'bin')}:${NODE_DIR}:/usr/bin:/bin`, AMIE_LOG_DIR: logs }),
    });
    expect(byPath.code, byPath.stderr).toBe(0);
    expect(
      readFileSync(join(logs, 'process-summary.log'), 'utf8')
        .split('\n')
        .filter((l) => / 0 packet\(s\)/.test(l)),
    ).toHaveLength(2);
  });
});

describe('[14.1] cron wrappers without amie', () => {
  it('[14.1] say in one line what to set, and exit 2 before touching anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amie-cron-'));
    try {
      const emptyBin = join(dir, 'bin');
      mkdirSync(emptyBin);
      for (const wrapper of WRAPPERS) {
        const script = resolve('examples/cron', wrapper);
        // AMIE_LOG_DIR inside dir: a wrapper that got as far as creating it would show here.
        const env = { PATH: emptyBin, AMIE_LOG_DIR: join(dir, 'log') };
        const missing = await runIn(BASH, [script, join(dir, 'amie.yaml')], { cwd: dir, env });
        expect(missing.code, wrapper).toBe(2);
        expect(missing.stderr.split('\n').filter(Boolean), wrapper).toEqual([
          `${wrapper}: no amie on PATH=${emptyBin}: set AMIE_BIN to the installed amie, e.g. /opt/amie/bin/amie or SITE_DIR/node_modules/.bin/amie`,
        ]);
        const wrong = await runIn(BASH, [script, join(dir, 'amie.yaml')], {
          cwd: dir,
          env: { ...env, AMIE_BIN: join(dir, 'nowhere', 'amie') },
        });
        expect(wrong.code, wrapper).toBe(2);
        expect(wrong.stderr.split('\n').filter(Boolean), wrapper).toEqual([
          `${wrapper}: AMIE_BIN=${join(dir, 'nowhere', 'amie')} is not an executable file: set AMIE_BIN to the installed amie, e.g. /opt/amie/bin/amie or SITE_DIR/node_modules/.bin/amie`,
        ]);
        expect(existsSync(join(dir, 'log')), wrapper).toBe(false);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
