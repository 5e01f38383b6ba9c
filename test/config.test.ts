import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  ConfigError,
  configSections,
  knownKeys,
  loadConfig,
  parseConfig,
  resolveDatabaseConfig,
} from '../src/config/index.js';
import { lazySection, lazySectionSchema } from '../src/config/lazy-section.js';
import { notifyConfigSchema } from '../src/notify/config.js';
import { usageConfigSchema } from '../src/usage/config.js';
import { createLogger, resolveLogLevel } from '../src/log.js';
import { tempDirs } from './helpers/cli.js';

const MINIMAL = 'site:\n  name: EXAMPLE\n  resource: cluster.example.org\n';

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'config/amie.yaml', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const tempDir = tempDirs('amie-config-');

describe('parseConfig', () => {
  it('accepts a minimal config and fills the defaults', () => {
    const cfg = parseConfig(MINIMAL, 'config/amie.yaml', {});
    expect(cfg.site).toEqual({ name: 'EXAMPLE', resource: 'cluster.example.org', remoteSite: 'TGCDB' });
    expect(cfg.log.level).toBe('info');
    expect(cfg.database).toBeUndefined();
    expect(cfg.handler).toBeUndefined();
  });

  it('names a misspelt key and the key it probably meant', () => {
    expect(problemsOf(`${MINIMAL}databse:\n  path: ./db\n`)).toEqual([
      'config/amie.yaml: databse: unknown key (did you mean "database"?)',
    ]);
    expect(problemsOf('site:\n  name: X\n  resource: r\n  remotesite: TGCDB\n')).toEqual([
      'config/amie.yaml: site.remotesite: unknown key (did you mean "remoteSite"?)',
    ]);
  });

  it('lists the allowed keys when a key is nothing like any of them', () => {
    expect(problemsOf(`${MINIMAL}colour: blue\n`)).toEqual([
      `config/amie.yaml: colour: unknown key (expected one of: ${Object.keys(configSections).join(', ')})`,
    ]);
  });

  it('rejects a site name longer than local_site_name allows', () => {
    expect(problemsOf('site:\n  name: A-VERY-LONG-SITE-NAME\n  resource: r\n')).toEqual([
      'config/amie.yaml: site.name: expected at most 16 characters, got "A-VERY-LONG-SITE-NAME"',
    ]);
  });

  it('reports every problem at once, one line each', () => {
    const problems = problemsOf('site:\n  resurce: r\nhandler: {modul: x}\nlog: {level: loud}\n');
    expect(problems).toEqual([
      'config/amie.yaml: site.name: missing: expected a string',
      'config/amie.yaml: site.resource: missing: expected a string',
      'config/amie.yaml: site.resurce: unknown key (did you mean "resource"?)',
      'config/amie.yaml: handler.module: missing: expected a string',
      'config/amie.yaml: handler.modul: unknown key (did you mean "module"?)',
      'config/amie.yaml: log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "loud"',
    ]);
  });

  it('refuses both a server url and an embedded path', () => {
    expect(problemsOf(`${MINIMAL}database:\n  url: postgres://amie@db/amie\n  path: ./db\n`)).toEqual([
      'config/amie.yaml: database: give either url (a PostgreSQL server) or path (the embedded database), not both',
    ]);
  });

  it('refuses a database url that is not a PostgreSQL URL', () => {
    expect(problemsOf(`${MINIMAL}database:\n  url: mysql://db/amie\n`)).toEqual([
      'config/amie.yaml: database.url: expected a PostgreSQL URL: postgres://user@host:port/dbname',
    ]);
  });

  it('names the key and the variable when passwordEnv names an unset variable', () => {
    const text = `${MINIMAL}database:\n  url: postgres://amie@db/amie\n  passwordEnv: AMIE_DB_PASSWORD\n`;
    expect(problemsOf(text, {})).toEqual([
      'config/amie.yaml: database.passwordEnv: environment variable AMIE_DB_PASSWORD is not set',
    ]);
    expect(() => parseConfig(text, 'config/amie.yaml', { AMIE_DB_PASSWORD: 's3cret' })).not.toThrow();
    // AMIE_DATABASE_URL replaces the database section, so its password is not needed.
    expect(() => parseConfig(text, 'config/amie.yaml', { AMIE_DATABASE_URL: 'postgres://x@y/z' })).not.toThrow();
  });

  it('refuses a password both in the url and in passwordEnv', () => {
    const text = `${MINIMAL}database:\n  url: postgres://amie:pw@db/amie\n  passwordEnv: AMIE_DB_PASSWORD\n`;
    const problems = problemsOf(text, { AMIE_DB_PASSWORD: 'x' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^config\/amie\.yaml: database\.passwordEnv: database\.url already carries a password/);
  });

  it('gives line and column of a YAML syntax error', () => {
    expect(problemsOf('site:\n  name: X\n  resource: [r\nlog:\n  level: info\n')).toEqual([
      'config/amie.yaml:4:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    expect(problemsOf('site:\n  name: X\n  name: Y\n')[0]).toMatch(
      /^config\/amie\.yaml:3:3: YAML syntax error: Map keys must be unique/,
    );
  });

  it('says what an empty file lacks', () => {
    expect(problemsOf('# nothing yet\n')).toEqual([
      'config/amie.yaml: the file is empty: expected at least a site section (name, resource)',
    ]);
  });
});

describe('lazySection', () => {
  it('builds a section schema only for a file that has the section, once, and reports its issues under the key', () => {
    let built = 0;
    const config = z.strictObject({
      site: z.string(),
      extra: lazySection(() => {
        built++;
        return z.strictObject({ size: z.number().int().min(1) });
      }),
    });
    expect(config.parse({ site: 'x' })).toEqual({ site: 'x' });
    expect(built).toBe(0);
    expect(config.parse({ site: 'x', extra: { size: 2 } })).toEqual({ site: 'x', extra: { size: 2 } });
    const failed = config.safeParse({ site: 'x', extra: { size: 0, sise: 1 } });
    expect(failed.error?.issues.map((i) => [i.path.join('.'), i.code])).toEqual([
      ['extra.size', 'too_small'],
      ['extra', 'unrecognized_keys'],
    ]);
    expect(built).toBe(1);
    expect(knownKeys(config, ['extra'])).toEqual(['size']);
  });

  it('mounts the usage: and notify: sections, which most configurations do not have', () => {
    expect(lazySectionSchema(configSections.usage)).toBe(usageConfigSchema());
    expect(lazySectionSchema(configSections.notify)).toBe(notifyConfigSchema());
    expect(problemsOf(`${MINIMAL}notify: { slack: { chanel: x } }\n`)).toEqual([
      'config/amie.yaml: notify.slack.channel: missing: expected a string',
      'config/amie.yaml: notify.slack.chanel: unknown key (did you mean "channel"?)',
    ]);
  });
});

describe('resolveDatabaseConfig', () => {
  it('fills the password from the named variable, escaped for the URL', () => {
    const cfg = parseConfig(`${MINIMAL}database:\n  url: postgres://amie@db:5432/amie\n  passwordEnv: PW\n`, 'x.yaml', {
      PW: 'p@ss/word',
    });
    const { url } = resolveDatabaseConfig(cfg, { PW: 'p@ss/word' });
    expect(new URL(url!).password).toBe(encodeURIComponent('p@ss/word'));
    expect(decodeURIComponent(new URL(url!).password)).toBe('p@ss/word');
  });

  it('takes an embedded path relative to the config file', () => {
    const cfg = {
      ...parseConfig(`${MINIMAL}database:\n  path: ../var/db\n`, 'x', {}),
      configFile: '/etc/amie/amie.yaml',
    };
    expect(resolveDatabaseConfig(cfg, {})).toEqual({ path: resolve('/etc/amie/../var/db') });
  });

  it('lets AMIE_DATABASE_URL replace the database section', () => {
    const cfg = parseConfig(`${MINIMAL}database:\n  path: ./db\n`, 'x', {});
    expect(resolveDatabaseConfig(cfg, { AMIE_DATABASE_URL: 'postgres://a@b/c' })).toEqual({ url: 'postgres://a@b/c' });
  });

  it('leaves the embedded default to openDatabase when there is no database section', () => {
    expect(resolveDatabaseConfig(parseConfig(MINIMAL, 'x', {}), {})).toEqual({ path: resolve('.amie/db') });
  });
});

describe('loadConfig', () => {
  it('reads the file AMIE_CONFIG names when no file is given', async () => {
    const dir = tempDir();
    const file = join(dir, 'site.yaml');
    writeFileSync(file, MINIMAL.replace('EXAMPLE', 'FROMENV'));
    const cfg = await loadConfig(undefined, { AMIE_CONFIG: file }, dir);
    expect(cfg.site.name).toBe('FROMENV');
    expect(cfg.configFile).toBe(file);
  });

  it('prefers the file given with -c over AMIE_CONFIG', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.yaml'), MINIMAL.replace('EXAMPLE', 'GIVEN'));
    writeFileSync(join(dir, 'b.yaml'), MINIMAL.replace('EXAMPLE', 'FROMENV'));
    const cfg = await loadConfig('a.yaml', { AMIE_CONFIG: join(dir, 'b.yaml') }, dir);
    expect(cfg.site.name).toBe('GIVEN');
  });

  it('falls back to config/amie.yaml in the current directory', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'amie.yaml'), MINIMAL);
    const cfg = await loadConfig(undefined, {}, dir);
    expect(cfg.configFile).toBe(join(dir, 'config', 'amie.yaml'));
  });

  it('says how to give a configuration when there is none', async () => {
    const dir = tempDir();
    await expect(loadConfig(undefined, {}, dir)).rejects.toThrow(
      /^no configuration file: give -c FILE or set AMIE_CONFIG/,
    );
    await expect(loadConfig(undefined, { AMIE_CONFIG: 'nope.yaml' }, dir)).rejects.toThrow(
      'cannot read configuration file nope.yaml (named by AMIE_CONFIG): no such file',
    );
    await expect(loadConfig('nope.yaml', {}, dir)).rejects.toThrow(
      'cannot read configuration file nope.yaml (given with -c): no such file',
    );
  });

  it('prefixes problems with the file name as given', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.yaml'), `${MINIMAL}databse: {}\n`);
    await expect(loadConfig('bad.yaml', {}, dir)).rejects.toThrow(
      'bad.yaml: databse: unknown key (did you mean "database"?)',
    );
  });

  it('accepts the example configurations shipped in config/', async () => {
    const amie = await loadConfig('config/amie.yaml', { AMIE_DB_PASSWORD: 'x' });
    expect(amie.site.name).toBe('EXAMPLE');
    expect(amie.database?.passwordEnv).toBe('AMIE_DB_PASSWORD');
    const embedded = await loadConfig('config/embedded.yaml', {});
    expect(resolveDatabaseConfig(embedded, {})).toEqual({ path: resolve('config/.amie/db') });
  });
});

describe('logging', () => {
  function capture() {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, cb) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        cb();
      },
    });
    return { lines, destination };
  }

  it('redacts passwords in URLs and secrets by configuration', () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination });
    log.info(
      {
        database: { url: 'postgres://amie:hunter2@db.example.org/amie', password: 'hunter2' },
        api: { apiKey: 'k-123', token: 't-456' },
      },
      'opened',
    );
    log.child({ packetRecId: 7 }).info({ url: 'postgres://u:hunter2@h/d' }, 'child');
    const text = lines.join('\n');
    expect(text).not.toMatch(/hunter2|k-123|t-456/);
    const first = JSON.parse(lines[0]!);
    expect(first.database.url).toBe('postgres://amie:***@db.example.org/amie');
    expect(first.api.apiKey).toBe('[redacted]');
    expect(JSON.parse(lines[1]!).packetRecId).toBe(7);
  });

  it('takes its level from --debug, then AMIE_LOG_LEVEL, then the config', () => {
    expect(resolveLogLevel({ level: 'warn', env: {} })).toBe('warn');
    expect(resolveLogLevel({ level: 'warn', env: { AMIE_LOG_LEVEL: 'error' } })).toBe('error');
    expect(resolveLogLevel({ level: 'warn', env: { AMIE_LOG_LEVEL: 'error' }, debug: true })).toBe('debug');
    expect(resolveLogLevel({ env: {} })).toBe('info');
    expect(() => resolveLogLevel({ env: { AMIE_LOG_LEVEL: 'loud' } })).toThrow(ConfigError);
  });
});
