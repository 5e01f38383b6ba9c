import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import { toolkitPackage } from '../../package-root.js';
import type { CliContext } from '../context.js';

/**
 * `amie init handler DIR`: a site handler as a package of its own, so it can import
 * `amie-toolkit` (a module lying loose beside the config cannot), with the TypeScript settings
 * that compile it for node and a test that plays the simulator's scenarios against it.
 */
export function register(program: Command, context: CliContext): void {
  const init = program
    .command('init')
    .description("create a starting point: init handler DIR makes a package for the site's own handler");
  init
    .command('handler <dir>')
    .description(
      'create DIR as a handler package: a RegistryHandler subclass with every hook stubbed, package.json, a tsconfig.json ' +
        'for node, and `npm test`, which builds it and plays every simulator scenario against it',
    )
    .option(
      '--toolkit <spec>',
      "what the package installs as amie-toolkit: a tarball, a directory or a version (default: this toolkit's own directory, as file:)",
    )
    .action((dir: string, opts: { toolkit?: string }) => {
      const target = resolve(context.cwd, dir);
      if (existsSync(target) && (!statSync(target).isDirectory() || readdirSync(target).length > 0)) {
        throw new ConfigError([`${target}: already exists and is not an empty directory; give a new directory`]);
      }
      const toolkit = toolkitDependency();
      const files = handlerPackage({
        name: packageName(basename(target)),
        toolkit: opts.toolkit === undefined ? `file:${toolkit.root}` : dependencySpec(opts.toolkit, context.cwd),
        zod: toolkit.zod,
      });
      for (const [file, text] of Object.entries(files)) {
        mkdirSync(dirname(join(target, file)), { recursive: true });
        writeFileSync(join(target, file), text, { flag: 'wx' });
      }
      context.out(`created ${target}: ${Object.keys(files).join(', ')}`);
      context.out(
        `next: cd ${dir} && npm install && npm test   (builds the handler and plays every simulator scenario against it)`,
      );
      context.out(`then point your configuration at it:  handler: ${join(target, 'dist', 'handler.js')}`);
    });
}

/** The toolkit running this command: its directory (what the new package depends on) and its zod range. */
function toolkitDependency(): { root: string; zod: string } {
  const pkg = toolkitPackage();
  return { root: pkg.root, zod: pkg.dependencies.zod ?? '^4' };
}

/** A path given on the command line is relative to where amie runs, not to the new package: make it absolute. */
function dependencySpec(spec: string, cwd: string): string {
  const path = spec.startsWith('file:') ? spec.slice('file:'.length) : spec;
  return /^[./]/.test(path) || existsSync(resolve(cwd, path)) ? `file:${resolve(cwd, path)}` : spec;
}

/** An npm package name from a directory name: lower case, letters, digits and dashes. */
function packageName(dir: string): string {
  const name = dir
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[._-]+|[-]+$/g, '');
  return name || 'site-handler';
}

/** MySite from my-site: the class name of the handler. */
function className(name: string): string {
  const words = name.split(/[^a-zA-Z0-9]+/).filter(Boolean);
  const pascal = words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  return /^[A-Za-z]/.test(pascal) ? `${pascal}Handler` : `Site${pascal}Handler`;
}

function handlerPackage(p: { name: string; toolkit: string; zod: string }): Record<string, string> {
  const json = (x: unknown) => `${JSON.stringify(x, null, 2)}\n`;
  return {
    'package.json': json({
      name: p.name,
      version: '0.1.0',
      private: true,
      description: "This site's AMIE handler: a RegistryHandler subclass that does the site work for each packet",
      type: 'module',
      main: 'dist/handler.js',
      scripts: {
        build: 'tsc -p tsconfig.json',
        // A fresh test database each time: the scenarios expect nobody else's packets in it.
        pretest: 'npm run build && node -e "fs.rmSync(\'test/db\', { recursive: true, force: true })"',
        test: 'amie -c test/amie.yaml db init && amie -c test/amie.yaml simulate --scenario all',
      },
      dependencies: { 'amie-toolkit': p.toolkit, zod: p.zod },
      devDependencies: { '@types/node': '^20.19.0', typescript: '~5.9' },
    }),
    // NodeNext: node runs ES modules, so imports need their .js extension and package exports are honoured.
    'tsconfig.json': json({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2023'],
        types: ['node'],
        strict: true,
        noImplicitOverride: true,
        skipLibCheck: true,
        sourceMap: true,
        outDir: 'dist',
        rootDir: 'src',
      },
      include: ['src/**/*.ts'],
    }),
    '.gitignore': 'node_modules/\ndist/\ntest/db/\n',
    'src/handler.ts': handlerSource(p.name),
    'test/amie.yaml': `# The configuration \`npm test\` plays the simulator's scenarios with: a throw-away embedded
# database in test/db (emptied before each run) and the built handler. Never point it at
# the site's real database: the simulator also answers any other pending packet it finds.
site:
  name: TESTSITE
  resource: cluster.test.example.org
database:
  path: ./db
handler:
  module: ../dist/handler.js
  # The handler's options, as the site's configuration will give them.
  options: {}
log:
  # The invalid_packet scenario logs one error on purpose.
  level: warn
`,
    'README.md': `# ${p.name}

This site's AMIE handler, made by \`amie init handler\`: \`src/handler.ts\` subclasses the
toolkit's registry handler, which answers every packet and keeps the books; the hooks it
calls are where the site creates logins, projects and accounts.

    npm install      # amie-toolkit, TypeScript
    npm run build    # src/handler.ts -> dist/handler.js
    npm test         # builds, then plays every simulator scenario against the handler

Point the site's configuration at the built module (a path relative to that file, or absolute):

    handler:
      module: /path/to/${p.name}/dist/handler.js
      options: {}

Run the site's \`amie\` from this package (\`npx amie\` here, or \`node_modules/.bin/amie\`) so the
handler and \`amie\` share one copy of the toolkit.
`,
  };
}

function handlerSource(name: string): string {
  return `/**
 * This site's AMIE handler. The registry handler it extends answers every packet a site
 * receives and keeps the books (people, logins, projects, accounts) in the toolkit's tables;
 * the hooks below are called once a packet's changes to the books are decided, in the same
 * database transaction, to do the site's own work.
 *
 * Rules for every hook:
 * - It must be idempotent: after a crash the packet is offered again and the hook runs again.
 * - A hook that throws rolls the packet's changes back; the packet is retried on the next run.
 *   Throw \`new PacketFailure('why')\` instead to answer the packet with a failure.
 * - Under \`amie process --dry-run\`, ctx.dryRun is true: change nothing outside the database.
 * - Use ctx.log (bound to the packet's ids) for what you do.
 */
import { z } from 'zod';
import {
  RegistryHandler,
  registryOptionsSchema,
  type AllocationChange,
  type PacketContext,
  type RegistryAccount,
  type RegistryLogin,
  type RegistryPerson,
  type RegistryProject,
} from 'amie-toolkit';

/** \`handler.options\` in the site's configuration: the registry's own (uidRange, reservedLogins, loginFromName) plus this site's. */
const optionsSchema = registryOptionsSchema.extend({
  /** An example option of the site's own. */
  homeRoot: z.string().startsWith('/').default('/home'),
});
type Options = z.input<typeof optionsSchema>;

export default class ${className(name)} extends RegistryHandler<Options> {
  /** The name in logs and the audit. */
  static override handlerName = ${JSON.stringify(name)};
  static override optionsSchema = optionsSchema;

  /** Called once before a run's first packet: check outside systems, open connections. */
  override async start(): Promise<void> {}

  /** Called once after a run. */
  override async stop(): Promise<void> {}

  /**
   * The Slurm account a new project's jobs run under, stored with the project; the usage
   * reporter maps jobs back to ProjectIDs through it. null: no Slurm account.
   */
  override slurmAccountFor(_project: Omit<RegistryProject, 'slurmAccount'>): string | null {
    return null;
  }

  /** A person new to the site got a login (and a uid from uidRange): create the Unix user. */
  override async createLogin(person: RegistryPerson, login: RegistryLogin, ctx: PacketContext): Promise<void> {
    ctx.log.info({ login: login.login, uid: login.uid, home: \`\${this.options.homeRoot ?? '/home'}/\${login.login}\`, personId: person.personId }, 'createLogin');
  }

  /** A project was created (its PI's account follows through addAccount): create its group or Slurm account. */
  override async createProject(project: RegistryProject, pi: RegistryPerson, ctx: PacketContext): Promise<void> {
    ctx.log.info({ projectId: project.projectId, pi: pi.personId }, 'createProject');
  }

  /** A new account (person x project x resource): give the login access to the project. */
  override async addAccount(account: RegistryAccount, _project: RegistryProject | null, ctx: PacketContext): Promise<void> {
    ctx.log.info({ login: account.login, projectId: account.projectId }, 'addAccount');
  }

  /** An account was inactivated (active false) or reactivated: block or unblock the login on the project. */
  override async setAccountActive(account: RegistryAccount, active: boolean, ctx: PacketContext): Promise<void> {
    ctx.log.info({ login: account.login, projectId: account.projectId, active }, 'setAccountActive');
  }

  /** A project was inactivated or reactivated (each account gets its own setAccountActive call). */
  override async setProjectActive(project: RegistryProject, active: boolean, ctx: PacketContext): Promise<void> {
    ctx.log.info({ projectId: project.projectId, active }, 'setProjectActive');
  }

  /** A project's allocation changed (every RPC, the creating one included): set its limits from change.after. */
  override async setAllocation(project: RegistryProject, change: AllocationChange, ctx: PacketContext): Promise<void> {
    ctx.log.info({ projectId: project.projectId, type: change.allocationType, units: change.after.serviceUnits }, 'setAllocation');
  }

  /** Grid DNs were added to or removed from a person: update the grid-mapfile or the like. */
  override async updateDns(person: RegistryPerson, change: { added: string[]; removed: string[] }, ctx: PacketContext): Promise<void> {
    ctx.log.info({ personId: person.personId, added: change.added.length, removed: change.removed.length }, 'updateDns');
  }

  /** A person's name, organization or contact details changed (request_user_modify). */
  override async updatePerson(person: RegistryPerson, ctx: PacketContext): Promise<void> {
    ctx.log.info({ personId: person.personId }, 'updatePerson');
  }

  /** \`deleted\` was merged into \`kept\`; \`accounts\` are the accounts kept took over: give kept's login access, block deleted's. */
  override async mergePeople(kept: RegistryPerson, deleted: RegistryPerson, accounts: RegistryAccount[], ctx: PacketContext): Promise<void> {
    ctx.log.info({ kept: kept.personId, deleted: deleted.personId, accounts: accounts.length }, 'mergePeople');
  }
}
`;
}
