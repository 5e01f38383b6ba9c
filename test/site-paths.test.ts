import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, resolveDatabaseConfig } from '../src/config/index.js';
import { createHandler } from '../src/cli/handler.js';
import type { Database } from '../src/db/index.js';
import type { SlurmOptions } from '../handlers/slurm.js';
import { quietLog } from './helpers/amie.js';
import { amieInProcess, tempDirs } from './helpers/cli.js';

// Paths in a configuration file are the file's: cron starts amie in some other directory. amie runs
// inside this process here, given a directory that is not this process's own: a path taken from
// the process's directory instead of the one amie is given fails these tests.
const SITE = 'site:\n  name: EXAMPLE\n  resource: cluster.example.org\n';

const amie = (args: string[], cwd: string) => amieInProcess(args, { cwd, trimmed: true });

const tempDir = tempDirs('amie-paths-');

describe('paths in the configuration', () => {
  it('[14.3] a copy of config/embedded.yaml keeps its database beside the copy, whatever directory amie runs in', async () => {
    const top = tempDir();
    mkdirSync(join(top, 'site'));
    mkdirSync(join(top, 'elsewhere'));
    copyFileSync('config/embedded.yaml', join(top, 'site', 'my-site.yaml'));
    const init = await amie(['-c', 'site/my-site.yaml', 'db', 'init'], top);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`embedded database ${join(top, 'site', '.amie', 'db')}:`);
    expect(existsSync(join(top, 'site', '.amie', 'db'))).toBe(true);
    // Not in the directory above the copy, nor in the current directory.
    expect(existsSync(join(top, '.amie'))).toBe(false);

    // Cron in another directory, with the file's full path: the same database.
    const check = await amie(['-c', join(top, 'site', 'my-site.yaml'), 'db', 'check'], join(top, 'elsewhere'));
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`embedded database ${join(top, 'site', '.amie', 'db')}: AMIE tables ready`);
    expect(readdirSync(join(top, 'elsewhere'))).toEqual([]);
  });

  it('[14.3] without a database section the embedded database is .amie/db beside the config file, not in the current directory', async () => {
    const top = tempDir();
    mkdirSync(join(top, 'etc'));
    writeFileSync(join(top, 'etc', 'amie.yaml'), `${SITE}handler: registry\n`);
    const cfg = await loadConfig(join(top, 'etc', 'amie.yaml'), {}, '/');
    expect(resolveDatabaseConfig(cfg, {})).toEqual({ path: join(top, 'etc', '.amie', 'db') });
    const init = await amie(['-c', 'etc/amie.yaml', 'db', 'init'], top);
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`embedded database ${join(top, 'etc', '.amie', 'db')}:`);
    expect(existsSync(join(top, '.amie'))).toBe(false);
  });

  it('[14.3] process, db check, packets list and the rest refuse a missing database, name db init, and create nothing', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'amie.yaml'), `${SITE}database:\n  path: data/amie-db\nhandler: registry\n`);
    const want = join(dir, 'data', 'amie-db');
    for (const args of [
      ['process'],
      ['process', '--dry-run'],
      ['db', 'check'],
      ['packets', 'list'],
      ['registry', 'projects'],
      ['usage', 'failed'],
      ['report-usage'],
    ]) {
      const r = await amie(['-c', 'amie.yaml', ...args], dir);
      expect(r.code, `amie ${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim(), `amie ${args.join(' ')}`).toBe(
        `amie: embedded database ${want} does not exist: run \`amie db init\` to create it`,
      );
      expect(readdirSync(dir), `amie ${args.join(' ')} left files behind`).toEqual(['amie.yaml']);
    }
  });

  it('[14.3] usage.sacctPath and the Slurm handler programs and grid-mapfile are taken from the config file directory', async () => {
    const dir = tempDir();
    const file = join(dir, 'slurm-site.yaml');
    writeFileSync(
      file,
      `${SITE}usage:\n  sacctPath: bin/sacct\nhandler:\n  module: slurm\n  options:\n` +
        `    sacctmgr: ./bin/sacctmgr\n    scancel: scancel\n    createUser: [sbin/make-user, '{login}']\n` +
        `    updateUser: [/usr/sbin/usermod, '{login}']\n    gridMapfile: grid-security/grid-mapfile\n`,
    );
    const cfg = await loadConfig(file, {}, '/');
    expect(cfg.usage?.sacctPath).toBe(join(dir, 'bin', 'sacct'));
    const { handler } = await createHandler(cfg, {} as Database, quietLog, true);
    const slurm = (handler as unknown as { slurm: SlurmOptions }).slurm;
    expect(slurm.sacctmgr).toBe(join(dir, 'bin', 'sacctmgr'));
    // A bare name is looked up on the PATH, an absolute path stays as it is.
    expect(slurm.scancel).toBe('scancel');
    expect(slurm.createUser).toEqual([join(dir, 'sbin', 'make-user'), '{login}']);
    expect(slurm.updateUser).toEqual(['/usr/sbin/usermod', '{login}']);
    expect(slurm.gridMapfile).toBe(join(dir, 'grid-security', 'grid-mapfile'));

    // A bare sacct stays a PATH lookup.
    writeFileSync(file, `${SITE}usage:\n  sacctPath: sacct\n`);
    expect((await loadConfig(file, {}, '/')).usage?.sacctPath).toBe('sacct');
  });
});
