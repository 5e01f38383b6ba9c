import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { amieInProcess } from '../helpers/cli.js';

// `amie demo --keep` and `amie report --html` as an operator runs them, inside this process
// (amieInProcess: in a directory of their own, with no AMIE_ variable from the test's environment).

const amie = (args: string[], cwd: string) => amieInProcess(args, { cwd, trimmed: true });

describe('amie demo --keep, then amie report --html on its configuration', () => {
  let root: string;
  let keep: string;
  let demo: Awaited<ReturnType<typeof amie>>;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'amie-report-cli-'));
    keep = join(root, 'demo');
    demo = await amie(['demo', '--keep', keep], root);
  }, 240_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('keeps the database and writes a configuration for it', () => {
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toContain(`The database is kept in ${join(keep, 'db')}`);
    expect(demo.stdout).toContain(`amie -c ${join(keep, 'amie.yaml')} report --html`);
    const config = readFileSync(join(keep, 'amie.yaml'), 'utf8');
    expect(config).toMatch(/name: DEMO/);
    expect(config).toMatch(/path: db/);
    expect(existsSync(join(keep, 'db', 'PG_VERSION'))).toBe(true);
  });

  it("writes a page with the demo's packets, failure and projects", async () => {
    const page = join(root, 'status.html');
    const r = await amie(['-c', join(keep, 'amie.yaml'), 'report', '--html', 'status.html'], root);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^wrote ${page}: \\d+ packet decision\\(s\\) in 30 days, 0 pending, 0 stuck, 1 failure\\(s\\), \\d+ project\\(s\\)`,
      ),
    );
    const html = readFileSync(page, 'utf8');
    expect(html).toContain('AMIE status: DEMO');
    expect(html).toContain('data-chart="packets-per-day"');
    expect(html).toContain('data-chart="packets-by-type"');
    // The invalid-packet scenario's refused request, with its reason.
    expect(html).toMatch(/<td>invalid<\/td>/);
    expect(html).toContain('required tag is missing');
    // Every project the demo created is in the usage table.
    const projects = [...demo.stdout.matchAll(/^\s*(TG-SIM\w+)\s/gm)].map((m) => m[1]);
    expect(projects.length).toBeGreaterThan(0);
    for (const p of projects) expect(html).toContain(`<td>${p}</td>`);
    // Written atomically: no temporary file is left beside it.
    expect(readdirSync(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }, 120_000);

  it('refuses to reuse a kept directory, and --keep over REST (exit 2)', async () => {
    const again = await amie(['demo', '--keep', keep], root);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`--keep: ${join(keep, 'amie.yaml')} already exists`);
    const rest = await amie(['demo', '--keep', join(root, 'rest'), '--source', 'rest'], root);
    expect(rest.code).toBe(2);
    expect(rest.stderr).toContain('--keep: only with --source tables');
    expect(existsSync(join(root, 'rest'))).toBe(false);
  });

  it('refuses a bad --days and a missing directory before it opens the database (exit 2)', async () => {
    const config = join(keep, 'amie.yaml');
    const days = await amie(['-c', config, 'report', '--html', 'x.html', '--days', '0'], root);
    expect(days.code).toBe(2);
    expect(days.stderr).toContain('--days: expected a whole number from 1 to 366, got "0"');
    const dir = await amie(['-c', config, 'report', '--html', 'nowhere/x.html'], root);
    expect(dir.code).toBe(2);
    expect(dir.stderr).toContain(`--html: directory ${join(root, 'nowhere')} does not exist`);
    const missing = await amie(['-c', config, 'report'], root);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '--html <file>' not specified");
  });
});
