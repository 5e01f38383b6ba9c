import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_HANDLERS, HandlerLoadError, loadHandlerClass, registerBuiltinHandler } from '../src/dispatch/index.js';
import { RegistryHandler, type RegistryOptionsInput } from '../handlers/registry.js';
import { SITE, quietLog } from './helpers/amie.js';
import { freshPgliteDatabase } from './helpers/db.js';
// Registers the built-in handlers (registry, slurm) by name.
import '../handlers/index.js';
import { amieIn, amieInProcess } from './helpers/cli.js';

// Handler modules as a site writes them, loaded the way `amie` loads the one its config names.
const dir = mkdtempSync(join(tmpdir(), 'amie-handler-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A module in the temporary directory; it imports nothing, as a handler built against its own copy of the toolkit looks to the loader. */
function moduleFile(name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return name;
}

/**
 * `amie` run on a config in the temporary directory (embedded database ./db) with `handler`
 * appended: the compiled program in plain node, as a site runs it, or with `here` inside this process.
 */
async function amie(args: string[], handler: string, { here = false } = {}) {
  writeFileSync(
    join(dir, 'amie.yaml'),
    `site:\n  name: EXAMPLE\n  resource: cluster.example.org\ndatabase:\n  path: ./db\nlog:\n  level: silent\n${handler}`,
  );
  const argv = ['-c', join(dir, 'amie.yaml'), ...args];
  return here ? amieInProcess(argv, { cwd: dir, trimmed: true }) : amieIn(dir, argv, { timeout: 60_000 });
}

async function loadError(spec: Parameters<typeof loadHandlerClass>[0]): Promise<string> {
  const err = await loadHandlerClass(spec, dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HandlerLoadError);
  return (err as Error).message;
}

describe('[14.2] loading a site handler', () => {
  beforeAll(async () => {
    const init = await amie(['db', 'init'], '', { here: true });
    expect(init.code, init.stderr).toBe(0);
  }, 60_000);

  it('[14.2] a .ts handler path gets a one-line hint to build it first', async () => {
    // Through the compiled `amie`, in plain node as a site runs it (the test runner itself would compile the file).
    const file = moduleFile(
      'my-site.ts',
      'export default class MySite { async inform_transaction_complete(): Promise<void> {} }\n',
    );
    for (const handler of [`./${file}`, `{ module: ./${file}, options: {} }`]) {
      const r = await amie(['simulate', '--scenario', 'all'], `handler: ${handler}\n`);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe(
        `amie: handler: ${join(dir, file)} is TypeScript, which node does not run: build it first (npm run build, or npx tsc) and name the compiled .js file`,
      );
    }
  }, 60_000);

  it('[14.2] a misspelt built-in handler name gets a "did you mean"', async () => {
    expect(await loadError('registy')).toBe(
      'handler: unknown built-in handler "registy" (did you mean "registry"? built-in: registry, slurm; or give a path to a module)',
    );
    expect(await loadError({ module: 'Slurm' })).toMatch(/unknown built-in handler "Slurm" \(did you mean "slurm"\?/);
    // Nothing close: no guess, the list only.
    expect(await loadError('ldap')).toBe(
      'handler: unknown built-in handler "ldap" (built-in: registry, slurm; or give a path to a module)',
    );
  });

  it('[14.2] a method named like a packet type that is not one is a load error naming the closest type', async () => {
    const typo = moduleFile(
      'typo.mjs',
      `export default class Typo {
        static handlerName = 'typo';
        async request_projet_create() { return {}; }
        async inform_transaction_complete() {}
      }\n`,
    );
    const message = await loadError(`./${typo}`);
    expect(message).toMatch(
      /^handler: typo: method request_projet_create is not an AMIE packet type, so it would never be called \(did you mean request_project_create\?\)/,
    );
    // A reply type the site sends is never called either.
    const reply = moduleFile(
      'reply.mjs',
      `export default class Reply {
        async notify_account_create() { return {}; }
        async inform_transaction_complete() {}
      }\n`,
    );
    expect(await loadError(`./${reply}`)).toMatch(
      /method notify_account_create is a packet the site sends, never one it receives/,
    );
    // Found through a subclass of the registry too, and helpers with other names are left alone.
    class Misnamed extends RegistryHandler {
      async request_acount_create() {
        return {};
      }
      makeHomeDirectory() {}
      make_home_directory() {}
      get request_like_getter() {
        throw new Error('a getter must not be run by the loader');
      }
    }
    // A class of this file reaches the loader as a built-in would: the check is the same for every handler.
    registerBuiltinHandler('misnamed-test', async () => Misnamed);
    try {
      expect(await loadError('misnamed-test')).toMatch(
        /method request_acount_create is not an AMIE packet type.*\(did you mean request_account_create\?\)/,
      );
    } finally {
      delete BUILTIN_HANDLERS['misnamed-test'];
    }
    // Every built-in handler passes the check.
    for (const name of ['registry', 'slurm'])
      await expect(loadHandlerClass(name, dir)).resolves.toMatchObject({ name });
  });

  it('[14.2] a handler constructor that throws exits 2 like other config errors', async () => {
    const file = moduleFile(
      'throws.mjs',
      `export default class Throws {
        static handlerName = 'throws';
        constructor() { throw new Error('cannot read /etc/site-accounts.conf'); }
        async inform_transaction_complete() {}
      }\n`,
    );
    for (const args of [['process'], ['simulate', '--scenario', 'all']]) {
      const r = await amie(args, `handler: ./${file}\n`);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim()).toBe(
        'amie: handler: throws: the constructor failed: cannot read /etc/site-accounts.conf',
      );
    }
  }, 90_000);

  it('[14.2] RegistryHandler takes its options type as a type parameter', async () => {
    type SiteOptions = RegistryOptionsInput & { homeRoot?: string };
    class Site extends RegistryHandler<SiteOptions> {
      home(login: string): string {
        // Typed without a cast: this.options is SiteOptions.
        return `${this.options.homeRoot ?? '/home'}/${login}`;
      }
    }
    const t = await freshPgliteDatabase();
    try {
      const site = new Site({
        db: t.db,
        log: quietLog,
        site: SITE,
        options: { homeRoot: '/u', uidRange: { start: 5000, end: 6000 } },
        dryRun: false,
      });
      expect(site.home('jdoe')).toBe('/u/jdoe');
    } finally {
      await t.cleanup();
    }
  });
});
