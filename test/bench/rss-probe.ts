/**
 * Loaded with `node --import` into a benchmarked child process: at exit it appends the process's
 * peak resident memory (KiB, as getrusage gives it) to the file AMIE_BENCH_RSS_FILE names, so a
 * figure is the child's own and not the benchmark's.
 */
import { appendFileSync } from 'node:fs';

const out = process.env.AMIE_BENCH_RSS_FILE;
if (out) process.on('exit', () => appendFileSync(out, `${process.resourceUsage().maxRSS}\n`));
