/**
 * What a dispatcher run reports: each packet's result and the run's summary. Kept apart from
 * the dispatcher so that the configuration and the notifications can name these types without
 * importing the dispatcher (which imports the configuration).
 */
import type { PacketTypeName, TagValue } from '../protocol/index.js';

export type OutcomeKind = 'reply' | 'fail' | 'invalid' | 'defer' | 'error' | 'ignore' | 'unhandled' | 'closed';

/** One handled packet, for the summary, the dry-run listing and notifications. */
export interface PacketResult {
  packetRecId: number;
  transRecId: number;
  transactionId: number;
  type: string;
  outcome: OutcomeKind;
  reason?: string;
  replyType?: PacketTypeName;
  replyPacketRecId?: number | null;
  /** The reply's body as JSON (always present for replies; shown by --dry-run). */
  reply?: Record<string, TagValue>;
  /** Key identifying tags of the incoming packet, for people reading logs and notifications. */
  keys: Record<string, string>;
  /** Every tag of the incoming packet as text (lists joined with ", "), for notification templates; built when read. */
  tags?: Record<string, string>;
  durationMs: number;
}

export interface RunSummary {
  runId: string;
  dryRun: boolean;
  taken: number;
  answered: number;
  failed: number;
  invalid: number;
  deferred: number;
  errors: number;
  ignored: number;
  closed: number;
  unhandled: Record<string, number>;
  results: PacketResult[];
  durationMs: number;
}

/** 0: everything went as the handler chose; 1: a handler error, a failure reply or an unhandled type. */
export function exitCodeFor(summary: RunSummary): 0 | 1 {
  const unhandled = Object.keys(summary.unhandled).length > 0;
  return summary.errors > 0 || summary.failed > 0 || summary.invalid > 0 || unhandled ? 1 : 0;
}

export function formatSummary(s: RunSummary): string {
  const unhandled = Object.entries(s.unhandled)
    .map(([t, n]) => `${t} ×${n}`)
    .join(', ');
  return (
    `${s.dryRun ? '[dry run] ' : ''}${s.taken} packet(s): ${s.answered} answered, ${s.failed + s.invalid} failed` +
    ` (${s.invalid} invalid), ${s.deferred + s.errors} deferred (${s.errors} by errors), ${s.ignored} ignored,` +
    ` ${s.closed} closed by ITC, unhandled types: ${unhandled || 'none'} (${s.durationMs} ms)`
  );
}
