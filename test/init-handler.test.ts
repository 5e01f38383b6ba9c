import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from './helpers/cli.js';

// `amie init handler DIR` as a site uses it: scaffold the package, install the toolkit into it
// (here the packed checkout, as a site installs a release tarball), build it and play the
// simulator's scenarios with `npm test`. TypeScript comes from this checkout, so nothing is downloaded.
const ROOT = resolve('.');
const VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const NODE_DIR = dirname(process.execPath);

function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('AMIE_') && !k.startsWith('npm_')) env[k] = v;
  return { ...env, ...extra };
}

async function run(
  file: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; timeout?: number },
) {
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

const npm = (args: string[], cwd: string, env?: Record<string, string>) =>
  run('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd,
    env,
    timeout: 150_000,
  });

let tmp: string;

describe('[14.2] amie init handler', () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'amie-init-'));
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('[14.2] scaffolds a handler package that builds and passes amie simulate --scenario all', async () => {
    // The toolkit as a release tarball, packed from a copy of the checkout with the dist the suite
    // runs on already built (test/install.test.ts checks the clean build the pack scripts do).
    const project = join(tmp, 'project');
    const skip = new Set(['node_modules', 'test', '.git', '.amie', 'coverage']);
    cpSync(ROOT, project, {
      recursive: true,
      filter: (src) => {
        const rel = relative(ROOT, src);
        return !skip.has(rel.split(/[\\/]/)[0]!) && !rel.startsWith(join('dist', 'test')) && !src.endsWith('.tgz');
      },
    });
    const pack = await npm(['pack', '--ignore-scripts', '--pack-destination', tmp], project);
    expect(pack.code, pack.stderr).toBe(0);
    const tarball = join(tmp, `amie-toolkit-${VERSION}.tgz`);

    const init = await run('node', [CLI, 'init', 'handler', 'my-site'], { cwd: tmp });
    expect(init.code, init.stderr).toBe(0);
    const dir = join(tmp, 'my-site');
    for (const f of ['package.json', 'tsconfig.json', 'src/handler.ts', 'test/amie.yaml', 'README.md', '.gitignore'])
      expect(existsSync(join(dir, f)), f).toBe(true);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      name: string;
      dependencies: Record<string, string>;
      scripts: Record<string, string>;
    };
    expect(pkg.name).toBe('my-site');
    // By default it depends on the toolkit that made it.
    expect(pkg.dependencies['amie-toolkit']).toBe(`file:${ROOT}`);
    const source = readFileSync(join(dir, 'src/handler.ts'), 'utf8');
    expect(source).toContain('export default class MySiteHandler extends RegistryHandler<Options>');
    for (const hook of [
      'createLogin',
      'createProject',
      'addAccount',
      'setAccountActive',
      'setProjectActive',
      'setAllocation',
      'updateDns',
      'updatePerson',
      'mergePeople',
    ])
      expect(source).toMatch(new RegExp(`/\\*\\*[^\\n]*\\*/\\n  override async ${hook}\\(`));

    // The released toolkit replaces the default dependency; the dev tools are this checkout's.
    const install = await npm(['install', '--omit=dev', tarball], dir);
    expect(install.code, install.stderr).toBe(0);
    // (The toolkit's dependencies usually bring @types/node along.)
    if (!existsSync(join(dir, 'node_modules/@types/node'))) {
      mkdirSync(join(dir, 'node_modules/@types'), { recursive: true });
      symlinkSync(realpathSync(join(ROOT, 'node_modules/@types/node')), join(dir, 'node_modules/@types/node'));
    }
    const env = cleanEnv({ PATH: `${join(ROOT, 'node_modules/.bin')}:${NODE_DIR}:/usr/bin:/bin` });
    const test = await npm(['test'], dir, env);
    expect(test.code, `${test.stdout}\n${test.stderr}`).toBe(0);
    expect(existsSync(join(dir, 'dist/handler.js'))).toBe(true);
    expect(test.stdout).toMatch(/handler my-site/);
    expect(test.stdout).toMatch(/verdict: passed \(8 of 8 scenarios\)/);
  }, 180_000);

  it('[14.2] refuses a directory that is not empty, and changes nothing in it', async () => {
    const dir = join(tmp, 'taken');
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), '{}');
    const r = await run('node', [CLI, 'init', 'handler', dir], { cwd: tmp });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`amie: ${dir}: already exists and is not an empty directory; give a new directory`);
    expect(readFileSync(join(dir, 'package.json'), 'utf8')).toBe('{}');
  });

  it('[14.2] --toolkit takes a tarball path relative to where amie runs', async () => {
    const r = await run(
      'node',
      [CLI, 'init', 'handler', 'by-tarball', '--toolkit', './releases/amie-toolkit-1.2.3.tgz'],
      { cwd: tmp },
    );
    expect(r.code, r.stderr).toBe(0);
    const pkg = JSON.parse(readFileSync(join(tmp, 'by-tarball/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    expect(pkg.dependencies['amie-toolkit']).toBe(`file:${join(tmp, 'releases/amie-toolkit-1.2.3.tgz')}`);
  });
});
