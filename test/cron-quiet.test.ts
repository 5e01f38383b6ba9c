import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { openPglite } from '../src/db/index.js';
import { SimData } from '../src/simulator/people.js';
import { SITE, seedIncoming } from './helpers/amie.js';
import { hasSlurm } from './helpers/slurm.js';
import { CLI, amieInProcess, cleanEnv, requireBuiltCli, runIn, tempDirs } from './helpers/cli.js';

// The shipped cron wrappers, run as cron runs them, with the built amie behind AMIE_BIN: cron
// mails whatever they print, so a clean run must print nothing.
const BASH = '/bin/bash';

const tempDir = tempDirs('amie-cron-quiet-');

/** A site directory: a config with the embedded database, an installed-looking amie, a log directory. */
function siteDir() {
  const dir = tempDir();
  mkdirSync(join(dir, 'bin'));
  const amie = join(dir, 'bin', 'amie');
  writeFileSync(amie, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`);
  chmodSync(amie, 0o755);
  const config = join(dir, 'amie.yaml');
  writeFileSync(config, `site: { name: ${SITE.name}, resource: ${SITE.resource} }\nhandler: registry\n`);
  const logs = join(dir, 'log');
  const env = cleanEnv({ AMIE_BIN: amie, AMIE_LOG_DIR: logs });
  const run = (wrapper: string, args: string[] = [config], extra: Record<string, string> = {}) =>
    runIn(BASH, [resolve('examples/cron', wrapper), ...args], {
      cwd: tempDir(),
      env: { ...env, ...extra },
      timeout: 120_000,
    });
  /** `amie db init`, as the site's administrator runs it once (inside this process: not what is tested here). */
  const initDb = () => amieInProcess(['-c', config, 'db', 'init'], { cwd: dir, env, trimmed: true });
  return { dir, amie, config, logs, env, run, initDb, database: join(dir, '.amie', 'db') };
}

async function seed(path: string, tags: Record<string, unknown>) {
  const db = await openPglite({ path });
  try {
    await seedIncoming(db, 'request_project_create', tags as never);
  } finally {
    await db.close();
  }
}

function validRpc() {
  const data = new SimData(SITE.resource);
  return data.rpc(data.person());
}

requireBuiltCli();

describe('quiet cron', () => {
  it('[14.6] amie-process.sh prints nothing on a clean pass, with or without packets, and prints on a failure', async () => {
    const site = siteDir();
    const init = await site.initDb();
    expect(init.code, init.stderr).toBe(0);

    const empty = await site.run('amie-process.sh');
    expect(empty).toEqual({ code: 0, stdout: '', stderr: '' });

    await seed(site.database, validRpc());
    const answered = await site.run('amie-process.sh');
    expect(answered).toEqual({ code: 0, stdout: '', stderr: '' });

    // The summaries are in the summary log, one timestamped line per run; the JSON lines in process.log.
    const summaries = readFileSync(join(site.logs, 'process-summary.log'), 'utf8').trim().split('\n');
    expect(summaries).toHaveLength(2);
    expect(summaries[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 0 packet\(s\): 0 answered/);
    expect(summaries[1]).toMatch(/Z 1 packet\(s\): 1 answered, 0 failed/);
    expect(readFileSync(join(site.logs, 'process.log'), 'utf8')).toContain('"msg":"run finished"');

    // A packet the site must refuse: a failure reply, exit 1, and the mail says so.
    const broken = validRpc();
    delete broken.GrantNumber;
    await seed(site.database, broken);
    const failed = await site.run('amie-process.sh');
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^1 packet\(s\): 0 answered, 1 failed \(1 invalid\)/);
    expect(failed.stderr).toContain(`amie process exited 1; see ${join(site.logs, 'process.log')}`);
    expect(failed.stderr).not.toContain('{"level"');
  }, 240_000);

  it("[14.6] amie-process.sh prints amie's own error line when nothing could be done (exit 2)", async () => {
    const site = siteDir();
    // The database was never created: amie refuses and says what to run, and the mail carries that line.
    const r = await site.run('amie-process.sh');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`amie: embedded database ${site.database} does not exist: run \`amie db init\``);
    expect(r.stderr).toContain('amie process exited 2');
  });

  it.skipIf(!hasSlurm())(
    '[14.6] amie-slurm.sh prints nothing on a clean pass',
    async () => {
      const site = siteDir();
      const init = await site.initDb();
      expect(init.code, init.stderr).toBe(0);
      const r = await site.run('amie-slurm.sh', [site.config], {
        AMIE_SLURM_PATH: process.env.PATH ?? '/usr/bin:/bin',
      });
      expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
      expect(readFileSync(join(site.logs, 'process-summary.log'), 'utf8')).toMatch(/Z 0 packet\(s\)/);
    },
    120_000,
  );

  it('[14.6] amie process --watch prints only the passes that took packets', async () => {
    const site = siteDir();
    const init = await site.initDb();
    expect(init.code, init.stderr).toBe(0);
    await seed(site.database, validRpc());
    const child = execa(site.amie, ['-c', site.config, 'process', '--watch', '1'], {
      env: site.env,
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
    });
    // Wait for three passes (each logs "run finished"), then stop it as a service manager would.
    let passes = 0;
    child.stderr.on('data', (chunk: Buffer) => (passes += String(chunk).split('"msg":"run finished"').length - 1));
    const deadline = Date.now() + 90_000;
    while (passes < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    const r = await child;
    expect(passes).toBeGreaterThanOrEqual(3);
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout).split('\n')).toEqual([expect.stringMatching(/^1 packet\(s\): 1 answered/)]);
  }, 150_000);
});
