import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openPglite } from '../../src/db/index.js';
import { initialisedPgliteDir } from '../helpers/db.js';
import { SITE, racTags, seedIncoming } from '../helpers/amie.js';
import { amieInProcess } from '../helpers/cli.js';

const HANDLER = resolve('test/fixtures/handlers/account-handler.js');

const amie = (args: string[]) => amieInProcess(args, { env: { ...process.env } });

describe('amie process and amie packets on an embedded database', () => {
  let dir: string;
  let config: string;
  let answered: number;
  let invalid: number;
  let deferred: number;
  const writeConfig = (options: string) =>
    writeFileSync(
      config,
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\nhandler: { module: "${HANDLER}", options: ${options} }\nlog: { level: silent }\n`,
    );

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amie-packets-'));
    config = join(dir, 'amie.yaml');
    await initialisedPgliteDir(join(dir, 'db'));
    const db = await openPglite({ path: join(dir, 'db') });
    answered = (await seedIncoming(db, 'request_account_create', racTags(1))).packetRecId;
    const bad = racTags(2);
    delete bad.UserOrgCode;
    invalid = (await seedIncoming(db, 'request_account_create', bad)).packetRecId;
    await db.close();
    writeConfig('{}');
    const first = await amie(['-c', config, 'process']);
    // The invalid packet got a failure reply: exit 1, and the summary says so.
    expect(first.code, first.stderr).toBe(1);
    expect(first.stdout).toMatch(/2 packet\(s\): 1 answered, 1 failed \(1 invalid\)/);
    const db2 = await openPglite({ path: join(dir, 'db') });
    deferred = (await seedIncoming(db2, 'request_account_create', racTags(3))).packetRecId;
    await db2.close();
    writeConfig('{ deferAll: true }');
    const second = await amie(['-c', config, 'process']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/1 deferred/);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lists packets with filters, as a table and as JSON', async () => {
    const table = await amie(['-c', config, 'packets', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/packet_rec_id\s+trans_rec_id/);
    expect(table.stdout).toMatch(/notify_account_create/);
    const json = await amie(['-c', config, 'packets', 'list', '--direction', 'in', '--state', 'in-progress', '--json']);
    const rows = JSON.parse(json.stdout) as Array<{ packetRecId: number; type: string }>;
    expect(rows.map((r) => r.packetRecId)).toEqual([deferred]);
    const bad = await amie(['-c', config, 'packets', 'list', '--state', 'pending']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--state: expected one of completed, in-progress/);
  });

  it('shows a packet with its tags, its conversation and its audit', async () => {
    const shown = await amie(['-c', config, 'packets', 'show', String(invalid)]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/UserLastName: O'Neil/);
    expect(shown.stdout).toMatch(/inform_transaction_complete/);
    expect(shown.stdout).toMatch(/invalid: invalid request_account_create: UserOrgCode/);
    const json = JSON.parse((await amie(['-c', config, 'packets', 'show', String(answered), '--json'])).stdout);
    expect(json.header.state).toBe('completed');
    expect(json.conversation.map((p: { type: string }) => p.type)).toEqual([
      'request_account_create',
      'notify_account_create',
    ]);
    expect(json.audit[0].outcome).toBe('reply');
  });

  it('retries a deferred packet, and refuses one that was already answered', async () => {
    const refused = await amie(['-c', config, 'packets', 'retry', String(answered)]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/already answered by packet \d+ \(notify_account_create\)/);
    const ok = await amie(['-c', config, 'packets', 'retry', String(deferred)]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/will be offered to the handler on the next run/);
    writeConfig('{}');
    const again = await amie(['-c', config, 'process']);
    expect(again.stdout).toMatch(/1 packet\(s\): 1 answered/);
    const json = JSON.parse((await amie(['-c', config, 'packets', 'show', String(deferred), '--json'])).stdout);
    expect(json.audit.map((a: { outcome: string }) => a.outcome)).toEqual(['defer', 'retry', 'reply']);
  });

  it('--dry-run prints the replies and changes nothing', async () => {
    const db = await openPglite({ path: join(dir, 'db') });
    const pending = (await seedIncoming(db, 'request_account_create', racTags(4))).packetRecId;
    await db.close();
    const dry = await amie(['-c', config, 'process', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(
      new RegExp(`packet ${pending} request_account_create .*-> notify_account_create .*"UserPersonID":"u${pending}"`),
    );
    expect(dry.stdout).toMatch(/^\[dry run\] 1 packet/m);
    const list = JSON.parse(
      (await amie(['-c', config, 'packets', 'list', '--state', 'in-progress', '--direction', 'in', '--json'])).stdout,
    );
    expect(list.map((r: { packetRecId: number }) => r.packetRecId)).toEqual([pending]);
  });

  it('names a bad --type and a missing handler clearly (exit 2)', async () => {
    const bad = await amie(['-c', config, 'process', '--type', 'request_acount_create']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--type: unknown packet type "request_acount_create"/);
    writeFileSync(
      join(dir, 'nohandler.yaml'),
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\ndatabase: { path: ./db }\n`,
    );
    const none = await amie(['-c', join(dir, 'nohandler.yaml'), 'process']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/handler: required/);
  });
});
