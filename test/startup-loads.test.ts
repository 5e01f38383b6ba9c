/**
 * Start-up cost, checked by what is loaded rather than by the clock (timings live in
 * `npm run bench`): cron runs `amie process` every few minutes and monitoring runs `amie
 * status`, so neither may load what it does not use. A command module that imports a heavy
 * module at top level, or a driver loaded for the wrong database, fails here.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cleanEnv, runIn } from './helpers/cli.js';
import { freshPgDatabase, type TestDatabase } from './helpers/db.js';
import { hasPostgres, pgSkipNote } from './helpers/env.js';

// tsc's tree, module by module: what each command imports shows by its path. The bundle (what
// `amie` runs) keeps the same dynamic-import boundaries; the last test checks it as a whole.
const MAIN = resolve('dist/src/cli/main.js');
const RECORD = resolve('test/fixtures/loads/record.mjs');
const SITE = 'site: { name: EXAMPLE, resource: cluster.example.org }';

const dir = mkdtempSync(join(tmpdir(), 'amie-loads-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `amie args` and returns its exit status and the modules it loaded (URLs and paths). */
async function loadsOf(
  args: string[],
  main = MAIN,
): Promise<{ code: number | undefined; loaded: string[]; stderr: string }> {
  const file = join(dir, `loads-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(file, '');
  const r = await runIn('node', ['--import', RECORD, main, ...args], { cwd: dir, env: cleanEnv({ LOADS_FILE: file }) });
  const loaded = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  return { code: r.code, loaded, stderr: r.stderr };
}

/** The bundle's own files among the loaded modules. */
const bundleFiles = (loaded: string[]) =>
  [...new Set(loaded.map((m) => m.replace(/\\/g, '/')).filter((m) => m.includes('/dist/bundle/')))].sort();

/** A package by its node_modules directory, a module of the toolkit by its path under src/. */
const pkg = (name: string) => (m: string) => m.replace(/\\/g, '/').includes(`/node_modules/${name}/`);
const src = (path: string) => (m: string) => m.replace(/\\/g, '/').includes(`/src/${path}`);

const HEAVY = {
  '@slack/web-api': pkg('@slack/web-api'),
  execa: pkg('execa'),
  '@electric-sql/pglite': pkg('@electric-sql/pglite'),
  vega: pkg('vega'),
  'vega-lite': pkg('vega-lite'),
  'the simulator': (m: string) => src('simulator/')(m) && !m.endsWith('scenario-names.js'),
  'the usage reporter': (m: string) => ['usage/report', 'usage/sacct', 'usage/api-client'].some((p) => src(p)(m)),
};

function heavyLoaded(loaded: string[], also: Record<string, (m: string) => boolean> = {}): string[] {
  return Object.entries({ ...HEAVY, ...also })
    .filter(([, match]) => loaded.some(match))
    .map(([name]) => name);
}

beforeAll(() => {
  readFileSync(MAIN); // built first (npm test does it)
});

describe('what amie loads at start-up', () => {
  it('amie --help loads no database driver, configuration schema or logger', async () => {
    const r = await loadsOf(['--help']);
    expect(r.code).toBe(0);
    // The recorder works: the command modules are listed.
    expect(r.loaded.some(src('cli/commands/process.js'))).toBe(true);
    expect(heavyLoaded(r.loaded, { pg: pkg('pg'), zod: pkg('zod'), yaml: pkg('yaml'), pino: pkg('pino') })).toEqual([]);
  });

  describe.runIf(hasPostgres())(`on PostgreSQL${pgSkipNote}`, () => {
    let t: TestDatabase;
    let config: string;
    beforeAll(async () => {
      t = await freshPgDatabase();
      config = join(dir, 'pg.yaml');
      writeFileSync(config, [SITE, `database: { url: "${t.url}" }`, 'handler: registry'].join('\n'));
      const init = await loadsOf(['-c', config, 'db', 'init']);
      expect(init.code, init.stderr).toBe(0);
    }, 120_000);
    afterAll(() => t?.cleanup());

    it('amie status loads pg and nothing it does not use', async () => {
      const r = await loadsOf(['-c', config, 'status']);
      // OK, or WARNING for a database no pass has run on yet: a verdict, not UNKNOWN (3).
      expect([0, 1], r.stderr).toContain(r.code);
      // pg is required from CommonJS: seeing it shows the recorder sees those modules too.
      expect(r.loaded.some(pkg('pg'))).toBe(true);
      expect(heavyLoaded(r.loaded, { 'the dispatcher': src('dispatch/') })).toEqual([]);
    });

    it('amie process with nothing pending loads neither Slack, execa, PGlite nor the simulator', async () => {
      const r = await loadsOf(['-c', config, 'process']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.loaded.some(src('dispatch/dispatcher.js'))).toBe(true);
      // Neither the REST source nor the notifier without source: rest or notify.slack.
      const unused = { 'the REST source': src('sources/rest'), 'the Slack notifier': src('notify/slack') };
      expect(heavyLoaded(r.loaded, unused)).toEqual([]);
    });

    it('the bundle amie runs: process on PostgreSQL loads nothing from node_modules', async () => {
      const r = await loadsOf(['-c', config, 'process'], CLI);
      expect(r.code, r.stderr).toBe(0);
      expect(r.loaded.some((m) => m.includes('/dist/bundle/cli/commands/process.js'))).toBe(true);
      // zod, yaml, commander, pg and pino are inside the bundle; the rest is loaded only when used.
      expect(r.loaded.filter((m) => m.replace(/\\/g, '/').includes('/node_modules/'))).toEqual([]);
      expect(r.loaded.filter(src(''))).toEqual([]);
    });

    // Node's loader spends about half a millisecond on every file: the bundle groups what these
    // commands load together into a few chunks (rolldown.config.js, CHUNK_GROUPS). Today status
    // loads 12 files and process 16; a module that leaves its group shows here as many more.
    it.each([
      ['status', 14],
      ['process', 18],
    ])('the bundle: amie %s loads at most %i of its files', async (command, most) => {
      const r = await loadsOf(['-c', config, command], CLI);
      expect([0, 1], r.stderr).toContain(r.code);
      expect(bundleFiles(r.loaded).length, bundleFiles(r.loaded).join('\n')).toBeLessThanOrEqual(most);
    });
  });

  it('the bundle: amie --help loads neither the configuration schema, the driver nor the dispatcher', async () => {
    const r = await loadsOf(['--help'], CLI);
    expect(r.code).toBe(0);
    const chunks = bundleFiles(r.loaded).map((f) => f.replace(/^.*\/dist\/bundle\//, ''));
    expect(chunks).toContain('cli/commands/process.js');
    expect(chunks.filter((f) => /^chunks\/(database|process|pg|log)-/.test(f))).toEqual([]);
  });

  it('the bundle: its files import one another without a circle', () => {
    // The chunk groups are made without pulling each module's imports along (rolldown.config.js):
    // a circle between chunks could run a module before one it needs.
    const root = resolve('dist/bundle');
    const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'));
    const imports = new Map(
      files.map((f) => {
        const text = readFileSync(join(root, f), 'utf8');
        const targets = [...text.matchAll(/^(?:import|export)\b[^;]*?["'](\.[^"']+)["']/gm)].map((m) =>
          join(dirname(f), m[1]!),
        );
        return [join(f), targets];
      }),
    );
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, path: string[]): void => {
      state.set(f, 'open');
      for (const next of imports.get(f) ?? []) {
        if (state.get(next) === 'open') circles.push([...path.slice(path.indexOf(next)), f, next].join(' -> '));
        else if (!state.has(next)) visit(next, [...path, f]);
      }
      state.set(f, 'done');
    };
    for (const f of imports.keys()) if (!state.has(f)) visit(f, []);
    expect(imports.size).toBeGreaterThan(10);
    expect(circles).toEqual([]);
  });

  it('the bundle: its files are ASCII, which V8 keeps as one-byte text', () => {
    // One character beyond ASCII, even in a comment, and V8 holds the whole file as two-byte text.
    const root = resolve('dist/bundle');
    const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'));
    expect(files.length).toBeGreaterThan(10);
    expect(files.filter((f) => /[^\x00-\x7f]/.test(readFileSync(join(root, f), 'utf8')))).toEqual([]);
  });

  it('pg borrows a navigator only while it loads (pg-navigator.ts), and gives it back', async () => {
    const g = globalThis as { navigator?: unknown };
    const before = g.navigator;
    await import('../src/db/pg.js');
    expect(g.navigator).toBe(before);
  });

  it('amie status on the embedded database loads PGlite, not pg', async () => {
    // No database there: status answers UNKNOWN, after choosing the driver the config names.
    const config = join(dir, 'embedded.yaml');
    writeFileSync(config, [SITE, `database: { path: ./no-db-here }`].join('\n'));
    const r = await loadsOf(['-c', config, 'status']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.loaded.some(pkg('@electric-sql/pglite'))).toBe(true);
    expect(r.loaded.filter(pkg('pg'))).toEqual([]);
  });
});
