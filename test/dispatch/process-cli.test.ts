import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { openPglite, type Database } from '../../src/db/index.js';
import { initDatabase } from '../../src/store/index.js';
import { driverCases, type TestDatabase } from '../helpers/db.js';
import { SITE, seedRacs } from '../helpers/amie.js';

const CLI = resolve('dist/src/cli/main.js');
const HANDLER = resolve('test/fixtures/handlers/account-handler.js');

function amie(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (res) => child.on('close', (code, signal) => res({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

/** Every RAC answered by exactly one NAC, and completed. */
async function expectExactlyOneReplyEach(db: Database, n: number) {
  const { rows } = await db.query<{ incoming_done: number; replies: number; max_per_trans: number; pending: number }>(
    `SELECT (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 1) AS incoming_done,
            (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 1) AS replies,
            (SELECT coalesce(max(c), 0)::int FROM (SELECT count(*) AS c FROM packet_tbl WHERE outgoing_flag = 1 GROUP BY trans_rec_id) x) AS max_per_trans,
            (SELECT count(*)::int FROM packet_tbl WHERE outgoing_flag = 0 AND state_id = 2) AS pending`,
  );
  expect(rows[0]).toEqual({ incoming_done: n, replies: n, max_per_trans: 1, pending: 0 });
}

describe.each(driverCases())('amie process as separate processes on $name', (driver) => {
  let dir: string;
  let t: TestDatabase | undefined;
  let config: string;
  let pglitePath: string | undefined;
  beforeEach(async () => {
    if (!driver.available) return;
    dir = mkdtempSync(join(tmpdir(), 'amie-process-'));
    config = join(dir, 'amie.yaml');
    if (driver.name === 'pg') {
      t = await driver.open();
    } else {
      pglitePath = join(dir, 'db');
    }
  });
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const writeConfig = (delayMs: number) =>
    writeFileSync(
      config,
      [
        `site: { name: ${SITE.name}, resource: ${SITE.resource} }`,
        driver.name === 'pg' ? `database: { url: "${t!.url}" }` : `database: { path: "${pglitePath}" }`,
        `handler: { module: "${HANDLER}", options: { delayMs: ${delayMs} } }`,
        'process: { batchSize: 10 }',
        'log: { level: warn }',
      ].join('\n'),
    );

  /** Seeds through a connection the test closes again: the embedded database admits one process at a time. */
  async function withDb<T>(fn: (db: Database) => Promise<T>): Promise<T> {
    if (t) return fn(t.db);
    const db = await openPglite({ path: pglitePath! });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }

  const run = it.skipIf(!driver.available);

  for (const parallel of [2, 4]) {
    run(`${parallel} runs at once answer every packet exactly once`, async () => {
      const n = driver.name === 'pg' ? 400 : 150;
      await withDb(async (db) => {
        await initDatabase(db);
        await seedRacs(db, n);
      });
      writeConfig(0);
      const runs = Array.from({ length: parallel }, () => amie(['-c', config, 'process']));
      const results = await Promise.all(runs.map((r) => r.done));
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      const answered = results.map((r) => Number(/(\d+) answered/.exec(r.stdout)?.[1] ?? NaN));
      expect(answered.reduce((a, b) => a + b, 0)).toBe(n);
      await withDb((db) => expectExactlyOneReplyEach(db, n));
    });
  }

  run('a run killed with SIGKILL in the middle, then rerun: nothing answered twice, nothing lost', async () => {
    const n = 200;
    await withDb(async (db) => {
      await initDatabase(db);
      await seedRacs(db, n);
    });
    // 200 packets at 25 ms each take five seconds after start-up: the kill lands mid-run.
    writeConfig(25);
    const first = amie(['-c', config, 'process']);
    await new Promise((r) => setTimeout(r, driver.name === 'pg' ? 1500 : 4000));
    first.child.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.signal).toBe('SIGKILL');
    const partial = await withDb(
      async (db) =>
        (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM packet_tbl WHERE outgoing_flag = 1')).rows[0]!.n,
    );
    expect(partial).toBeLessThan(n);
    writeConfig(0);
    const second = await amie(['-c', config, 'process']).done;
    expect(second.code, second.stderr).toBe(0);
    await withDb((db) => expectExactlyOneReplyEach(db, n));
  });
});
