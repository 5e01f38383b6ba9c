import type { Database } from '../../db/index.js';
import { claimReportedJobs, writeUsagePackets } from '../../store/usage.js';
import { npuRows, reportedRow, type BatchResult, type ChargedJob, type UsageSink, type UsageSite } from './types.js';

/**
 * Usage as notify_project_usage packets in the AMIE tables, one site-originated transaction
 * per job, for the transfer daemon to send. A batch is one database transaction of two
 * statements: the reported-jobs rows (jobs reported before drop out there) and then every
 * transaction, packet, data row and expected reply of the new ones. A crash before COMMIT
 * leaves neither; after it, both: each job is reported once.
 */
export class AmieDbSink implements UsageSink {
  readonly name = 'amie-db' as const;

  constructor(
    private readonly db: Database,
    private readonly site: UsageSite,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async writeBatch(jobs: readonly ChargedJob[], runId: number | null): Promise<BatchResult> {
    if (jobs.length === 0) return { reported: [], alreadyReported: 0, failed: [] };
    const rows = jobs.map((c) => reportedRow(c, this.name));
    const createTime = this.now();
    const reported = await this.db.transaction(async (tx) => {
      const fresh = (await claimReportedJobs(tx, rows, { status: 'reported', runId })).map((c) => c.index);
      await writeUsagePackets(
        tx,
        { localSiteName: this.site.name, remoteSiteName: this.site.remoteSite },
        fresh.map((i) => ({ key: rows[i]!, rows: npuRows(jobs[i]!, this.site, createTime) })),
      );
      return fresh.map((i) => jobs[i]!);
    });
    return { reported, alreadyReported: jobs.length - reported.length, failed: [] };
  }
}
