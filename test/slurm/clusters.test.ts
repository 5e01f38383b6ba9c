/**
 * The Slurm handler with several resources (each a cluster of one Slurm database), and what its
 * dry runs say. Commands are recorded by a stand-in program, so no Slurm is needed: what is
 * checked is which cluster each command names, and that nothing runs and nothing is said to
 * have been done when commands are only logged.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { SlurmHandler, slurmOptionsSchema, type SlurmOptionsInput } from '../../handlers/slurm.js';
import type { SiteConfig } from '../../src/config/index.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { SimData } from '../../src/simulator/index.js';
import { SITE, outgoingPackets, quietLog, seedIncoming } from '../helpers/amie.js';
import { databaseEachTest, driverCase } from '../helpers/db.js';
import { tempDirs } from '../helpers/cli.js';
import { commandRecorder } from '../helpers/slurm.js';

const RES_A = 'cluster-a.example.org';
const RES_B = 'cluster-b.example.org';
const BOTH: SiteConfig = { name: SITE.name, resource: RES_A, resources: [RES_A, RES_B], remoteSite: SITE.remoteSite };

const tempDir = tempDirs('amie-clusters-');
const recorder = () => commandRecorder(tempDir());

describe('[14.4] the Slurm handler sends each resource’s work to its cluster', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('[14.4] clusters: {resource: cluster} puts each project’s account on its resource’s cluster', async () => {
    const rec = recorder();
    const options: SlurmOptionsInput = {
      clusters: { [RES_A]: 'clua', [RES_B.toUpperCase()]: 'club' },
      sacctmgr: rec.program,
      scancel: rec.program,
      createUser: [rec.program, 'make-user', '{login}'],
    };
    const handler = new SlurmHandler({ db: t.db, log: quietLog, site: BOTH, options, dryRun: false });
    for (const [resource, grant] of [
      [RES_A, 'TG-CLA'],
      [RES_B, 'TG-CLB'],
    ] as const) {
      const sim = new SimData(resource);
      await seedIncoming(
        t.db,
        'request_project_create',
        sim.rpc(sim.person(), { GrantNumber: grant, ProjectID: grant }),
      );
    }
    const summary = await new Dispatcher(t.db, handler, quietLog).runOnce();
    expect(summary.results.map((r) => r.outcome)).toEqual(['reply', 'reply']);

    const clustersOf = (account: string) =>
      new Set(
        rec
          .calls()
          .map((c) => c.argv)
          .filter((argv) => argv.some((a) => a === account || a === `name=${account}` || a === `account=${account}`))
          .flatMap((argv) => argv.filter((a) => a.startsWith('cluster='))),
      );
    expect(clustersOf('tg-cla')).toEqual(new Set(['cluster=clua']));
    expect(clustersOf('tg-clb')).toEqual(new Set(['cluster=club']));
  });

  it('[14.4] a resource of site.resources without a cluster, or cluster and clusters together, is a configuration error', () => {
    const make = (options: SlurmOptionsInput) =>
      new SlurmHandler({ db: t.db, log: quietLog, site: BOTH, options, dryRun: false });
    expect(() => make({ clusters: { [RES_A]: 'clua' } })).toThrow(
      `handler.options.clusters: no cluster for resource "${RES_B}" of site.resources`,
    );
    expect(() => make({ cluster: 'one', clusters: { [RES_A]: 'clua', [RES_B]: 'club' } })).toThrow(
      /either cluster .* or clusters .*, not both/,
    );
    const handler = make({ clusters: { [RES_A]: 'clua', [RES_B]: 'club' } });
    expect(handler.clusterFor(` ${RES_B.toUpperCase()}`)).toBe('club');
    expect(() => handler.clusterFor('elsewhere.example.org')).toThrow(
      'handler.options.clusters names no cluster for resource "elsewhere.example.org"',
    );
    // Without clusters, the one cluster (or none) serves every resource, as before.
    expect(make({ cluster: 'one' }).clusterFor(RES_B)).toBe('one');
  });
});

describe('[14.5] one meaning of dry run in the Slurm handler', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('[14.5] the old dryRun option is a configuration error naming commands: log-only', () => {
    for (const dryRun of [true, false]) {
      const r = slurmOptionsSchema.safeParse({ dryRun });
      expect(r.success).toBe(false);
      expect(r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
        expect.stringMatching(/^dryRun: was removed: .*commands: log-only.*amie process --dry-run/),
      ]);
    }
    expect(slurmOptionsSchema.parse({}).commands).toBe('run');
  });

  /** Handler messages that claim something was done. */
  const PAST =
    /\bcreated\b|: (added|updated|unchanged)\b|submissions blocked|GrpSubmitJobs lifted|: GrpTRESMins=|merged into|reactivated/;

  for (const how of ['commands: log-only', 'amie process --dry-run'] as const) {
    it(`[14.5] ${how}: nothing is run, and the logs say what would be done, never that it was`, async () => {
      const rec = recorder();
      const lines: Array<{ level: number; msg: string }> = [];
      const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
      const logOnly = how === 'commands: log-only';
      const handler = new SlurmHandler({
        db: t.db,
        log,
        site: SITE,
        options: {
          cluster: 'one',
          sacctmgr: rec.program,
          scancel: rec.program,
          createUser: [rec.program, 'make-user', '{login}'],
          commands: logOnly ? 'log-only' : 'run',
        },
        dryRun: !logOnly,
      });
      const sim = new SimData(SITE.resource);
      await seedIncoming(
        t.db,
        'request_project_create',
        sim.rpc(sim.person(), { GrantNumber: 'TG-DRY', ProjectID: 'TG-DRY' }),
      );
      const summary = await new Dispatcher(t.db, handler, log, { dryRun: !logOnly }).runOnce();
      expect(summary.results.map((r) => r.outcome)).toEqual(['reply']);

      expect(rec.calls()).toEqual([]);
      const said = lines.filter((l) => l.level === 30).map((l) => l.msg);
      const note = logOnly ? '(commands: log-only: nothing run)' : '(dry run: nothing run)';
      expect(said).toContain(`would add Slurm account tg-dry (or update it) ${note}`);
      expect(said).toContain(`would set GrpTRESMins=gres/gpu=3000000 on Slurm account tg-dry ${note}`);
      expect(said.some((m) => /^would create Unix user \S+ \(unless it exists\) /.test(m))).toBe(true);
      expect(said.some((m) => /^would add Slurm user \S+ to account tg-dry/.test(m))).toBe(true);
      expect(said.filter((m) => PAST.test(m) && !m.startsWith('would ') && !m.startsWith('dry run: would '))).toEqual(
        [],
      );

      // log-only answers the packet (the reply is real); a dry run records nothing.
      expect((await outgoingPackets(t.db)).map((p) => p.type_name)).toEqual(logOnly ? ['notify_project_create'] : []);
    });
  }
});
