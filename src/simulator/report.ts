/** Scenario reports as text for people; scripts take the reports as JSON instead. */
import { escapeControls } from '../text.js';
import type { ScenarioReport } from './scenarios.js';

/** Aligned columns, nothing cut: ids are what a reader compares across rows. */
export function textTable(rows: ReadonlyArray<Record<string, unknown>>, columns: readonly string[]): string[] {
  if (rows.length === 0) return ['  (none)'];
  const cell = (v: unknown) => escapeControls((v === null || v === undefined ? '' : String(v)).replace(/\s+/g, ' '));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => `  ${values.map((v, i) => v.padEnd(widths[i]!)).join('  ')}`.trimEnd();
  return [
    line([...columns]),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(columns.map((c) => cell(r[c])))),
  ];
}

export function formatScenarioReport(report: ScenarioReport, opts: { verbose?: boolean } = {}): string[] {
  const kind = report.official ? 'official scenario' : 'extra check';
  const lines = [
    `${report.name} (${kind}): ${report.passed ? 'passed' : 'FAILED'} in ${(report.durationMs / 1000).toFixed(1)} s`,
    `  ${report.description}`,
    ...textTable(
      report.conversation.map((r) => ({
        transaction: r.transactionId,
        'packet in': r.in,
        'reply out': r.out,
        ids: r.ids,
      })),
      ['transaction', 'packet in', 'reply out', 'ids'],
    ),
  ];
  const shown = opts.verbose ? report.checks : report.checks.filter((c) => !c.ok);
  for (const c of shown) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.message}`);
  if (!opts.verbose) {
    const passed = report.checks.filter((c) => c.ok).length;
    lines.push(`  ${passed} of ${report.checks.length} checks passed`);
  }
  return lines;
}

export function formatVerdict(reports: readonly ScenarioReport[]): string {
  const failed = reports.filter((r) => !r.passed).map((r) => r.name);
  return failed.length === 0
    ? `verdict: passed (${reports.length} of ${reports.length} scenarios)`
    : `verdict: FAILED (${failed.length} of ${reports.length} scenarios: ${failed.join(', ')})`;
}
