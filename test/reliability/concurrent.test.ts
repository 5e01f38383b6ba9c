/**
 * Overlapping runs split the work and never answer a packet twice: four `amie process` runs with
 * the registry handler, each for a configuration of its own that answers the same resource,
 * start together on 1,000 pending transactions, a fifth joins when a third of the work is done,
 * and the conversations and the registry are checked as a whole.
 */
import { describe, it, expect } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDirs } from '../helpers/cli.js';
import { SITE } from '../helpers/amie.js';
import { databaseEachTest, driverCase } from '../helpers/db.js';
import { hasPostgres, pgSkipNote } from '../helpers/env.js';
import {
  buildWorkload,
  countCompleted,
  expectConsistentEnd,
  plainLines,
  runAmie,
  scenarioRng,
  seedWorkload,
  sleep,
  writeAmieConfig,
  type AmieRun,
} from '../helpers/reliability.js';

const TRANSACTIONS = 1000;
const PROJECTS_BEFORE = 40;

const answeredIn = (stdout: string) => Number(/(\d+) answered/.exec(stdout)?.[1] ?? NaN);

describe.skipIf(!hasPostgres())(`concurrent amie process runs${pgSkipNote}`, () => {
  const t = databaseEachTest(driverCase('pg'));
  const tempDir = tempDirs('amie-concurrent-');
  it(`four runs at once and a fifth started late answer each of ${TRANSACTIONS} transactions exactly once, registry consistent`, async () => {
    const rng = scenarioRng('concurrent runs');
    const dir = tempDir();
    // Projects the RACs name exist before the runs start, as they do at a site: central sends
    // a RAC only for a project it was told about. (RACs on projects created by RPCs of the
    // same backlog are the kill test's: one run at a time takes them in order, while
    // concurrent runs may answer a RAC before another run has committed its project.)
    // The people of these RPCs come back in the backlog, as PIs and as users.
    const items = buildWorkload(rng, {
      transactions: PROJECTS_BEFORE + TRANSACTIONS,
      setupRpcs: PROJECTS_BEFORE,
      rpcShare: 0.1,
      people: 250,
      racsOnNewProjects: false,
    });
    await seedWorkload(t.db, items.slice(0, PROJECTS_BEFORE));
    const setup = await runAmie(['-c', writeAmieConfig(dir, t.url!), 'process']).done;
    expect(setup.code, setup.stderr.slice(-2000)).toBe(0);
    await seedWorkload(t.db, items.slice(PROJECTS_BEFORE));

    // Each run has its own batch size, so their claims interleave unevenly, and its own scope
    // (one more resource), so that it works beside the others rather than leave the backlog to
    // the first (runs of one configuration do that: hostile-concurrency's [12.7]).
    const start = (n: number): AmieRun => {
      const own = join(dir, `run${n}`);
      mkdirSync(own);
      const config = writeAmieConfig(own, t.url!, {
        batchSize: rng.pick([10, 25, 50, 100]),
        resources: [SITE.resource, `other${n}.example.org`],
      });
      return runAmie(['-c', config, 'process']);
    };
    const runs = [1, 2, 3, 4].map(start);
    const ended = Promise.all(runs.map((r) => r.done));
    let allEnded = false;
    void ended.then(() => (allEnded = true));
    while (!allEnded && (await countCompleted(t.db)) < PROJECTS_BEFORE + TRANSACTIONS / 3) await sleep(10);
    const late = start(5);
    const results = [...(await ended), await late.done];

    for (const [i, r] of results.entries()) expect(r.code, `run ${i + 1}: ${plainLines(r.stderr).join(' | ')}`).toBe(0);
    const answered = results.map((r) => answeredIn(r.stdout));
    console.log(
      `[reliability] concurrent runs: packets answered per run ${answered.join(', ')} (the fifth started late)`,
    );
    expect(answered.reduce((a, b) => a + b, 0)).toBe(TRANSACTIONS);
    await expectConsistentEnd(t.db, items, rng);
  }, 180_000);
});
