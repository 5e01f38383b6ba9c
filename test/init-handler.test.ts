import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { amieIn, cleanEnv, npm, packCheckout, tempDirs } from './helpers/cli.js';

// `amie init handler DIR` as a site uses it: scaffold the package, install the toolkit into it
// (here the packed checkout, as a site installs a release tarball), build it and play the
// simulator's scenarios with `npm test`. TypeScript comes from this checkout, so nothing is downloaded.
const ROOT = resolve('.');
const NODE_DIR = dirname(process.execPath);

const tempDir = tempDirs('amie-init-');
let tmp: string;

describe('[14.2] amie init handler', () => {
  beforeAll(() => {
    tmp = tempDir();
  });

  it('[14.2] scaffolds a handler package that builds and passes amie simulate --scenario all', async () => {
    // The toolkit as a release tarball, packed with the dist the suite runs on already built
    // (test/install.test.ts checks the clean build the pack scripts do).
    const { pack, tarball } = await packCheckout(tmp);
    expect(pack.code, pack.stderr).toBe(0);

    const init = await amieIn(tmp, ['init', 'handler', 'my-site']);
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
    const r = await amieIn(tmp, ['init', 'handler', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`amie: ${dir}: already exists and is not an empty directory; give a new directory`);
    expect(readFileSync(join(dir, 'package.json'), 'utf8')).toBe('{}');
  });

  it('[14.2] --toolkit takes a tarball path relative to where amie runs', async () => {
    const r = await amieIn(tmp, ['init', 'handler', 'by-tarball', '--toolkit', './releases/amie-toolkit-1.2.3.tgz']);
    expect(r.code, r.stderr).toBe(0);
    const pkg = JSON.parse(readFileSync(join(tmp, 'by-tarball/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    expect(pkg.dependencies['amie-toolkit']).toBe(`file:${join(tmp, 'releases/amie-toolkit-1.2.3.tgz')}`);
  });
});
