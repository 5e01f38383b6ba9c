/**
 * The import-circle check of `npm run lint` really fails on a circle, type-only imports included
 * (the lint itself proves src/ and handlers/ have none).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const depcruise = 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs';

describe('import rules', () => {
  it('report a circle of type-only imports and fail', async () => {
    const err = await run(
      process.execPath,
      [depcruise, '--config', '.dependency-cruiser.js', 'test/fixtures/import-circle'],
      { cwd: root },
    ).then(
      () => undefined,
      (e: { code?: number; stdout?: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stdout).toMatch(/no-circular: test\/fixtures\/import-circle\/(order|line)\.ts/);
  });
});
