/**
 * The installed toolkit's own directory (where its package.json is), found by climbing from the
 * calling module: the same answer from the source tree, from tsc's output in dist/src and from
 * the bundle in dist/bundle, whose chunks sit at another depth than the modules they hold.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ToolkitPackage {
  root: string;
  version: string;
  dependencies: Record<string, string>;
}

let found: ToolkitPackage | undefined;

/** The toolkit's package.json above this module; throws when there is none (a copied file, not a package). */
export function toolkitPackage(): ToolkitPackage {
  if (found) return found;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
        dependencies?: Record<string, string>;
      };
      if (pkg.name === 'amie-toolkit') {
        found = { root: dir, version: pkg.version ?? 'unknown', dependencies: pkg.dependencies ?? {} };
        return found;
      }
    } catch {
      /* not here; keep climbing */
    }
    if (dirname(dir) === dir) throw new Error('cannot find the package.json of amie-toolkit above this module');
  }
}
