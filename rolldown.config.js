/**
 * The JavaScript a site runs, bundled from tsc's output (dist/src, dist/handlers) into dist/bundle:
 * the `amie` command, the library (`amie-toolkit`) and the built-in handlers
 * (`amie-toolkit/handlers/*`), as one module graph.
 *
 * Why: cron and monitoring start `amie` every few minutes, and most of a start-up went to
 * Node's module loader reading, resolving and compiling files one by one (zod alone is about a
 * hundred, pg and pino fifty more). Bundled, a command loads a few files. zod, yaml, commander,
 * pg and pino are bundled in (they are on the path of the commands cron and monitoring run); the
 * rest of the dependencies (PGlite, Slack, execa, vega) stay in node_modules and are loaded only
 * by the commands that use them. Each command module stays an entry of its own (`amie` loads
 * only the named one) and dynamic imports stay split, except that the modules the commands cron
 * and monitoring run load together share a chunk (CHUNK_GROUPS below). What the bundled packages
 * load but the toolkit never uses is left out (STAND_INS below).
 *
 * One graph for all entries matters: a site handler imports `amie-toolkit` and the CLI loads
 * that handler, so both must see the same classes (a PacketFailure thrown by the handler is an
 * instance of the class the dispatcher checks). Not minified: a stack trace from `--debug` keeps
 * the toolkit's function names (minifying measured no faster). But written in ASCII without the
 * doc comments: V8 keeps a file with a single character beyond ASCII as two-byte text, twice the
 * memory and slower to scan, and the comments were a fifth of what every start-up read (5% off
 * the start-up of `status` and `process`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { defineConfig } from 'rolldown';

const BUNDLED = ['zod', 'yaml', 'commander', 'pg', 'pino'];
const { dependencies } = JSON.parse(readFileSync('package.json', 'utf8'));
const outside = Object.keys(dependencies).filter((d) => !BUNDLED.includes(d));

/**
 * yaml's ES module build: the same code as its CommonJS build (both are made from one source), but
 * modules the bundle can load without CommonJS wrappers. Every command reads the configuration.
 */
const YAML_ESM = join(dirname(createRequire(import.meta.url).resolve('yaml/package.json')), 'browser/dist/index.js');

/**
 * Modules the bundled packages require at load time but the toolkit never uses, replaced (for
 * those packages only) by stand-ins that load nothing: each Node module loaded costs every
 * start-up a few milliseconds.
 */
const STAND_INS = [
  {
    // pino's transports run in worker threads from files a bundle does not have; the toolkit logs
    // through a destination, never a transport, so pino/lib/transport.js and thread-stream stay out.
    within: '/node_modules/pino/',
    sources: ['./transport', './lib/transport'],
    code: 'module.exports = function transport() { throw new Error("pino transports are not bundled with amie-toolkit"); };',
  },
  {
    // pino asks whether it runs on the main thread only for a destination written asynchronously;
    // the toolkit writes its log synchronously (createLogger), and always from the main thread.
    within: '/node_modules/pino/',
    sources: ['worker_threads'],
    code: 'module.exports = { isMainThread: true };',
  },
  {
    // sonic-boom asserts only while closing a destination: node:assert is loaded then.
    within: '/node_modules/sonic-boom/',
    sources: ['assert'],
    code: 'module.exports = function assert(...args) { return require("node:assert")(...args); };',
  },
  {
    // commander spawns a process only for executable subcommands, which amie has none of.
    within: '/node_modules/commander/',
    sources: ['node:child_process'],
    code: 'module.exports = { spawn: (...args) => require("node:child_process").spawn(...args) };',
  },
];

/** The stand-in for `source` required by `importer`, by its index in STAND_INS; -1 for none. */
function standIn(source, importer) {
  const from = importer?.replaceAll('\\', '/') ?? '';
  return STAND_INS.findIndex((s) => from.includes(s.within) && s.sources.includes(source));
}

const startupTrims = {
  name: 'startup-trims',
  resolveId(source, importer) {
    if (source === 'yaml') return YAML_ESM;
    const i = standIn(source, importer);
    return i < 0 ? null : `\0stand-in-${i}`;
  },
  load(id) {
    const i = id.startsWith('\0stand-in-') ? Number(id.slice('\0stand-in-'.length)) : -1;
    return i < 0 ? null : STAND_INS[i].code;
  },
};

/**
 * Chunks by what commands load together. Left to itself the bundler makes a chunk for every set
 * of entries that shares modules: dozens of small files, and Node's loader spends about half a
 * millisecond on each file it opens, resolves and links. The toolkit's modules are grouped instead:
 * - `cli`: what `amie` itself and its command definitions import, for every command, `--help` included;
 * - `database`: what every command that reads the configuration and opens the database loads
 *   (the configuration's schema with zod and yaml, the store's queries behind `amie status`);
 * - `process`: what `amie process` adds (the dispatcher, the registry's books and handler, the
 *   AMIE tables' packet store).
 * Modules outside these lists (the simulator, usage reporting, Slack, the REST source, Slurm, ...)
 * are left where the bundler puts them: only the commands that use them load them.
 */
const CHUNK_GROUPS = {
  cli: [
    'src/config/errors',
    'src/config/nearest',
    'src/db/errors',
    'src/package-root',
    'src/text',
    'src/cli/context',
    'src/cli/conventions',
    'src/protocol/ids',
    'src/usage/sinks/types',
  ],
  database: [
    'node_modules/zod/',
    'node_modules/yaml/',
    'src/config/',
    'src/http',
    'src/notify/config',
    'src/notify/templates',
    'src/usage/config',
    'src/usage/charge',
    'src/protocol/spec',
    'src/db/index',
    'src/store/migration.',
    'src/store/status',
    'src/store/work',
    'src/store/run-lock',
  ],
  process: [
    'src/dispatch/',
    'src/protocol/', // the rest of it: ids and spec are above
    'src/registry/',
    'src/sources/tables',
    'src/store/',
    'src/cli/handler',
    'handlers/index',
    'handlers/registry',
  ],
};

/** The group a module's chunk is, by the first list naming it; null: the bundler decides. */
function chunkGroup(id) {
  const path = id.replaceAll('\\', '/');
  for (const [group, prefixes] of Object.entries(CHUNK_GROUPS)) {
    if (
      prefixes.some((p) => path.includes(`/dist/${p}`) || (p.startsWith('node_modules/') && path.includes(`/${p}`)))
    ) {
      return group;
    }
  }
  return null;
}

/** Every compiled module of a directory, by its name in the bundle. */
function entries(dir, as) {
  return Object.fromEntries(
    readdirSync(dir)
      .filter((f) => f.endsWith('.js'))
      .map((f) => [`${as}/${f.slice(0, -'.js'.length)}`, `${dir}/${f}`]),
  );
}

export default defineConfig({
  input: {
    index: 'dist/src/index.js',
    'cli/main': 'dist/src/cli/main.js',
    ...entries('dist/src/cli/commands', 'cli/commands'),
    ...entries('dist/handlers', 'handlers'),
  },
  platform: 'node',
  plugins: [startupTrims],
  // An entry's chunk may export more than the entry (grouped chunks); the entries' own exports are all kept.
  preserveEntrySignatures: 'allow-extension',
  // The commands import their modules dynamically, but the groups above decide the chunks.
  checks: { ineffectiveDynamicImport: false },
  external: (id, importer) =>
    standIn(id, importer) < 0 &&
    (id.startsWith('node:') || builtinModules.includes(id) || outside.some((d) => id === d || id.startsWith(`${d}/`))),
  output: {
    dir: 'dist/bundle',
    cleanDir: true,
    format: 'esm',
    charset: 'ascii',
    comments: { legal: true, annotation: false, jsdoc: false }, // licence notices stay
    entryFileNames: '[name].js',
    codeSplitting: { groups: [{ name: chunkGroup, debugName: 'toolkit' }], includeDependenciesRecursively: false },
    chunkFileNames: 'chunks/[name]-[hash].js',
  },
});
