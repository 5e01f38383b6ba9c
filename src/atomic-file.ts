/**
 * Files other programs read while we replace them (a node_exporter textfile, a status page a web
 * server serves): written beside the target and renamed over it, so a reader sees the old file
 * or the new one, never half of one.
 */
import { chmod, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeFileAtomically(file: string, text: string): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  try {
    await writeFile(temp, text, { mode: 0o644 });
    // Readable by the web server or node_exporter even under cron's strict umask (077, 027).
    await chmod(temp, 0o644);
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}
