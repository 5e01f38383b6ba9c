import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { amieInProcess, tempDirs } from '../helpers/cli.js';
import { initialisedPgliteDir } from '../helpers/db.js';
import { OFFICIAL } from '../helpers/simulator.js';

// `amie demo` and `amie simulate` as people run them, inside this process (amieInProcess: in a
// directory of their own, with no AMIE_ variable from the test's environment).

const tempDir = tempDirs('amie-sim-');

const amie = (args: string[], cwd: string) => amieInProcess(args, { cwd, trimmed: true });

describe('amie demo', () => {
  it('runs every scenario against the registry handler, twice in a row, with nothing set up', async () => {
    const cwd = tempDir();
    for (let run = 1; run <= 2; run++) {
      const r = await amie(['demo'], cwd);
      expect(r.stderr, `run ${run}`).toBe('');
      expect(r.code, `run ${run}\n${r.stdout}`).toBe(0);
      for (const name of OFFICIAL) expect(r.stdout).toContain(`${name} (official scenario): passed`);
      expect(r.stdout).toContain('invalid_packet (extra check): passed');
      expect(r.stdout).toMatch(/^verdict: passed \(8 of 8 scenarios\)/m);
      // The final registry: a merged person, an inactive-then-reactivated account, projects with their state.
      expect(r.stdout).toMatch(/^people\n/m);
      expect(r.stdout).toMatch(/merged into \S+/);
      expect(r.stdout).toMatch(/^projects\n/m);
      expect(r.stdout).toMatch(/^accounts\n/m);
      expect(r.stdout).toContain("Zoë D'Angelo");
    }
  }, 120_000);
});

describe('amie simulate', () => {
  const config = (dir: string, handler: string) =>
    writeFileSync(
      join(dir, 'amie.yaml'),
      `site:\n  name: EXAMPLE\n  resource: cluster.example.org\ndatabase:\n  path: ./db\nhandler: ${handler}\nlog:\n  level: fatal\nprocess:\n  maxErrorDeferrals: 1\n`,
    );

  it('passes with the registry handler and fails, naming the tag, with a handler whose NAC lacks UserPersonID', async () => {
    const dir = tempDir();
    config(dir, 'registry');
    await initialisedPgliteDir(join(dir, 'db'));
    const good = await amie(['-c', 'amie.yaml', 'simulate', '--scenario', 'request_user_modify,invalid_packet'], dir);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout).toContain('request_user_modify (official scenario): passed');
    expect(good.stdout).toMatch(/^verdict: passed \(2 of 2 scenarios\)$/m);

    writeFileSync(
      join(dir, 'broken.mjs'),
      `import { RegistryHandler } from ${JSON.stringify(pathToFileURL(resolve('dist/handlers/registry.js')).href)};
export default class Broken extends RegistryHandler {
  async request_account_create(p, ctx) {
    const reply = await super.request_account_create(p, ctx);
    delete reply.UserPersonID;
    return reply;
  }
}
`,
    );
    config(dir, './broken.mjs');
    const bad = await amie(['-c', 'amie.yaml', 'simulate', '--scenario', 'request_account_reactivate', '--json'], dir);
    expect(bad.code, bad.stderr).toBe(1);
    const out = JSON.parse(bad.stdout) as {
      passed: boolean;
      scenarios: Array<{ name: string; passed: boolean; checks: Array<{ ok: boolean; message: string }> }>;
    };
    expect(out.passed).toBe(false);
    expect(out.scenarios[0]!.name).toBe('request_account_reactivate');
    expect(
      out.scenarios[0]!.checks.filter((c) => !c.ok)
        .map((c) => c.message)
        .join('\n'),
    ).toContain('UserPersonID: required tag is missing');
  }, 120_000);

  it('refuses an unknown scenario with exit 2, listing the names', async () => {
    const dir = tempDir();
    config(dir, 'registry');
    const r = await amie(['-c', 'amie.yaml', 'simulate', '--scenario', 'everything'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      '--scenario: unknown scenario "everything"; expected all or one of request_project_reactivate',
    );
  }, 60_000);
});
