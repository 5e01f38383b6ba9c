/**
 * Loaded with `node --import` into a benchmarked child process: at exit it appends the process's
 * peak resident memory (KiB) to the file AMIE_BENCH_RSS_FILE names, so a figure is the child's own
 * and not the benchmark's. On Linux that is VmHWM from /proc/self/status: getrusage's maxRSS
 * survives exec, so a child spawned by a large parent reports the parent's size.
 */
import { appendFileSync, readFileSync } from 'node:fs';

function peakKib(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]);
  } catch {
    // not Linux: getrusage below
  }
  return process.resourceUsage().maxRSS;
}

const out = process.env.AMIE_BENCH_RSS_FILE;
if (out) process.on('exit', () => appendFileSync(out, `${peakKib()}\n`));
