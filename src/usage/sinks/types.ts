import type { DataRow } from '../../protocol/ids.js';
import type { ReportedJobKey, ReportedJobRow } from '../../store/usage.js';
import type { ComputeRecord } from '../api-client.js';
import type { ChargeUnit } from '../charge.js';
import type { SacctJob } from '../sacct.js';

/** Where `amie report-usage` sends charged jobs (`usage.sink`). */
export const USAGE_SINKS = ['amie-db', 'usage-api'] as const;
export type UsageSinkName = (typeof USAGE_SINKS)[number];

/** A finished job with the project it is charged to and what it costs. */
export interface ChargedJob {
  job: SacctJob;
  projectId: string;
  charge: number;
  chargeUnit: ChargeUnit;
}

/** What a sink did with one batch. */
export interface BatchResult {
  /** Newly reported now (written to the AMIE tables, or accepted by the Usage API). */
  reported: ChargedJob[];
  /** Reported by an earlier run (or an earlier, overlapping window): nothing was written. */
  alreadyReported: number;
  /** Refused by the Usage API, with the server's reason; stored for `amie usage resend`. */
  failed: Array<{ job: ChargedJob; reason: string }>;
}

export interface UsageSink {
  readonly name: UsageSinkName;
  /** Reports each job of the batch that was never reported before; jobs of one batch have distinct keys. */
  writeBatch(jobs: readonly ChargedJob[], runId: number | null): Promise<BatchResult>;
}

/** The site as usage records name it. */
export interface UsageSite {
  /** local_site_name, XA-SITE. */
  name: string;
  /** MachineName / Resource. */
  resource: string;
  /** remote_site_name of the NPU transactions. */
  remoteSite: string;
}

/**
 * A job's identity in the reported-jobs table. A job with no Submit time (sacct prints
 * Unknown) falls back to its Start, then End, which are just as fixed once it has ended.
 */
export function jobKey(job: SacctJob): ReportedJobKey {
  return { cluster: job.cluster, jobId: job.jobId, submitTime: job.submit ?? job.start ?? job.end! };
}

/** ISO 8601 in UTC without milliseconds, as AMIE tags and the Usage API carry times. */
export function isoTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Charges as AMIE text: plain decimal notation (never 1e-7), no trailing zeros. */
export function chargeText(charge: number): string {
  const fixed = charge.toFixed(12);
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

/**
 * The id of one accounting record (one run of a job), `cluster:jobid:submit-epoch`: NPU packets
 * carry it as RecordID, Usage API records as LocalRecordID and LocalReference. Slurm keys a
 * cluster's job records by (job id, submit time) and gives each run of a requeued job a new
 * submit time, so two clusters, or two runs of one job, never share it; and it is made only
 * of the record's own fields, so a resend or a re-read window gives the same id.
 */
export function usageRecordId(job: SacctJob): string {
  const key = jobKey(job);
  return `${key.cluster}:${key.jobId}:${Math.floor(key.submitTime.getTime() / 1000)}`;
}

export function reportedRow(c: ChargedJob, sink: UsageSinkName, record?: ComputeRecord): ReportedJobRow {
  return {
    ...jobKey(c.job),
    startTime: c.job.start,
    endTime: c.job.end!,
    account: c.job.account,
    projectId: c.projectId,
    userLogin: c.job.user,
    charge: c.charge,
    chargeUnit: c.chargeUnit,
    sink,
    record: record ?? null,
  };
}

/** The data rows of a notify_project_usage packet for one job (§4 of the protocol notes). */
export function npuRows(c: ChargedJob, site: UsageSite, createTime: Date): DataRow[] {
  const j = c.job;
  const rows: DataRow[] = [];
  const add = (tag: string, value: string | null, subtag: string | null = null) => {
    if (value !== null) rows.push({ tag, subtag, seq: 0, value });
  };
  add('UsageType', 'normal');
  add('ProjectID', c.projectId);
  add('JobIdentity', j.jobId, 'LocalJobID');
  add('RecordIdentity', usageRecordId(j), 'RecordID');
  add('RecordIdentity', isoTime(createTime), 'CreateTime');
  add('MachineName', site.resource);
  add('UserLogin', j.user);
  add('SubmitTime', j.submit ? isoTime(j.submit) : null);
  add('StartTime', j.start ? isoTime(j.start) : null);
  add('EndTime', isoTime(j.end!));
  add('WallDuration', `PT${j.elapsedSeconds}S`);
  add('NodeCount', String(j.nodes));
  add('Processors', String(j.gpus));
  add('Queue', j.partition || null);
  add('Charge', chargeText(c.charge));
  return rows;
}

/** A Usage API compute record for one job (§8 of the protocol notes). */
export function computeRecord(c: ChargedJob, site: UsageSite): ComputeRecord {
  const j = c.job;
  const attributes: ComputeRecord['Attributes'] = { NodeCount: j.nodes, CpuCoreCount: j.cpus };
  if (j.tres.mem !== undefined) attributes.Memory = j.tres.mem;
  if (j.partition) attributes.Queue = j.partition;
  const end = isoTime(j.end!);
  return {
    Username: j.user,
    LocalProjectID: c.projectId,
    // The bare job id would collide across clusters and across the runs of a requeued job.
    LocalRecordID: usageRecordId(j),
    Resource: site.resource,
    SubmitTime: j.submit ? isoTime(j.submit) : j.start ? isoTime(j.start) : end,
    StartTime: j.start ? isoTime(j.start) : end,
    EndTime: end,
    Charge: c.charge,
    Attributes: attributes,
    LocalReference: usageRecordId(j),
  };
}
