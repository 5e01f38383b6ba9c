import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPglite } from '../src/db/index.js';
import { amieInProcess } from './helpers/cli.js';
import { initialisedPgliteDir } from './helpers/db.js';

const amie = (args: string[]) =>
  amieInProcess(args, { env: { ...process.env, AMIE_DATABASE_URL: '', AMIE_LOG_LEVEL: 'fatal' } });

/** Values whose keys are data (AMIE tag names, server records, counts by reason), not field names. */
const DATA_KEYS = new Set([
  'body',
  'record',
  'details',
  'skipped',
  'unhandled',
  'unmappedAccounts',
  'chargePerProject',
  'gpuHoursPerProject',
  'keys',
  'reply',
]);
/** Record ids of the AMIE tables and the REST API: JSON numbers everywhere. */
const NUMERIC_IDS = new Set([
  'packetRecId',
  'transRecId',
  'transactionId',
  'packetId',
  'replyPacketRecId',
  'inReplyTo',
]);

/** Every field name camelCase, every record id a number: the README's convention. */
function conventionProblems(value: unknown, path = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => conventionProblems(v, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (!/^[a-z][A-Za-z0-9]*$/.test(k)) out.push(`${path}.${k}: not camelCase`);
    if (NUMERIC_IDS.has(k) && v !== null && typeof v !== 'number')
      out.push(`${path}.${k}: ${JSON.stringify(v)} is not a number`);
    if (!DATA_KEYS.has(k)) out.push(...conventionProblems(v, `${path}.${k}`));
  }
  return out;
}

async function json(args: string[]): Promise<unknown> {
  const r = await amie(args);
  expect(r.stderr).not.toMatch(/unexpected error/);
  const parsed: unknown = JSON.parse(r.stdout);
  expect(conventionProblems(parsed), `amie ${args.join(' ')}`).toEqual([]);
  return parsed;
}

describe('[14.10] one JSON convention for every --json output', () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amie-json-'));
    config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      `site: { name: EXAMPLE, resource: cluster.example.org }\ndatabase: { path: ./db }\nhandler: registry\nlog: { level: fatal }\n`,
    );
    await initialisedPgliteDir(join(dir, 'db'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('[14.10] simulate and demo: camelCase, numeric ids, and site as the same object in both', async () => {
    const sim = (await json(['-c', config, 'simulate', '--scenario', 'all', '--json'])) as {
      site: unknown;
      handler: unknown;
      passed: boolean;
    };
    expect(sim.passed).toBe(true);
    expect(sim.site).toEqual({ name: 'EXAMPLE', resource: 'cluster.example.org', remoteSite: 'TGCDB' });
    const demo = (await json(['demo', '--json'])) as { site: Record<string, unknown>; handler: unknown };
    expect(Object.keys(demo.site).sort()).toEqual(Object.keys(sim.site as object).sort());
    expect(demo.handler).toBe(sim.handler);
  }, 240_000);

  it('[14.10] packets list and show', async () => {
    const rows = (await json(['-c', config, 'packets', 'list', '--json'])) as Array<Record<string, unknown>>;
    expect(rows.length).toBeGreaterThan(0);
    expect(Object.keys(rows[0]!)).toEqual(
      expect.arrayContaining([
        'packetRecId',
        'transRecId',
        'transactionId',
        'direction',
        'type',
        'state',
        'errors',
        'lastReason',
      ]),
    );
    const shown = (await json(['-c', config, 'packets', 'show', String(rows[0]!.packetRecId), '--json'])) as {
      header: Record<string, unknown>;
    };
    expect(typeof shown.header.packetId).toBe('number');
    expect(typeof shown.header.transactionId).toBe('number');
  }, 60_000);

  it('[14.10] registry people, projects, accounts and show', async () => {
    const people = (await json(['-c', config, 'registry', 'people', '--json'])) as Array<{ personId: string }>;
    expect(people.length).toBeGreaterThan(0);
    const projects = (await json(['-c', config, 'registry', 'projects', '--json'])) as Array<{ projectId: string }>;
    await json(['-c', config, 'registry', 'accounts', '--json']);
    await json(['-c', config, 'registry', 'show', people[0]!.personId, '--json']);
    await json(['-c', config, 'registry', 'show', projects[0]!.projectId, '--json']);
  }, 60_000);

  it('[14.10] usage failed (refused and pending) and status; without --json nothing is JSON', async () => {
    const db = await openPglite({ path: join(dir, 'db') });
    await db.query(
      `INSERT INTO amie_toolkit.reported_jobs (cluster, job_id, submit_time, end_time, account, project_id, user_login, charge, charge_unit, sink, status, reason, record)
       VALUES ('c', '1', now(), now(), 'a', 'p', 'u', 1, 'SUs', 'usage-api', 'failed', 'refused', '{"LocalRecordID": "1"}'),
              ('c', '2', now(), now(), 'a', 'p', 'u', 1, 'SUs', 'usage-api', 'pending', null, '{"LocalRecordID": "2"}')`,
    );
    await db.close();
    const failed = (await json(['-c', config, 'usage', 'failed', '--json'])) as Array<{ jobId: string }>;
    expect(failed.map((r) => r.jobId)).toEqual(['1']);
    await json(['-c', config, 'usage', 'failed', '--pending', '--json']);
    await json(['-c', config, 'status', '--json']);
    for (const args of [['usage', 'failed'], ['packets', 'list'], ['registry', 'people'], ['status']]) {
      const r = await amie(['-c', config, ...args]);
      expect(r.stdout.trimStart(), `amie ${args.join(' ')}`).not.toMatch(/^[[{]/);
    }
  }, 60_000);

  it('[14.10] usage summary: camelCase JSON of the registry projects; without --json a table', async () => {
    const summary = (await json(['-c', config, 'usage', 'summary', '--json'])) as { projects: unknown[] };
    expect(summary.projects.length).toBeGreaterThan(0);
    const r = await amie(['-c', config, 'usage', 'summary']);
    expect(r.stdout.trimStart()).not.toMatch(/^[[{]/);
  }, 60_000);
});
