import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/index.js';
import { type Database } from '../../src/db/index.js';
import { driverCases } from '../helpers/db.js';
import { SITE } from '../helpers/amie.js';
import { amieInProcess, cliSiteEachTest, runAmie } from '../helpers/cli.js';
import { FakeAmieRest, isPost, racBody, type Fault } from './fake-amie-rest.js';

const KEY_VAR = 'AMIE_TEST_REST_KEY';

const amieProcess = (args: string[], env: NodeJS.ProcessEnv) => runAmie(args, { AMIE_DATABASE_URL: '', ...env });
const amie = (args: string[], env: NodeJS.ProcessEnv) =>
  amieInProcess(args, { env: { ...process.env, AMIE_DATABASE_URL: '', ...env } });

function rpcBody(n: number) {
  return {
    AllocationType: 'new',
    GrantNumber: `TG-REST${n}`,
    RecordID: `REC-${n}`,
    StartDate: '2026-01-01',
    EndDate: '2026-12-31',
    ServiceUnitsAllocated: '50000',
    ResourceList: [SITE.resource],
    ProjectTitle: `Mixing in the St. Lawrence estuary (${n})`,
    PfosNumber: '1234567',
    PiFirstName: 'Zoë',
    PiLastName: "O'Neil-Smith",
    PiOrganization: 'Université de Montréal',
    PiOrgCode: '0012345',
    PiEmail: `zoe${n}@example.edu`,
    PiGlobalID: String(81000 + n),
    PiRequestedLoginList: [''],
    PiDnList: [`/C=CA/O=Example/CN=Zoe ${n}`],
    SitePersonId: [{ Site: 'X-PORTAL', PersonID: `zoneil${n}` }],
    AcademicDegree: [{ Degree: 'PhD', Field: 'Oceanography' }],
  };
}

describe('source configuration', () => {
  const base = `site: { name: ${SITE.name}, resource: ${SITE.resource} }\n`;
  it('defaults to the tables; rest needs url and apiKeyEnv; mistakes name the key', () => {
    expect(parseConfig(base, 'amie.yaml').source).toEqual({ kind: 'tables' });
    expect(
      parseConfig(
        `${base}source: { kind: rest, url: "https://amie.example.org/api/", apiKeyEnv: AMIE_API_KEY, retries: 2 }`,
        'amie.yaml',
      ).source,
    ).toEqual({
      kind: 'rest',
      url: 'https://amie.example.org/api/',
      apiKeyEnv: 'AMIE_API_KEY',
      retries: 2,
    });
    const problems = (text: string) => {
      try {
        parseConfig(`${base}${text}`, 'amie.yaml');
      } catch (err) {
        return (err as { problems: string[] }).problems.join('\n');
      }
      throw new Error('expected a configuration error');
    };
    expect(problems('source: { kind: rest, url: "ftp://x/", apiKeyEnv: "my secret key" }')).toMatch(
      /source\.url: expected the http\(s\) base URL of the AMIE REST API[\s\S]*source\.apiKeyEnv: expected the NAME of an environment variable/,
    );
    expect(problems('source: { kind: rest, url: "https://x/" }')).toMatch(/source\.apiKeyEnv/);
    expect(problems('source: { kind: soap }')).toMatch(/source\.kind/);
    expect(problems('source: { kind: tables, url: "https://x/" }')).toMatch(/source\.url: unknown key/);
  });
});

describe.each(driverCases())('amie process with source: rest, on $name', (driver) => {
  const s = cliSiteEachTest(driver, { prefix: 'amie-rest-', init: true });
  let api: FakeAmieRest;
  let config: string;
  beforeEach(async () => {
    if (!driver.available) return;
    api = await FakeAmieRest.start();
    config = s.site.writeConfig([
      'handler: registry',
      `source: { kind: rest, url: "${api.url}", apiKeyEnv: ${KEY_VAR}, timeoutMs: 2000, retries: 1 }`,
      'log: { level: info }',
    ]);
  });
  afterEach(async () => {
    if (driver.available) await api.close();
  });
  const run = it.skipIf(!driver.available);
  const withDb = <T>(fn: (db: Database) => Promise<T>) => s.site.withDb(fn);

  run('a missing API key variable stops before any work, naming it', async () => {
    const r = await amie(['-c', config, 'process'], { [KEY_VAR]: '' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`amie: source.apiKeyEnv: environment variable ${KEY_VAR} is not set`);
    expect(api.requests).toEqual([]);
  });

  run('a key the server refuses: exit 2, one line with the server message, the key nowhere', async () => {
    api.addIncoming('request_project_create', rpcBody(1));
    const r = await amie(['-c', config, 'process'], { [KEY_VAR]: 'stale-key-123' });
    expect(r.code).toBe(2);
    const mine = r.stderr.split('\n').filter((l) => l.startsWith('amie: '));
    expect(mine).toEqual([
      'amie: AMIE REST API refused GET packets/EXAMPLE: 401 Unauthorized: XA-SITE/XA-API-KEY not valid for site EXAMPLE',
    ]);
    expect(r.stderr + r.stdout).not.toContain('stale-key-123');
  });

  run(
    'killed after the server took its reply: the next run finds the reply there and does not POST again',
    async () => {
      const { packetRecId } = api.addIncoming('request_project_create', rpcBody(1));
      const env = { [KEY_VAR]: api.apiKey };
      // The server stores the NPC, then the process dies before it can record that it was sent.
      const first = amieProcess(['-c', config, 'process'], env);
      const kill: Fault = { match: isPost, act: (r, _res, a) => (a.route(r), first.child.kill('SIGKILL'), true) };
      api.faults.push(kill);
      const died = await first.done;
      expect(died.signal).toBe('SIGKILL');
      expect(api.repliesTo(packetRecId)).toHaveLength(1);
      expect(await withDb(async (db) => (await db.query(`SELECT status FROM amie_toolkit.rest_outbox`)).rows)).toEqual([
        { status: 'unsent' },
      ]);

      if (driver.name === 'pg') {
        // On a server, a fresh unsent reply may belong to a run still sending it: left alone...
        const soon = await amie(['-c', config, 'process'], env);
        expect(soon.code).toBe(0);
        expect(api.posts).toHaveLength(1);
        // ...until it is old enough to have been left by a run that died.
        await s.site.t!.db.query(`UPDATE amie_toolkit.rest_outbox SET created_at = now() - interval '5 minutes'`);
      }
      const next = await amie(['-c', config, 'process'], env);
      expect(next.code).toBe(0);
      expect(next.stdout).toMatch(/^0 packet\(s\)/);
      expect(next.stderr).toContain('the reply had already reached the server; marked sent without sending it again');
      expect(api.posts).toHaveLength(1);
      expect(api.repliesTo(packetRecId)).toHaveLength(1);
      const replyId = api.repliesTo(packetRecId)[0]!.header.packet_rec_id;
      await withDb(async (db) => {
        expect(
          (await db.query(`SELECT status, reply_packet_rec_id::int AS r FROM amie_toolkit.rest_outbox`)).rows,
        ).toEqual([{ status: 'sent', r: replyId }]);
        // The registry's books were committed with the reply: the project exists once.
        expect((await db.query(`SELECT count(*)::int AS n FROM amie_toolkit.projects`)).rows).toEqual([{ n: 1 }]);
      });
    },
  );

  run('the registry handler answers RPC and RAC over REST; --dry-run sends nothing', async () => {
    const rpc = api.addIncoming('request_project_create', rpcBody(2));
    const env = { [KEY_VAR]: api.apiKey };
    const dry = await amie(['-c', config, 'process', '--dry-run'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/packet \d+ request_project_create .*: reply -> notify_project_create/);
    expect(api.requests.filter((r) => r.method !== 'GET')).toEqual([]);
    const r = await amie(['-c', config, 'process'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^1 packet\(s\): 1 answered/);
    const [npc] = api.repliesTo(rpc.packetRecId);
    expect(npc).toMatchObject({
      type: 'notify_project_create',
      body: { GrantNumber: 'TG-REST2', ResourceList: [SITE.resource] },
    });
    const rac = api.addIncoming(
      'request_account_create',
      racBody(1, { GrantNumber: 'TG-REST2', ProjectID: npc!.body.ProjectID }),
    );
    const again = await amie(['-c', config, 'process'], env);
    expect(again.stdout).toMatch(/^1 packet\(s\): 1 answered/);
    expect(api.repliesTo(rac.packetRecId)[0]).toMatchObject({
      type: 'notify_account_create',
      body: { ProjectID: npc!.body.ProjectID },
    });
    expect(r.stderr + again.stderr).not.toContain(api.apiKey);
  });
});
