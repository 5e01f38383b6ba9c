import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openPglite, type Database } from '../src/db/index.js';
import { readStatusFigures } from '../src/store/index.js';
import { SITE, racTags, seedIncoming } from './helpers/amie.js';
import { amieInProcess } from './helpers/cli.js';
import { initialisedPgliteDir } from './helpers/db.js';

const HANDLER = resolve('test/fixtures/handlers/account-handler.js');

const amie = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  amieInProcess(args, { env: { ...process.env, AMIE_DATABASE_URL: '', ...env } });

describe('amie status, a monitoring check', () => {
  let dir: string;
  let config: string;
  const withDb = async <T>(fn: (db: Database) => Promise<T>): Promise<T> => {
    const db = await openPglite({ path: join(dir, 'db') });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  };
  const status = (...args: string[]) => amie(['-c', config, 'status', ...args]);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amie-status-'));
    config = join(dir, 'amie.yaml');
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\nhandler: { module: "${HANDLER}" }\nlog: { level: silent }\n`,
    );
    await initialisedPgliteDir(join(dir, 'db'));
    await withDb((db) => seedIncoming(db, 'request_account_create', racTags(1)));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('[14.7] warns while no amie process pass is recorded, and is OK after one, with perf data', async () => {
    const before = await status();
    expect(before.code, before.stderr).toBe(1);
    expect(before.stdout).toMatch(/^AMIE WARNING - .*no `amie process` pass recorded/);
    expect(before.stdout).toMatch(/oldest pending incoming packet|pending=1/);

    const pass = await amie(['-c', config, 'process']);
    expect(pass.code, pass.stderr).toBe(0);
    const after = await status();
    expect(after.code, after.stdout + after.stderr).toBe(0);
    const first = after.stdout.split('\n')[0]!;
    expect(first).toMatch(/^AMIE OK - no packet pending; last pass \d+s ago \| /);
    expect(first).toMatch(
      /pending=0;;;0 oldest_pending_age=U;7200;86400;0 .*last_pass_age=\d+s;7200;86400;0 run_in_progress=0;;;0;1/,
    );
  });

  it('[14.7] judges the oldest pending packet against --warn and --crit', async () => {
    const packetRecId = await withDb(async (db) => {
      const { packetRecId } = await seedIncoming(db, 'request_account_create', racTags(2));
      await db.query(`UPDATE packet_tbl SET ts = localtimestamp - interval '3 hours' WHERE packet_rec_id = $1`, [
        packetRecId,
      ]);
      return packetRecId;
    });
    const warn = await status();
    expect(warn.code).toBe(1);
    expect(warn.stdout).toMatch(/^AMIE WARNING - oldest pending incoming packet waits for 3h \(1 pending\)/);
    const relaxed = await status('--warn', '4h', '--crit', '1d');
    expect(relaxed.code, relaxed.stdout).toBe(0);
    expect(relaxed.stdout).toMatch(/^AMIE OK - 1 pending, oldest 3h/);
    const strict = await status('--warn', '90m', '--crit', '2h');
    expect(strict.code).toBe(2);
    expect(strict.stdout).toMatch(/^AMIE CRITICAL - oldest pending/);
    await withDb((db) =>
      db.query(`UPDATE packet_tbl SET ts = localtimestamp - interval '2 days' WHERE packet_rec_id = $1`, [packetRecId]),
    );
    const crit = await status();
    expect(crit.code).toBe(2);
    expect(crit.stdout).toMatch(/waits for 2d/);
    // Answered, it no longer counts.
    await amie(['-c', config, 'process']);
    expect((await status()).code).toBe(0);
  });

  it('[14.7] warns on error-deferred packets, failures, a stale pass, stuck outbox replies and usage records', async () => {
    await withDb(async (db) => {
      const { packetRecId } = await seedIncoming(db, 'request_account_create', racTags(3));
      await db.query(
        `INSERT INTO amie_toolkit.packet_errors (source, packet_rec_id, error_count, last_error) VALUES ('tables', $1, 2, 'boom')`,
        [packetRecId],
      );
      await db.query(
        `INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, duration_ms, handler)
         VALUES ('tables', 'r', 1, 1, 'request_account_create', 'fail', 'no such project', 1, 'x')`,
      );
      await db.query(
        `INSERT INTO amie_toolkit.reported_jobs (cluster, job_id, submit_time, end_time, account, project_id, user_login, charge, charge_unit, sink, status, reason)
         VALUES ('c', '1', now(), now(), 'a', 'p', 'u', 1, 'SUs', 'usage-api', 'failed', 'refused'),
                ('c', '2', now(), now(), 'a', 'p', 'u', 1, 'SUs', 'usage-api', 'pending', null)`,
      );
      await db.query(
        `UPDATE amie_toolkit.reported_jobs SET updated_at = now() - interval '5 hours' WHERE job_id = '2'`,
      );
      await db.query(
        `INSERT INTO amie_toolkit.rest_packets (packet_rec_id, trans_rec_id, type_id, packet, state) VALUES (3000000001, 3000000001, 1, '{}', 'completed')`,
      );
      await db.query(
        `INSERT INTO amie_toolkit.rest_outbox (in_reply_to, trans_rec_id, reply_type, packet, created_at) VALUES (3000000001, 3000000001, 'notify_account_create', '{}', now() - interval '3 hours')`,
      );
      await db.query(`UPDATE amie_toolkit.process_passes SET finished_at = now() - interval '30 hours'`);
    });
    const r = await status();
    expect(r.code).toBe(2);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^AMIE CRITICAL - last `amie process` pass ended 30h ago; .* \| /);
    expect(r.stdout).toMatch(/^WARNING: 1 packet\(s\) deferred by handler errors$/m);
    expect(r.stdout).toMatch(/^WARNING: 1 packet\(s\) answered with a failure in the last 24 h$/m);
    expect(r.stdout).toMatch(/^WARNING: 1 reply stuck in the REST outbox, oldest for 3h$/m);
    expect(r.stdout).toMatch(/^WARNING: 1 usage record\(s\) refused by the Usage API$/m);
    expect(r.stdout).toMatch(/^WARNING: 1 usage record\(s\) pending for over 2h$/m);

    const json = JSON.parse((await status('--json')).stdout);
    expect(json).toMatchObject({
      status: 'CRITICAL',
      exitCode: 2,
      thresholds: { warnSeconds: 7200, critSeconds: 86400 },
    });
    expect(json.figures).toMatchObject({
      source: 'tables',
      pending: 1,
      errorDeferred: 1,
      failedLastDay: 1,
      outboxUnsent: 1,
      usageFailed: 1,
      usagePending: 1,
    });
    expect(json.figures.packets).toContainEqual({ direction: 'in', state: 'in-progress', count: 1 });
  });

  it('[14.7] writes the figures for the node_exporter textfile collector atomically', async () => {
    const file = join(dir, 'prom', 'amie.prom');
    rmSync(join(dir, 'prom'), { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'prom'));
    const r = await status('--prometheus', file);
    expect(r.stdout).toMatch(/^AMIE CRITICAL/);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^# TYPE amie_packets gauge$/m);
    expect(text).toMatch(/^amie_packets\{direction="in",state="in-progress"\} 1$/m);
    expect(text).toMatch(/^amie_oldest_pending_packet_age_seconds \d+$/m);
    expect(text).toMatch(/^amie_last_pass_timestamp_seconds \d{10}$/m);
    expect(text).toMatch(/^amie_usage_records\{state="failed"\} 1$/m);
    expect(text).toMatch(/^amie_status 2$/m);
    expect(text).toMatch(/^amie_up 1$/m);
    expect(readdirSync(join(dir, 'prom'))).toEqual(['amie.prom']);
    // A directory that cannot be written: UNKNOWN, not a stale file believed.
    const bad = await status('--prometheus', join(dir, 'no-such-dir', 'amie.prom'));
    expect(bad.code).toBe(3);
    expect(bad.stdout).toMatch(/^AMIE UNKNOWN - cannot write .*no-such-dir/);
  });

  it('[14.7] is UNKNOWN (exit 3) when the configuration, the database or the options cannot be used', async () => {
    const noConfig = await amie(['-c', join(dir, 'missing.yaml'), 'status']);
    expect(noConfig.code).toBe(3);
    expect(noConfig.stdout).toMatch(/^AMIE UNKNOWN - cannot read configuration file/);
    const empty = join(dir, 'empty.yaml');
    mkdtempSync(join(dir, 'x'));
    writeFileSync(empty, `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./emptydb }\n`);
    const noTables = await amie(['-c', empty, 'status']);
    expect(noTables.code).toBe(3);
    expect(noTables.stdout).toMatch(/^AMIE UNKNOWN - .*run `amie db init`/);
    const badWarn = await status('--warn', '2 hours');
    expect(badWarn.code).toBe(3);
    expect(badWarn.stdout).toMatch(/^AMIE UNKNOWN - --warn: expected a duration like 90m, 2h or 1d/);
    const backwards = await status('--warn', '1d', '--crit', '2h');
    expect(backwards.code).toBe(3);
    const prom = join(dir, 'down.prom');
    await amie(['-c', join(dir, 'missing.yaml'), 'status', '--prometheus', prom]);
    expect(readFileSync(prom, 'utf8')).toMatch(/^amie_up 0$/m);
    expect(existsSync(prom)).toBe(true);
  });

  it('[14.7] reads every figure in one statement', async () => {
    await withDb(async (db) => {
      const before = db.roundTrips;
      const f = await readStatusFigures(db, { source: 'tables', usagePendingSeconds: 7200 });
      expect(db.roundTrips - before).toBe(1);
      expect(f.pending).toBe(1);
      const rest = await readStatusFigures(db, { source: 'rest', usagePendingSeconds: 7200 });
      expect(rest.packets).toContainEqual({ direction: 'out', state: 'unsent', count: 1 });
    });
  });

  it('[14.7] packets list shows error counts and last reasons, --stuck lists what passes left behind', async () => {
    const list = await amie(['-c', config, 'packets', 'list', '--direction', 'in']);
    expect(list.stdout).toMatch(/errors\s+last_reason/);
    const stuck = JSON.parse((await amie(['-c', config, 'packets', 'list', '--stuck', '--json'])).stdout) as Array<{
      packetRecId: number;
      errors: number;
    }>;
    expect(stuck).toHaveLength(1);
    expect(stuck[0]!.errors).toBe(2);
    const id = stuck[0]!.packetRecId;
    // A deferral with a long reason: `packets show` prints all of it.
    await withDb((db) =>
      db.query(
        `INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason, duration_ms, handler)
         SELECT 'tables', 'r2', packet_rec_id, trans_rec_id, 'request_account_create', 'error', $2, 1, 'x' FROM packet_tbl WHERE packet_rec_id = $1`,
        [id, `handler error (attempt 3 of 6): ${'the directory server did not answer; '.repeat(4)}end of reason`],
      ),
    );
    const shown = await amie(['-c', config, 'packets', 'show', String(id)]);
    expect(shown.stdout).toMatch(/error: handler error \(attempt 3 of 6\): .*end of reason$/m);
    expect(shown.stdout).toMatch(/^error_count\s+2$/m);
    const listed = await amie(['-c', config, 'packets', 'list', '--stuck']);
    expect(listed.stdout).toMatch(/\b2\s+handler error \(attempt 3 of 6\)/);
    const retried = await amie(['-c', config, 'packets', 'retry', String(id)]);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toMatch(/its error count \(2\) was reset to 0/);
    expect(JSON.parse((await amie(['-c', config, 'packets', 'list', '--stuck', '--json'])).stdout)).toEqual([]);
  });
});

describe('amie status and packets of another resource', () => {
  it('[14.4] warns when a packet this configuration leaves alone (another resource) waits longer than --warn', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amie-status-foreign-'));
    try {
      const config = join(dir, 'amie.yaml');
      writeFileSync(
        config,
        `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\nhandler: { module: "${HANDLER}" }\nlog: { level: silent }\n`,
      );
      await initialisedPgliteDir(join(dir, 'db'));
      const db = await openPglite({ path: join(dir, 'db') });
      try {
        const { packetRecId } = await seedIncoming(
          db,
          'request_account_create',
          racTags(1, { ResourceList: ['other.example.org'] }),
        );
        await db.query(`UPDATE packet_tbl SET ts = localtimestamp - interval '3 hours' WHERE packet_rec_id = $1`, [
          packetRecId,
        ]);
      } finally {
        await db.close();
      }
      const pass = await amie(['-c', config, 'process']);
      expect(pass.code, pass.stderr).toBe(0);
      const warn = await amie(['-c', config, 'status']);
      expect(warn.code, warn.stdout + warn.stderr).toBe(1);
      expect(warn.stdout).toMatch(/^AMIE WARNING - .*1 foreign packet\(s\) waiting/);
      expect(warn.stdout.split('\n')[0]).toMatch(/foreign_waiting=1/);
      // Younger than the warning age: not yet a problem.
      const relaxed = await amie(['-c', config, 'status', '--warn', '4h', '--crit', '1d']);
      expect(relaxed.code, relaxed.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
