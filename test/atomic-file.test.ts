import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileAtomically } from '../src/atomic-file.js';

describe('writeFileAtomically (the status page, the node_exporter textfile)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it("leaves a file the web server can read even under cron's umask 077", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amie-atomic-'));
    dirs.push(dir);
    const file = join(dir, 'status.html');
    const before = process.umask(0o077);
    try {
      await writeFileAtomically(file, 'page');
    } finally {
      process.umask(before);
    }
    expect(readFileSync(file, 'utf8')).toBe('page');
    expect(statSync(file).mode & 0o777).toBe(0o644);
  });
});
