import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import type { Database } from '../../db/index.js';
import type { listAccounts } from '../../registry/index.js';
import { escapeControls } from '../../text.js';
import { formatTable } from '../table.js';
import type { CliContext } from '../context.js';

/**
 * `amie registry`: what the registry handler knows, so an operator can answer "what is jdoe's
 * PersonID, and is her account on TG-ABC123 active?" without SQL.
 */
export function register(program: Command, context: CliContext): void {
  const registry = program.command('registry').description('people, projects and accounts the registry handler keeps');

  // The registry's queries are loaded with the database, only when a subcommand runs.
  type Registry = typeof import('../../registry/index.js');
  const withRegistry = <T>(fn: (db: Database, registry: Registry) => Promise<T>) =>
    context.withDatabase(async (db) => {
      const { prepareDatabase } = await import('../../store/index.js');
      await prepareDatabase(db);
      return fn(db, await import('../../registry/index.js'));
    });
  const print = (json: boolean | undefined, value: unknown, rows: ReadonlyArray<Record<string, unknown>>) => {
    if (json) context.out(JSON.stringify(value, null, 2));
    else for (const line of formatTable(rows)) context.out(line);
  };

  registry
    .command('people')
    .description('people with their PersonID, login, uid and GlobalID')
    .option('--merged', 'also list people merged into another')
    .option('--json', 'JSON for scripts')
    .action((opts: { json?: boolean; merged?: boolean }) =>
      withRegistry(async (db, { listPeople }) => {
        const people = await listPeople(db, { includeMerged: opts.merged ?? false });
        print(
          opts.json,
          people,
          people.map((p) => ({
            PersonID: p.personId,
            login: p.login,
            uid: p.uid,
            name: [p.firstName, p.middleName, p.lastName].filter(Boolean).join(' '),
            organization: p.organization,
            GlobalID: p.globalId,
            DNs: p.dns.length,
            ...(opts.merged ? { merged_into: p.mergedInto } : {}),
          })),
        );
      }),
    );

  registry
    .command('projects')
    .description('projects with their grant, PI, allocation and state')
    .option('--json', 'JSON for scripts')
    .action((opts: { json?: boolean }) =>
      withRegistry(async (db, { listProjects }) => {
        const projects = await listProjects(db);
        print(
          opts.json,
          projects,
          projects.map((p) => ({
            ProjectID: p.projectId,
            GrantNumber: p.grantNumber,
            PI: p.piLogin ?? p.piPersonId,
            state: p.active ? 'active' : 'inactive',
            SUs: p.serviceUnits,
            start: p.startDate,
            end: p.endDate,
            resource: p.resource,
            title: p.title,
          })),
        );
      }),
    );

  registry
    .command('accounts')
    .description('accounts (person × project × resource) and whether they are active')
    .option('--person <PersonID>', "only this person's accounts")
    .option('--project <ProjectID>', "only this project's accounts")
    .option('--json', 'JSON for scripts')
    .action((opts: { json?: boolean; person?: string; project?: string }) =>
      withRegistry(async (db, { listAccounts }) => {
        const accounts = await listAccounts(db, { personId: opts.person, projectId: opts.project });
        print(opts.json, accounts, accounts.map(accountRow));
      }),
    );

  registry
    .command('show <key>')
    .description('one person (by PersonID, merged PersonID or login) or one project (by ProjectID or GrantNumber)')
    .option('--json', 'JSON for scripts')
    .action((key: string, opts: { json?: boolean }) =>
      withRegistry(async (db, { allocationHistory, findRegistryKey, listAccounts, listPeople, listProjects }) => {
        const found = await findRegistryKey(db, key);
        if (!found.personId && !found.projectId) {
          throw new ConfigError([
            `registry show: nothing in the registry is called "${key}" (tried PersonID, login, ProjectID and GrantNumber)`,
          ]);
        }
        const shown: Record<string, unknown> = {};
        if (found.personId) {
          const person = (await listPeople(db, { includeMerged: true })).find((p) => p.personId === found.personId)!;
          shown.person = {
            ...person,
            accounts: await listAccounts(db, { personId: person.mergedInto ?? person.personId }),
          };
        }
        if (found.projectId) {
          const project = (await listProjects(db)).find((p) => p.projectId === found.projectId)!;
          shown.project = {
            ...project,
            accounts: await listAccounts(db, { projectId: project.projectId }),
            allocations: await allocationHistory(db, project.projectId),
          };
        }
        if (opts.json) {
          context.out(JSON.stringify(shown, null, 2));
          return;
        }
        // One line per field: a line break in a value is shown escaped, not allowed to forge a field.
        const field = (k: string, v: unknown) =>
          context.out(
            escapeControls(
              `${k.padEnd(14)} ${v === null || v === undefined ? '' : Array.isArray(v) ? v.join(', ') : String(v)}`,
            ),
          );
        if (shown.person) {
          const p = shown.person as Awaited<ReturnType<typeof listPeople>>[number] & {
            accounts: Awaited<ReturnType<typeof listAccounts>>;
          };
          field('PersonID', p.personId);
          if (p.mergedInto) field('merged into', p.mergedInto);
          field('login', p.login);
          field('uid', p.uid);
          field('name', [p.firstName, p.middleName, p.lastName].filter(Boolean).join(' '));
          field('email', p.email);
          field('organization', p.orgCode ? `${p.organization ?? ''} (${p.orgCode})` : p.organization);
          field('GlobalID', p.globalId);
          if (p.aliases.length > 0) field('aliases', p.aliases);
          for (const [k, v] of Object.entries(p.details)) field(k, v);
          context.out('DNs:');
          for (const dn of p.dns) context.out(`  ${escapeControls(dn)}`);
          context.out('accounts:');
          for (const line of formatTable(p.accounts.map(accountRow))) context.out(`  ${line}`);
        }
        if (shown.person && shown.project) context.out('');
        if (shown.project) {
          const p = shown.project as Awaited<ReturnType<typeof listProjects>>[number] & {
            accounts: Awaited<ReturnType<typeof listAccounts>>;
            allocations: Awaited<ReturnType<typeof allocationHistory>>;
          };
          field('ProjectID', p.projectId);
          field('GrantNumber', p.grantNumber);
          field('title', p.title);
          field('PI', p.piLogin ? `${p.piPersonId} (login ${p.piLogin})` : p.piPersonId);
          field('state', p.active ? 'active' : 'inactive');
          field('resource', p.resource);
          field('SUs', p.serviceUnits);
          field('period', `${p.startDate ?? '?'} to ${p.endDate ?? '?'}`);
          context.out('accounts:');
          for (const line of formatTable(p.accounts.map(accountRow))) context.out(`  ${line}`);
          context.out('allocation history:');
          for (const line of formatTable(p.allocations)) context.out(`  ${line}`);
        }
      }),
    );
}

function accountRow(a: Awaited<ReturnType<typeof listAccounts>>[number]): Record<string, unknown> {
  return {
    PersonID: a.personId,
    login: a.login,
    ProjectID: a.projectId,
    GrantNumber: a.grantNumber,
    resource: a.resource,
    state: a.active ? 'active' : 'inactive',
  };
}
