/**
 * The package index as a site's scripts and handlers import it (the compiled `amie-toolkit`
 * entry point): its exports are there and work, although the CLI no longer loads it and the
 * database drivers behind it are loaded only when a database is opened.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { PG_URL, hasPostgres, pgSkipNote } from './helpers/env.js';

const INDEX = resolve('dist/src/index.js');
type Index = typeof import('../src/index.js');
let toolkit: Index;

beforeAll(async () => {
  if (!existsSync(INDEX)) throw new Error(`${INDEX} is missing: build first with npm run build (npm test does it)`);
  toolkit = (await import(pathToFileURL(INDEX).href)) as Index;
});

describe('the amie-toolkit package index', () => {
  it('exports the toolkit: databases, config, store, dispatcher, handlers, sources, simulator, usage, Slurm, Slack', () => {
    const functions = [
      'openDatabase',
      'openPg',
      'openPglite',
      'redactUrl',
      'isConnectionLost',
      'loadConfig',
      'parseConfig',
      'readSecretEnv',
      'createLogger',
      'initDatabase',
      'prepareDatabase',
      'loadHandlerClass',
      'createSource',
      'runScenarios',
      'resolveScenarioNames',
      'reportUsage',
      'createNotifier',
    ] as const;
    for (const name of functions) expect(typeof toolkit[name], name).toBe('function');
    const classes = [
      'DatabaseError',
      'ConfigError',
      'Dispatcher',
      'AmieHandler',
      'RegistryHandler',
      'SlurmHandler',
      'TablesSource',
      'RestSource',
      'SlackNotifier',
      'PacketBody',
    ] as const;
    for (const name of classes) expect(typeof toolkit[name], name).toBe('function');
    expect(toolkit.SCENARIO_NAMES).toContain('request_user_modify');
    expect(toolkit.USAGE_SINKS).toEqual(['amie-db', 'usage-api']);
    expect(toolkit.redactUrl('postgres://amie:secret@db.example.org/amie')).not.toContain('secret');
  });

  it('openPglite opens an in-memory embedded database', async () => {
    const db = await toolkit.openPglite();
    try {
      const { rows } = await db.query<{ one: number }>('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await db.close();
    }
  }, 120_000);

  it('openPg reports a server it cannot reach as a DatabaseError', async () => {
    const err = await toolkit
      .openPg({ url: 'postgres://amie@127.0.0.1:1/amie', connectTimeoutMs: 2000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(toolkit.DatabaseError);
  });

  it.runIf(hasPostgres())(`openDatabase opens a PostgreSQL server by its URL${pgSkipNote}`, async () => {
    const db = await toolkit.openDatabase({ url: PG_URL }, {});
    try {
      expect(db.kind).toBe('pg');
      const { rows } = await db.query<{ one: number }>('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await db.close();
    }
  });
});
