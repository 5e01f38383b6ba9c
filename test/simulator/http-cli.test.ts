import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, amieInProcess, cleanEnv, requireBuiltCli, tempDirs } from '../helpers/cli.js';
import { OFFICIAL } from '../helpers/simulator.js';

// The REST simulator from the command line: the scenarios played through it inside this process;
// the simulator serving a site, as people run the two, in child processes of the compiled program.

const tempDir = tempDirs('amie-rest-sim-');

const amie = (args: string[], cwd: string) => amieInProcess(args, { cwd, trimmed: true });

const SITE_YAML =
  'site:\n  name: EXAMPLE\n  resource: cluster.example.org\ndatabase:\n  path: ./db\nhandler: registry\nlog:\n  level: fatal\nprocess:\n  maxErrorDeferrals: 1\n';

requireBuiltCli();

describe('amie demo --source rest', () => {
  it('runs every scenario through the AMIE REST API served on loopback', async () => {
    const r = await amie(['demo', '--source', 'rest'], tempDir());
    expect(r.stderr).toBe('');
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/through the AMIE REST API it serves at http:\/\/127\.0\.0\.1:\d+\/amie\//);
    for (const name of OFFICIAL) expect(r.stdout).toContain(`${name} (official scenario): passed`);
    expect(r.stdout).toMatch(/^verdict: passed \(8 of 8 scenarios\)/m);
    expect(r.stdout).toMatch(/merged into \S+/);
  }, 120_000);

  it('refuses an unknown source with exit 2', async () => {
    const r = await amie(['demo', '--source', 'carrier-pigeon'], tempDir());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--source: expected tables or rest, got "carrier-pigeon"');
  }, 60_000);
});

describe('amie simulate over REST', () => {
  it('--source rest plays the scenarios in one process; the site database keeps only its books', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'amie.yaml'), SITE_YAML);
    expect((await amie(['-c', 'amie.yaml', 'db', 'init'], dir)).code).toBe(0);
    const r = await amie(['-c', 'amie.yaml', 'simulate', '--source', 'rest', '--scenario', 'all', '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      passed: boolean;
      source: string;
      scenarios: Array<{ name: string; passed: boolean }>;
    };
    expect(out).toMatchObject({ passed: true, source: 'rest' });
    expect(out.scenarios.map((s) => s.name).slice(0, 4)).toEqual(OFFICIAL);
    // Nothing went through the site's AMIE tables.
    const packets = await amie(['-c', 'amie.yaml', 'packets', 'list', '--json'], dir);
    expect(packets.code, packets.stderr).toBe(0);
    expect(JSON.parse(packets.stdout)).toEqual([]);
  }, 180_000);

  it('--serve-rest serves a site running `amie process --watch` with the printed configuration, until SIGTERM', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'central.yaml'),
      'site:\n  name: EXAMPLE\n  resource: cluster.example.org\nlog:\n  level: fatal\n',
    );
    let out = '';
    const server = execa(
      'node',
      [
        CLI,
        '-c',
        'central.yaml',
        'simulate',
        '--serve-rest',
        '--port',
        '0',
        '--scenario',
        'request_user_modify,invalid_packet',
        '--wait',
        '60',
      ],
      {
        cwd: dir,
        env: cleanEnv(),
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
        timeout: 150_000,
      },
    );
    server.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    let site: ResultPromise | undefined;
    try {
      await waitFor(
        () => /Playing /.test(out),
        30_000,
        () => out,
      );
      const key = /export AMIE_REST_API_KEY=(\S+) AMIE_USAGE_API_KEY=\1/.exec(out)?.[1];
      expect(key, out).toBeDefined();
      // The configuration lines exactly as printed, under the site's own.
      const lines = out
        .split('\n')
        .filter((l) => /^ {2}(source|usage): /.test(l))
        .map((l) => l.slice(2));
      expect(lines).toHaveLength(2);
      writeFileSync(join(dir, 'site.yaml'), `${SITE_YAML}${lines.join('\n')}\n`);
      expect((await amie(['-c', 'site.yaml', 'db', 'init'], dir)).code).toBe(0);
      site = execa('node', [CLI, '-c', 'site.yaml', 'process', '--watch', '1'], {
        cwd: dir,
        env: cleanEnv({ AMIE_REST_API_KEY: key!, AMIE_USAGE_API_KEY: key! }),
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
        timeout: 150_000,
      });
      await waitFor(
        () => /^verdict: /m.test(out),
        120_000,
        () => out,
      );
      expect(out).toContain('request_user_modify (official scenario): passed');
      expect(out).toContain('invalid_packet (extra check): passed');
      expect(out).toMatch(/^verdict: passed \(2 of 2 scenarios\)$/m);
      expect(out).toContain('Still serving');
    } finally {
      site?.kill('SIGTERM');
      server.kill('SIGTERM');
    }
    const done = await server;
    expect(done.exitCode, String(done.stderr)).toBe(0);
    expect(String(done.stderr)).toBe('');
    await site;
  }, 180_000);

  it('refuses --serve-rest options that make no sense, with exit 2', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'amie.yaml'), SITE_YAML);
    const r = await amie(['-c', 'amie.yaml', 'simulate', '--serve-rest', '--port', 'http', '--wait', '0'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--port: expected a port number 0-65535, got "http"');
    expect(r.stderr).toContain('--wait: expected a number of seconds, got "0"');
    const noScenario = await amie(['-c', 'amie.yaml', 'simulate'], dir);
    expect(noScenario.code).toBe(2);
    expect(noScenario.stderr).toContain('--scenario: give all or scenario names');
  }, 60_000);
});

async function waitFor(ok: () => boolean, ms: number, show: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out; output so far:\n${show()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
