import type { Queryable } from '../db/index.js';
import { loadRegistrySlurmAccounts } from '../store/usage.js';

export type ProjectSource = 'registry' | 'config';

/**
 * Slurm account → AMIE ProjectID. The registry (projects the Slurm handler created know their
 * Slurm account) wins over the `usage.projects` map of the config; an account neither knows
 * is not guessed at: its jobs are skipped and counted, so the operator can add it.
 *
 * Slurm stores account names in lower case whatever case they were created with, so both
 * sides are compared in lower case.
 */
export class ProjectMapper {
  private readonly byAccount = new Map<string, { projectId: string; source: ProjectSource }>();

  constructor(registry: ReadonlyMap<string, string>, configured: Readonly<Record<string, string>> = {}) {
    for (const [account, projectId] of Object.entries(configured)) {
      this.byAccount.set(account.toLowerCase(), { projectId, source: 'config' });
    }
    for (const [account, projectId] of registry) {
      this.byAccount.set(account.toLowerCase(), { projectId, source: 'registry' });
    }
  }

  /** Reads the registry once for the whole run. */
  static async load(q: Queryable, configured: Readonly<Record<string, string>> = {}): Promise<ProjectMapper> {
    return new ProjectMapper(await loadRegistrySlurmAccounts(q), configured);
  }

  /** The ProjectID for a Slurm account, or undefined when it is not mapped. */
  projectOf(account: string): string | undefined {
    return this.byAccount.get(account.toLowerCase())?.projectId;
  }

  sourceOf(account: string): ProjectSource | undefined {
    return this.byAccount.get(account.toLowerCase())?.source;
  }

  get size(): number {
    return this.byAccount.size;
  }
}
