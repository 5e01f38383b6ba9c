import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openPglite } from '../src/db/index.js';
import { SimData } from '../src/simulator/people.js';
import { SITE, seedIncoming } from './helpers/amie.js';
import { amieInProcess, tempDirs } from './helpers/cli.js';
import { initialisedPgliteDir } from './helpers/db.js';

// Trying the toolkit by hand: central queues requests and stops, the operator runs amie process.

const tempDir = tempDirs('amie-queue-');

/** Every packet and transaction with its state, and the number of tag rows: what "nothing changed" compares. */
async function snapshot(path: string) {
  const db = await openPglite({ path, create: false });
  try {
    const packets = await db.query(
      'SELECT packet_rec_id, trans_rec_id, packet_id::int, type_id::int, state_id::int, outgoing_flag::int FROM packet_tbl ORDER BY 1',
    );
    const transactions = await db.query('SELECT trans_rec_id, state_id::int FROM transaction_tbl ORDER BY 1');
    const data = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM data_tbl');
    return { packets: packets.rows, transactions: transactions.rows, dataRows: data.rows[0]!.n };
  } finally {
    await db.close();
  }
}

describe('amie simulate --queue-only', () => {
  it("[14.8] queues the scenarios' requests; process --dry-run changes nothing, process answers them, and central carries them to the end", async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'amie.yaml'),
      `site: { name: ${SITE.name}, resource: ${SITE.resource} }\nhandler: registry\nlog: { level: fatal }\n`,
    );
    const database = join(dir, '.amie', 'db');
    const amie = (...args: string[]) => amieInProcess(['-c', 'amie.yaml', ...args], { cwd: dir, trimmed: true });
    await initialisedPgliteDir(database);
    // A request that central really sent (no simulator mark): the simulator must never ship or answer its reply.
    const data = new SimData(SITE.resource, 'REAL');
    const real = await (async () => {
      const db = await openPglite({ path: database });
      try {
        return await seedIncoming(db, 'request_project_create', {
          ...data.rpc(data.person()),
          GrantNumber: 'TG-ABC123',
          RecordID: 'RX-2024-17',
        });
      } finally {
        await db.close();
      }
    })();

    const queued = await amie('simulate', '--queue-only', '--scenario', 'request_project_reactivate,invalid_packet');
    expect(queued.stderr).toBe('');
    expect(queued.code).toBe(0);
    const lines = queued.stdout.split('\n');
    expect(lines[0]).toMatch(
      /^queued request_project_create \(transaction \d+\), packet_rec_id \d+: the first request of request_project_reactivate$/,
    );
    expect(lines[1]).toMatch(
      /^queued request_project_create \(transaction \d+\), packet_rec_id \d+: the first request of invalid_packet$/,
    );
    expect(queued.stdout).toContain('amie process --dry-run');
    const before = await snapshot(database);
    expect(before.packets.filter((p) => p.state_id === 2 && p.outgoing_flag === 0)).toHaveLength(3);

    const dry = await amie('process', '--dry-run');
    expect(dry.stdout).toContain('reply -> notify_project_create');
    expect(dry.stdout).toContain('invalid -> inform_transaction_complete');
    expect(await snapshot(database)).toEqual(before);

    const run = await amie('process');
    expect(run.stdout).toMatch(/^3 packet\(s\): 2 answered, 1 failed \(1 invalid\)/);
    expect(run.code).toBe(1);

    // Central ships the site's replies: the NPC is answered with a DPC, the refusal ends its transaction.
    const second = await amie('simulate', '--queue-only');
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(
      /request_project_create \(transaction \d+\): central's data_project_create \(packet_rec_id \d+\) waits for the site/,
    );
    expect(second.stdout).toMatch(/request_project_create \(transaction \d+\): refused by the site, as it should be/);

    expect((await amie('process')).code).toBe(0);
    const third = await amie('simulate', '--queue-only');
    expect(third.code).toBe(0);
    expect(third.stdout.split('\n')).toEqual([
      expect.stringMatching(/^request_project_create \(transaction \d+\): completed$/),
    ]);
    const fourth = await amie('simulate', '--queue-only');
    expect(fourth.stdout).toMatch(/^central has no open conversation/);

    const after = await snapshot(database);
    const states = new Map(after.transactions.map((t) => [t.trans_rec_id, t.state_id]));
    // The simulator's two transactions ended (completed, failed); the real one is still open, its NPC unshipped.
    expect(
      [...states]
        .filter(([id]) => id !== real.transRecId)
        .map(([, s]) => s)
        .sort(),
    ).toEqual([1, 3]);
    expect(states.get(real.transRecId)).toBe(2);
    expect(
      after.packets.filter((p) => p.trans_rec_id === real.transRecId).map((p) => [p.outgoing_flag, p.state_id]),
    ).toEqual([
      [0, 1],
      [1, 2],
    ]);
  }, 300_000);

  it('[14.8] --queue-only refuses --serve-rest and --source rest in one line', async () => {
    const r = await amieInProcess(['simulate', '--queue-only', '--serve-rest'], { trimmed: true });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^amie: --queue-only: central writes the AMIE tables of the site database/);
  });
});
