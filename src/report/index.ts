/**
 * `amie report --html`: the status page, from the database to one HTML string.
 * gather.ts reads the figures, charts.ts draws them, html.ts lays out the page.
 */
import type { Queryable } from '../db/index.js';
import { renderCharts, reportCharts } from './charts.js';
import { gatherReport, type ReportConfig, type ReportModel, type ReportOptions } from './gather.js';
import { reportHtml } from './html.js';

export { gatherReport, driftSection, gatherUsage, subjectOf } from './gather.js';
export type {
  ReportModel,
  ReportOptions,
  ReportConfig,
  DriftSection,
  UsageSection,
  ProjectUsageSeries,
} from './gather.js';
export { reportCharts, renderCharts } from './charts.js';
export { reportHtml, escapeHtml } from './html.js';

/** The page for the database's present state. The database must be prepared (`prepareDatabase`). */
export async function generateReport(
  q: Queryable,
  config: ReportConfig,
  opts: ReportOptions,
): Promise<{ model: ReportModel; html: string }> {
  const model = await gatherReport(q, config, opts);
  const svgs = await renderCharts(reportCharts(model));
  return { model, html: reportHtml(model, svgs) };
}
