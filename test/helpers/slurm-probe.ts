/**
 * Whether the Slurm test cluster takes jobs: `sinfo` shows a usable node. Asked once per run
 * by the vitest global setup (test/helpers/pglite-snapshot.ts), while it prepares the
 * databases: where Slurm is installed but not running, sinfo waits for its timeout, which each
 * test worker would otherwise wait again.
 */
import { execa } from 'execa';

const USABLE_STATES = new Set(['idle', 'mixed', 'allocated', 'completing']);

/** The arguments and limits of the one sinfo call that decides (shared with the synchronous fallback). */
export const SINFO = { args: ['-h', '-o', '%T'], options: { timeout: 5000, reject: false, stdin: 'ignore' } } as const;

/** True when sinfo's answer lists a node in a usable state (a trailing '*' means it does not respond). */
export function usableNode(r: { exitCode?: number; stdout: unknown }): boolean {
  if (r.exitCode !== 0 || typeof r.stdout !== 'string') return false;
  return r.stdout.split('\n').some((s) => USABLE_STATES.has(s.trim()));
}

export async function slurmClusterAnswers(): Promise<boolean> {
  try {
    return usableNode(await execa('sinfo', SINFO.args, SINFO.options));
  } catch {
    return false; // sinfo not installed
  }
}
