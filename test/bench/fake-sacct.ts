/**
 * Stands in for sacct in the usage benchmarks: `node fake-sacct.js COUNT FIRST_JOB START_ISO
 * [sacct arguments...]` prints COUNT synthetic lines (see test/helpers/sacct-lines.ts) as fast as
 * the reader takes them, and ignores the arguments the toolkit passes to the real sacct.
 */
import { sacctLine } from '../helpers/sacct-lines.js';

const count = Number(process.argv[2]);
const opts = { firstJob: Number(process.argv[3]), start: new Date(String(process.argv[4])) };
let i = 0;
function write(): void {
  while (i < count) {
    const chunk: string[] = [];
    for (const end = Math.min(count, i + 2000); i < end; i++) chunk.push(sacctLine(i, opts));
    if (!process.stdout.write(chunk.join('\n') + '\n')) {
      process.stdout.once('drain', write);
      return;
    }
  }
}
write();
