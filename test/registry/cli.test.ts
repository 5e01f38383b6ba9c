import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { createContext } from '../../src/cli/context.js';
import { register } from '../../src/cli/commands/registry.js';
import { openPglite } from '../../src/db/index.js';
import { Dispatcher } from '../../src/dispatch/index.js';
import { RegistryHandler } from '../../handlers/registry.js';
import { SITE, initTestDatabase, quietLog, rpcTags, seedIncoming } from '../helpers/amie.js';

let dir: string;
let configFile: string;

/** Runs `amie -c CONFIG registry ARGS…` in-process and returns what it printed. */
async function amieRegistry(args: string[]): Promise<{ lines: string[]; error?: unknown }> {
  const lines: string[] = [];
  const program = buildProgram();
  const context = createContext(program, { stdout: (t) => lines.push(t.replace(/\n$/, '')), env: {}, cwd: dir });
  register(program, context);
  try {
    await program.parseAsync(['node', 'amie', '-c', configFile, 'registry', ...args]);
    return { lines };
  } catch (error) {
    return { lines, error };
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'amie-registry-cli-'));
  configFile = join(dir, 'amie.yaml');
  writeFileSync(
    configFile,
    `site:\n  name: ${SITE.name}\n  resource: ${SITE.resource}\ndatabase:\n  path: ./db\nhandler: registry\n`,
  );
  const db = await openPglite({ path: join(dir, 'db') });
  try {
    await initTestDatabase(db);
    const handler = new RegistryHandler({ db, log: quietLog, site: SITE, options: {}, dryRun: false });
    await seedIncoming(db, 'request_project_create', rpcTags({ PiDnList: ['/CN=Jane Doe'] }));
    await new Dispatcher(db, handler, quietLog).runOnce();
    await seedIncoming(db, 'request_account_create', {
      GrantNumber: 'TG-ABC123',
      ResourceList: [SITE.resource],
      UserFirstName: 'Ann',
      UserLastName: 'Lee',
      UserOrganization: 'Example University',
      UserOrgCode: '0012345',
    });
    await new Dispatcher(db, handler, quietLog).runOnce();
    await seedIncoming(db, 'request_account_inactivate', {
      PersonID: 'alee',
      ProjectID: 'TG-ABC123',
      ResourceList: [SITE.resource],
    });
    await new Dispatcher(db, handler, quietLog).runOnce();
  } finally {
    await db.close();
  }
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('amie registry', () => {
  it('people: an aligned table with PersonID and login', async () => {
    const { lines, error } = await amieRegistry(['people']);
    expect(error).toBeUndefined();
    expect(lines[0]).toMatch(/^PersonID\s+login\s+uid\s+name/);
    expect(lines.some((l) => /^jdoe\s+jdoe\s+100000\s+Jane Doe/.test(l))).toBe(true);
    expect(lines.some((l) => /^alee\s+alee\s+100001\s+Ann Lee/.test(l))).toBe(true);
  });

  it("accounts --json answers: is Ann's account on TG-ABC123 active?", async () => {
    const { lines } = await amieRegistry(['accounts', '--project', 'TG-ABC123', '--json']);
    const accounts = JSON.parse(lines.join('\n')) as Array<{ login: string; active: boolean }>;
    expect(accounts.map((a) => [a.login, a.active])).toEqual([
      ['alee', false],
      ['jdoe', true],
    ]);
  });

  it('projects lists the allocation and state', async () => {
    const { lines } = await amieRegistry(['projects']);
    expect(lines.some((l) => /^TG-ABC123\s+TG-ABC123\s+jdoe\s+active\s+50000\s+2026-07-01\s+2027-06-30/.test(l))).toBe(
      true,
    );
  });

  it('show finds a person by login and a project by GrantNumber', async () => {
    const person = await amieRegistry(['show', 'alee']);
    expect(person.lines).toContain('PersonID       alee');
    expect(person.lines.some((l) => /TG-ABC123.*inactive/.test(l))).toBe(true);
    const project = await amieRegistry(['show', 'TG-ABC123', '--json']);
    const shown = JSON.parse(project.lines.join('\n')) as {
      project: { piPersonId: string; allocations: Array<{ allocationType: string }> };
    };
    expect(shown.project.piPersonId).toBe('jdoe');
    expect(shown.project.allocations.map((a) => a.allocationType)).toEqual(['new']);
  });

  it('show of an unknown key says what was tried', async () => {
    const { error } = await amieRegistry(['show', 'nobody']);
    expect(String((error as Error).message)).toContain('nothing in the registry is called "nobody"');
  });
});
