import { escapeControls } from '../text.js';

/** Aligned text tables for people; scripts use --json instead. */
export function formatTable(rows: ReadonlyArray<Record<string, unknown>>, columns?: string[]): string[] {
  if (rows.length === 0) return ['(none)'];
  const cols = columns ?? Object.keys(rows[0]!);
  const cell = (v: unknown) =>
    escapeControls(
      (v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v)).replace(/\s+/g, ' '),
    );
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => Math.min(cell(r[c]).length, 60))));
  const line = (values: string[]) =>
    values
      .map((v, i) => (v.length > 60 ? `${v.slice(0, 57)}...` : v).padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(cols), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))];
}
