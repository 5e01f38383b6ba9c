import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { configSchema, configSections } from '../src/config/schema.js';
import { lazySectionSchema } from '../src/config/lazy-section.js';
import { amieInProcess, CLI } from './helpers/cli.js';

// config/amie.yaml is the reference a site copies from: every key the schema accepts is in it.
const REFERENCE = readFileSync('config/amie.yaml', 'utf8');
const README = readFileSync('README.md', 'utf8');

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  options?: z.ZodType[];
  element?: z.ZodType;
  valueType?: z.ZodType;
  left?: z.ZodType;
  right?: z.ZodType;
}
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Every object key below `schema`, as paths (`usageApi.timeoutSeconds`), looking through wrappers, unions, arrays and records. */
function keyPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  const lazy = lazySectionSchema(schema);
  if (lazy) return keyPaths(lazy, prefix);
  const def = defOf(schema);
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'catch':
    case 'readonly':
    case 'nonoptional':
      return keyPaths(def.innerType!, prefix);
    case 'pipe':
      return [...keyPaths(def.in!, prefix), ...keyPaths(def.out!, prefix)];
    case 'union':
      return def.options!.flatMap((o) => keyPaths(o, prefix));
    case 'intersection':
      return [...keyPaths(def.left!, prefix), ...keyPaths(def.right!, prefix)];
    case 'array':
      return keyPaths(def.element!, prefix);
    case 'record':
      // The keys of a record are the site's own (partition names, Slurm accounts): only its values can hold keys.
      return keyPaths(def.valueType!, prefix);
    case 'object':
      return Object.entries(def.shape!).flatMap(([key, child]) => [
        [...prefix, key],
        ...keyPaths(child, [...prefix, key]),
      ]);
    default:
      return [];
  }
}

/**
 * The part of the reference that documents a top-level section: from the comment block just
 * above its line (`usage:` or `# usage:` when it is commented out) to the comment block above
 * the next section's line.
 */
function sectionText(section: string): string {
  const lines = REFERENCE.split('\n');
  const sections = Object.keys(configSections);
  const lineOf = (name: string) => lines.findIndex((l) => new RegExp(`^(# ?)?${name}:`).test(l));
  const blockStart = (at: number) => {
    let i = at;
    while (i > 0 && lines[i - 1]!.startsWith('#')) i--;
    return i;
  };
  const at = lineOf(section);
  if (at < 0) return '';
  const starts = sections.map(lineOf).filter((i) => i > at);
  const end = starts.length ? blockStart(Math.min(...starts)) : lines.length;
  return lines.slice(blockStart(at), end).join('\n');
}

describe('[14.12] config/amie.yaml documents the whole schema', () => {
  it('[14.12] every key the schema accepts appears in its section of config/amie.yaml', () => {
    const missing: string[] = [];
    const paths = keyPaths(configSchema);
    expect(paths.length).toBeGreaterThan(40);
    for (const path of paths) {
      const text = sectionText(path[0]!);
      const key = path[path.length - 1]!;
      if (!new RegExp(`(^|[\\s{,#-])${key}:`, 'm').test(text)) missing.push(path.join('.'));
    }
    expect(missing).toEqual([]);
  });

  it('[14.12] the reference itself is a valid configuration, usage section included once uncommented', () => {
    const env = { AMIE_DB_PASSWORD: 'x', AMIE_USAGE_API_KEY: 'x' };
    expect(parseConfig(REFERENCE, 'config/amie.yaml', env).site.name).toBe('EXAMPLE');
    // The commented usage section, uncommented as a site would: the keys and values it shows are accepted.
    const usage = sectionText('usage')
      .split('\n')
      .filter((l) => /^# ?usage:|^# {3}/.test(l))
      .map((l) => l.replace(/^# ?/, ''))
      .join('\n');
    const cfg = parseConfig(`${REFERENCE}\n${usage}\n`, 'config/amie.yaml', env);
    expect(cfg.usage).toMatchObject({
      sink: 'amie-db',
      charge: 'gpu-hours',
      overlapHours: 24,
      sacctTimeoutSeconds: 600,
      usageApi: { maxBatchRecords: 1000 },
    });
  });
});

describe('[14.12] the README agrees with what the toolkit does', () => {
  it('[14.12] the logins the README names are the ones the demo hands out', async () => {
    const r = await amieInProcess(['demo', '--json'], { env: { ...process.env, AMIE_CONFIG: '' } });
    expect(r.code, r.stderr).toBe(0);
    const demo = JSON.parse(r.stdout) as { registry: { people: Array<{ login: string | null }> } };
    const logins = new Set(demo.registry.people.map((p) => p.login));
    const sentence = README.match(/The scenarios' people get real Unix users \(([^)]*)\)/);
    expect(sentence, 'the Slurm section names the scenario logins').not.toBeNull();
    const named = [...sentence![1]!.matchAll(/`([a-z0-9_-]+)`/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(1);
    for (const login of named) expect(logins, login).toContain(login);
  }, 120_000);
});

describe('[14.12] amie demo', () => {
  it('[14.12] prints its first line at once, not with the rest once the scenarios are done', async () => {
    const child = execa('node', [CLI, 'demo'], {
      reject: false,
      stdin: 'ignore',
      timeout: 120_000,
      env: { ...process.env, AMIE_CONFIG: '' },
    });
    const startedAt = Date.now();
    let firstAt = 0;
    let first = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (!firstAt) {
        firstAt = Date.now();
        first = chunk.toString('utf8');
      }
    });
    const r = await child;
    const endedAt = Date.now();
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(first.split('\n')[0]).toBe('AMIE toolkit demo: a simulated central site (TGCDB) sends packets to site DEMO');
    // The first line came on its own, before the embedded database was open and any scenario was played, not in
    // the final burst. Compared with the whole run rather than a fixed time: a loaded machine slows both alike.
    expect(first).not.toContain('official scenario');
    expect(first).not.toContain('verdict');
    expect(firstAt - startedAt).toBeLessThan((endedAt - startedAt) / 2);
  }, 120_000);
});

describe('[14.12] the README example handler', () => {
  it('[14.12] passes the scenarios the README says it passes, and no others', async () => {
    expect(README).toContain('`amie simulate --scenario all` with it passes `invalid_packet` only');
    const example = resolve('dist/examples/custom-handler.js');
    // Built by `npm run build` (and the pretest script); build it here when only the toolkit was.
    if (!existsSync(example))
      await execa('node', [resolve('node_modules/typescript/bin/tsc'), '-p', 'examples/tsconfig.json']);
    const dir = mkdtempSync(join(tmpdir(), 'amie-example-'));
    try {
      const config = join(dir, 'amie.yaml');
      writeFileSync(
        config,
        `site:\n  name: EXAMPLE\n  resource: cluster.example.org\ndatabase:\n  path: ./db\nhandler: ${example}\nlog:\n  level: silent\n`,
      );
      const env = { ...process.env, AMIE_CONFIG: '', AMIE_DATABASE_URL: '' };
      const init = await amieInProcess(['-c', config, 'db', 'init'], { env });
      expect(init.code, init.stderr).toBe(0);
      const r = await amieInProcess(['-c', config, 'simulate', '--scenario', 'all', '--json'], { env });
      expect(r.code, r.stderr).toBe(1);
      const report = JSON.parse(r.stdout) as { scenarios: Array<{ name: string; passed: boolean }> };
      expect(report.scenarios.filter((s) => s.passed).map((s) => s.name)).toEqual(['invalid_packet']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
