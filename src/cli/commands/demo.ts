import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { EXIT, type CliContext } from '../context.js';

/** The demo's own site; no configuration is read. */
const DEMO_SITE = { name: 'DEMO', resource: 'cluster.demo.example.org', remoteSite: 'TGCDB' };

/**
 * The whole toolkit with nothing to set up: a throw-away embedded database (removed at the end,
 * so a second run starts as clean as the first), the registry handler, and the
 * simulated central site running every scenario, over the AMIE tables or (--source rest) over
 * the AMIE REST API served on loopback. With --keep DIR the database is kept in DIR/db, with a
 * configuration DIR/amie.yaml naming it, so every other command can look at what the demo did.
 */
export function register(program: Command, context: CliContext): void {
  program
    .command('demo')
    .description(
      'run every AMIE test scenario against the registry handler in a throw-away embedded database, and show the registry it built',
    )
    .option('--json', 'print the scenario reports and the registry as JSON')
    .option('--verbose', 'list every check, not only the failed ones')
    .option(
      '--source <kind>',
      'tables: central writes the AMIE tables; rest: the site talks to a simulated AMIE REST API on 127.0.0.1',
      'tables',
    )
    .option(
      '--keep <dir>',
      'keep the database in DIR/db and write DIR/amie.yaml for it, for other commands (e.g. amie -c DIR/amie.yaml report --html page.html); DIR must not hold either yet',
    )
    .action(async (opts: { json?: boolean; verbose?: boolean; source: string; keep?: string }) => {
      const { ConfigError } = await import('../../config/errors.js');
      if (opts.source !== 'tables' && opts.source !== 'rest') {
        throw new ConfigError([`--source: expected tables or rest, got "${opts.source}"`]);
      }
      const keep = opts.keep === undefined ? undefined : keptPaths(resolve(context.cwd, opts.keep));
      if (keep) {
        // Over REST the packets live on the simulated server, which ends with the demo: a kept
        // configuration would name a server that is gone.
        if (opts.source !== 'tables') throw new ConfigError(['--keep: only with --source tables']);
        for (const path of [keep.config, keep.database])
          if (existsSync(path)) throw new ConfigError([`--keep: ${path} already exists; give a new directory`]);
        await mkdir(keep.dir, { recursive: true });
      }
      // Said at once: the scenarios take seconds, and a silent terminal looks like a hang.
      if (!opts.json)
        context.out(
          `AMIE toolkit demo: a simulated central site (${DEMO_SITE.remoteSite}) sends packets to site ${DEMO_SITE.name}`,
        );
      const { openPglite } = await import('../../db/index.js');
      const { initDatabase } = await import('../../store/index.js');
      const { Dispatcher, loadHandlerClass } = await import('../../dispatch/index.js');
      const { SCENARIO_NAMES, runScenarios, formatScenarioReport, formatVerdict, textTable } =
        await import('../../simulator/index.js');
      const { listAccounts, listPeople, listProjects } = await import('../../registry/index.js');
      await import('../../../handlers/index.js');

      // The demo's own story is its output, problems included; log lines (the invalid packet is
      // logged as an error on purpose) would only bury it.
      const log = await context.logger(undefined, opts.verbose ? 'info' : 'fatal');
      const started = Date.now();
      // On disk (kept, or in a temporary directory) rather than in memory: half the demo's
      // memory, and nothing left behind unless --keep asks for it.
      const db = await openPglite(
        keep ? { path: keep.database, create: true, onWait: (message) => context.say(message) } : { temporary: true },
      );
      // Written with the database, so a demo that fails half-way still leaves a directory its config can open.
      if (keep) await writeFile(keep.config, keptConfig(keep), { mode: 0o644 });
      // Over REST, central keeps its own tables behind the HTTP simulator; the site's database
      // holds only its books (registry, audit, the REST source's copy of the packets).
      const { RestSimulator } = await import('../../simulator/http.js');
      const { restSourceFor } = await import('../../simulator/rest-site.js');
      const apiKey = randomBytes(18).toString('base64url');
      let sim: Awaited<ReturnType<typeof RestSimulator.start>> | undefined;
      try {
        if (opts.source === 'rest') sim = await RestSimulator.start({ site: DEMO_SITE, apiKey, log });
        await initDatabase(db);
        const loaded = await loadHandlerClass('registry', context.cwd);
        const handler = new loaded.cls({ db, log, site: DEMO_SITE, options: loaded.options, dryRun: false });
        const dispatcher = new Dispatcher(sim ? restSourceFor(sim, apiKey, db, log) : db, handler, log, {
          handlerName: loaded.name,
          maxErrorDeferrals: 1,
        });
        await handler.start();
        const reports = await runScenarios(sim?.db ?? db, dispatcher, SCENARIO_NAMES, {
          site: DEMO_SITE,
          maxRounds: 6,
        }).finally(() => handler.stop());
        const people = await listPeople(db, { includeMerged: true });
        const projects = await listProjects(db);
        const accounts = await listAccounts(db);
        const passed = reports.every((r) => r.passed);
        context.exitCode = passed ? EXIT.ok : EXIT.workFailed;

        if (opts.json) {
          context.out(
            JSON.stringify(
              {
                passed,
                handler: loaded.name,
                site: DEMO_SITE,
                source: opts.source,
                ...(keep ? { kept: { config: keep.config, database: keep.database } } : {}),
                scenarios: reports,
                registry: { people, projects, accounts },
              },
              null,
              2,
            ),
          );
          return;
        }
        if (sim) {
          context.out(`(resource ${DEMO_SITE.resource}) through the AMIE REST API it serves at ${sim.amieUrl};`);
          context.out(`the registry handler answers them, keeping its books in an ${db.description}.`);
        } else {
          context.out(`(resource ${DEMO_SITE.resource}); the registry handler answers them in an ${db.description}.`);
        }
        for (const r of reports) {
          context.out('');
          for (const line of formatScenarioReport(r, { verbose: opts.verbose })) context.out(line);
        }
        context.out('');
        context.out('The registry the handler built:');
        context.out('');
        context.out('people');
        for (const line of textTable(
          people.map((p) => ({
            PersonID: p.personId,
            login: p.login,
            uid: p.uid,
            name: [p.firstName, p.middleName, p.lastName].filter(Boolean).join(' '),
            organization: p.organization,
            DNs: p.dns.length,
            state: p.mergedInto ? `merged into ${p.mergedInto}` : 'active',
          })),
          ['PersonID', 'login', 'uid', 'name', 'organization', 'DNs', 'state'],
        ))
          context.out(line);
        context.out('');
        context.out('projects');
        for (const line of textTable(
          projects.map((p) => ({
            ProjectID: p.projectId,
            GrantNumber: p.grantNumber,
            PI: p.piPersonId,
            resource: p.resource,
            SUs: p.serviceUnits,
            dates: `${p.startDate ?? '?'} .. ${p.endDate ?? '?'}`,
            state: p.active ? 'active' : 'inactive',
          })),
          ['ProjectID', 'GrantNumber', 'PI', 'resource', 'SUs', 'dates', 'state'],
        ))
          context.out(line);
        context.out('');
        context.out('accounts');
        for (const line of textTable(
          accounts.map((a) => ({
            ProjectID: a.projectId,
            PersonID: a.personId,
            login: a.login,
            resource: a.resource,
            state: a.active ? 'active' : 'inactive',
          })),
          ['ProjectID', 'PersonID', 'login', 'resource', 'state'],
        ))
          context.out(line);
        context.out('');
        context.out(`${formatVerdict(reports)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        if (keep) {
          context.out('');
          context.out(`The database is kept in ${keep.database}, with a configuration for it: look at it with`);
          context.out(`  amie -c ${keep.config} report --html ${join(keep.dir, 'status.html')}`);
          context.out(`  amie -c ${keep.config} packets list`);
        }
      } finally {
        await sim?.stop();
        await db.close();
      }
    });
}

function keptPaths(dir: string) {
  return { dir, config: join(dir, 'amie.yaml'), database: join(dir, 'db') };
}

/** The demo's site as a configuration; the database path is relative to the file, as every path in it. */
function keptConfig(keep: ReturnType<typeof keptPaths>): string {
  return `# Written by \`amie demo --keep\`: the demo's site and its embedded database (db, beside this file).
#   amie -c ${keep.config} report --html status.html
site:
  name: ${DEMO_SITE.name}
  resource: ${DEMO_SITE.resource}
  remoteSite: ${DEMO_SITE.remoteSite}

database:
  path: db

handler: registry
`;
}
