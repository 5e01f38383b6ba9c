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
 * only the named one) and dynamic imports stay split, so nothing is loaded earlier than before.
 * pino is used without transports (no worker threads, whose files a bundle would not have).
 *
 * One graph for all entries matters: a site handler imports `amie-toolkit` and the CLI loads
 * that handler, so both must see the same classes (a PacketFailure thrown by the handler is an
 * instance of the class the dispatcher checks). Not minified: a stack trace from `--debug` keeps
 * the toolkit's function names (minifying measured no faster).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { defineConfig } from 'rolldown';

const BUNDLED = ['zod', 'yaml', 'commander', 'pg', 'pino'];
const { dependencies } = JSON.parse(readFileSync('package.json', 'utf8'));
const outside = Object.keys(dependencies).filter((d) => !BUNDLED.includes(d));

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
  external: (id) =>
    id.startsWith('node:') || builtinModules.includes(id) || outside.some((d) => id === d || id.startsWith(`${d}/`)),
  output: {
    dir: 'dist/bundle',
    cleanDir: true,
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: 'chunks/[name]-[hash].js',
  },
});
