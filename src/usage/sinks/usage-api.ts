import type { Database } from '../../db/index.js';
import type { Logger } from '../../log.js';
import {
  claimReportedJobs,
  recordApiOutcomes,
  type ApiOutcome,
  type ReportedJobKey,
  type StoredUsageRecord,
} from '../../store/usage.js';
import { UsageApiError, type ComputeRecord, type RecordVerdict, type UsageApiClient } from '../api-client.js';
import {
  computeRecord,
  jobKey,
  reportedRow,
  type BatchResult,
  type ChargedJob,
  type UsageSink,
  type UsageSite,
} from './types.js';

/**
 * Usage as compute records POSTed to the ACCESS Usage API. The HTTP call cannot share a
 * database transaction, so a job goes through three steps: claimed as `pending` (committed
 * before sending), sent, then marked `reported` only once the server accepted it, or `failed`
 * with the server's reason. A crash between sending and recording leaves it `pending`: the
 * next run (or `amie usage resend`) sends it again with the same LocalRecordID and
 * LocalReference, so the server sees the same record, not a new job.
 */
export class UsageApiSink implements UsageSink {
  readonly name = 'usage-api' as const;

  constructor(
    private readonly db: Database,
    private readonly client: UsageApiClient,
    private readonly site: UsageSite,
    private readonly log?: Logger,
  ) {}

  async writeBatch(jobs: readonly ChargedJob[], runId: number | null): Promise<BatchResult> {
    if (jobs.length === 0) return { reported: [], alreadyReported: 0, failed: [] };
    const records = jobs.map((c) => computeRecord(c, this.site));
    const rows = jobs.map((c, i) => reportedRow(c, this.name, records[i]));
    const claimed = await this.db.transaction((tx) =>
      claimReportedJobs(tx, rows, { status: 'pending', runId, reclaimPending: true }),
    );
    // A reclaimed pending row is sent as it was stored (see claimReportedJobs).
    const sent = claimed.map((c) => ({
      job: jobs[c.index]!,
      record: (c.record as ComputeRecord | null) ?? records[c.index]!,
      key: jobKey(jobs[c.index]!.job),
    }));
    const verdicts = await this.send(sent);
    const result: BatchResult = { reported: [], alreadyReported: jobs.length - claimed.length, failed: [] };
    for (const v of verdicts) {
      if (v.status === 'reported') result.reported.push(v.item.job);
      else result.failed.push({ job: v.item.job, reason: v.reason ?? 'refused' });
    }
    return result;
  }

  /**
   * Sends stored records again (failed ones, or pending ones a crash left) and records the new
   * verdicts. Returns how many were accepted and which still failed.
   */
  async resend(
    stored: readonly StoredUsageRecord[],
  ): Promise<{ reported: number; failed: Array<{ key: ReportedJobKey; reason: string }> }> {
    const items = stored
      .filter((s) => s.record && typeof s.record === 'object')
      .map((s) => ({
        job: undefined,
        record: s.record as ComputeRecord,
        key: { cluster: s.cluster, jobId: s.jobId, submitTime: s.submitTime },
      }));
    const verdicts = await this.send(items);
    return {
      reported: verdicts.filter((v) => v.status === 'reported').length,
      failed: verdicts
        .filter((v) => v.status === 'failed')
        .map((v) => ({ key: v.item.key, reason: v.reason ?? 'refused' })),
    };
  }

  private outcomes(items: ReadonlyArray<{ key: ReportedJobKey }>, verdicts: readonly RecordVerdict[]): ApiOutcome[] {
    return verdicts.map((v) => ({
      key: items[v.index]!.key,
      status: v.accepted ? 'reported' : 'failed',
      reason: v.reason ?? null,
      httpStatus: v.httpStatus,
    }));
  }

  private async send<T extends { record: ComputeRecord; key: ReportedJobKey }>(
    items: readonly T[],
  ): Promise<Array<{ item: T; status: 'reported' | 'failed'; reason?: string }>> {
    if (items.length === 0) return [];
    let verdicts: RecordVerdict[];
    try {
      verdicts = await this.client.postCompute(items.map((i) => i.record));
    } catch (err) {
      // Bodies answered before the failure keep their verdicts; the rest stay pending.
      if (err instanceof UsageApiError && err.decided.length > 0)
        await recordApiOutcomes(this.db, this.outcomes(items, err.decided));
      throw err;
    }
    const outcomes = this.outcomes(items, verdicts);
    await recordApiOutcomes(this.db, outcomes);
    const failed = outcomes.filter((o) => o.status === 'failed').length;
    if (failed > 0)
      this.log?.warn(
        { sink: this.name, failed, sent: items.length },
        'the Usage API refused records; see amie usage failed',
      );
    return verdicts.map((v) => ({
      item: items[v.index]!,
      status: v.accepted ? ('reported' as const) : ('failed' as const),
      ...(v.reason !== undefined ? { reason: v.reason } : {}),
    }));
  }
}
