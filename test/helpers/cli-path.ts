/** The program as a site runs it (the bundle `amie` points at); `npm test` and `npm run build` build it. Free of vitest, so the benchmarks use it too. */
import { resolve } from 'node:path';

export const CLI = resolve('dist/bundle/cli/main.js');
