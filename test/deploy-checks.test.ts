import { describe, it, expect } from 'vitest';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/index.js';
import { openPglite } from '../src/db/index.js';
import { AmieHandler, Dispatcher, defer, formatSummary, type IncomingPacket } from '../src/dispatch/index.js';
import { SlackConfigSchema, SlackNotifier } from '../src/notify/index.js';
import { SITE, initTestDatabase, quietLog, racTags, seedIncoming } from './helpers/amie.js';

const MINIMAL = `site: { name: ${SITE.name}, resource: ${SITE.resource} }\n`;

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'config/amie.yaml', env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

describe('[14.11] configuration checks a site meets at deployment', () => {
  it('[14.11] AMIE_DATABASE_URL is held to the rules of database.url, without echoing it', () => {
    expect(problemsOf(MINIMAL, { AMIE_DATABASE_URL: 'mysql://amie:s3cret@db.example.org/amie' })).toEqual([
      'AMIE_DATABASE_URL (environment): expected a PostgreSQL URL: postgres://user@host:port/dbname',
    ]);
    expect(problemsOf(MINIMAL, { AMIE_DATABASE_URL: 'postgres://amie:s3cret@[db/amie' })).toEqual([
      'AMIE_DATABASE_URL (environment): not a valid URL: expected postgres://user@host:port/dbname',
    ]);
    // The same text in the file gets the same verdict.
    expect(problemsOf(`${MINIMAL}database: { url: "mysql://amie@db.example.org/amie" }\n`)).toEqual([
      'config/amie.yaml: database.url: expected a PostgreSQL URL: postgres://user@host:port/dbname',
    ]);
    expect(problemsOf(MINIMAL, { AMIE_DATABASE_URL: 'postgresql://amie:s3cret@db.example.org:5432/amie' })).toEqual([]);
  });

  it('[14.11] a Slack placeholder must be a template field or a tag some packet type has, with the closest name offered', () => {
    const slack = (templates: string) =>
      `${MINIMAL}notify:\n  slack:\n    channel: "#amie"\n    templates:\n${templates}`;
    expect(problemsOf(slack('      packet: "{ProjectIdd} {ResourceList}"\n'))).toEqual([
      expect.stringMatching(
        /^config\/amie\.yaml: notify\.slack\.templates\.packet: unknown placeholder \{ProjectIdd\} \(did you mean \{ProjectID\}\?\)/,
      ),
    ]);
    expect(problemsOf(slack('      deferral: "{Nonsense}"\n'))).toEqual([
      expect.stringMatching(/templates\.deferral: unknown placeholder \{Nonsense\}: expected one of/),
    ]);
    expect(problemsOf(slack('      failure: "{type} {GrantNumber} {UserLastName} {ResourceList}"\n'))).toEqual([]);
  });

  it('[14.11] Slack says "handler error" once, fills any tag of the packet, and counts deferrals as the CLI does', async () => {
    const db = await openPglite();
    try {
      await initTestDatabase(db);
      await seedIncoming(db, 'request_account_create', racTags(1, { UserLastName: 'Boom' }));
      await seedIncoming(db, 'request_account_create', racTags(2, { UserLastName: 'Later' }));
      const Handler = class extends AmieHandler {
        override async request_account_create(p: IncomingPacket<'request_account_create'>) {
          if (p.tags.UserLastName === 'Boom') throw new Error('the directory server did not answer');
          return defer('waiting for an operator') as never;
        }
      };
      const handler = new Handler({ db, log: quietLog, site: SITE, options: {}, dryRun: false });
      const summary = await new Dispatcher(db, handler, quietLog).runOnce();
      const config = SlackConfigSchema.parse({
        channel: '#amie',
        summary: 'always',
        templates: { deferral: '{result} [{ResourceList}]' },
      });
      const texts = new SlackNotifier({ token: 'xoxb-test', config, site: SITE.name, log: quietLog }).messagesFor(
        summary,
      );
      const error = texts.find((t) => t.includes('directory server'))!;
      expect(error).toMatch(
        /: deferred, offered again next run: handler error \(attempt 1 of 6\): the directory server did not answer$/,
      );
      expect(error.match(/handler error/g)).toHaveLength(1);
      // The resource's dots are Slack-inert look-alikes, as for all packet text.
      expect(texts).toContain(
        `deferred, offered again next run: waiting for an operator [${SITE.resource.replace(/\./g, '\u2024')}]`,
      );
      expect(formatSummary(summary)).toMatch(/2 deferred \(1 by errors\)/);
      expect(texts.at(-1)).toMatch(/2 deferred \(1 by handler errors\)/);
    } finally {
      await db.close();
    }
  });
});
