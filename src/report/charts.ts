/**
 * The status page's charts: Vega-Lite specifications built from the report model, rendered to
 * SVG here, when the page is generated (Vega's headless renderer), so the page needs no script
 * and no network to show them. Vega escapes every text it writes into the SVG (axis labels,
 * legends, ARIA descriptions), which is what makes packet text safe in a chart.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { ReportModel } from './gather.js';

export interface Chart {
  /** Stable name: the page's figure is data-chart="<id>". */
  id: string;
  title: string;
  spec: TopLevelSpec;
}

/** One colour per handler outcome, the same in every chart and run. */
const OUTCOME_COLOURS: ReadonlyArray<[string, string]> = [
  ['reply', '#2e7d32'],
  ['closed', '#64b5f6'],
  ['ignore', '#9e9e9e'],
  ['defer', '#f9a825'],
  ['unhandled', '#8e24aa'],
  ['error', '#b71c1c'],
  ['fail', '#e53935'],
  ['invalid', '#fb8c00'],
];

const CONFIG = {
  font: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridColor: '#eee' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260 },
} as const;

/** Counts are whole numbers: no 0.5 tick. */
const COUNT_AXIS = { format: 'd', tickMinStep: 1 } as const;

function endOfUtcDay(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1));
}

/** Outcomes present in the data first in the fixed order, then any the toolkit does not know yet. */
function outcomeScale(outcomes: Iterable<string>) {
  const present = new Set(outcomes);
  const known = OUTCOME_COLOURS.filter(([o]) => present.has(o));
  const others = [...present].filter((o) => !OUTCOME_COLOURS.some(([k]) => k === o)).sort();
  return {
    domain: [...known.map(([o]) => o), ...others],
    range: [...known.map(([, c]) => c), ...others.map(() => '#455a64')],
  };
}

/** The charts the model has data for; a section without data shows a sentence instead. */
export function reportCharts(m: ReportModel): Chart[] {
  const charts: Chart[] = [];
  if (m.packetsPerDay.length > 0) {
    const scale = outcomeScale(m.packetsPerDay.map((p) => p.outcome));
    charts.push({
      id: 'packets-per-day',
      title: 'Packets per day by outcome',
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        config: CONFIG,
        width: 640,
        height: 220,
        data: { values: m.packetsPerDay },
        mark: { type: 'bar' },
        encoding: {
          x: {
            field: 'day',
            type: 'temporal',
            timeUnit: 'utcyearmonthdate',
            title: 'day (UTC)',
            axis: { format: '%b %d', labelAngle: 0 },
            // The whole window, to the end of today: quiet days show as gaps, not as a shorter axis.
            scale: { domain: [m.since.toISOString(), endOfUtcDay(m.generatedAt).toISOString()] },
          },
          y: { aggregate: 'sum', field: 'packets', type: 'quantitative', title: 'packets', axis: COUNT_AXIS },
          color: { field: 'outcome', type: 'nominal', scale, title: 'outcome' },
        },
      },
    });
    charts.push({
      id: 'packets-by-type',
      title: `Packets by type and outcome, last ${m.days} days`,
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        config: CONFIG,
        width: 640,
        data: { values: m.packetsPerDay },
        mark: { type: 'bar' },
        encoding: {
          y: { field: 'type', type: 'nominal', title: null, sort: '-x', axis: { labelLimit: 260 } },
          x: { aggregate: 'sum', field: 'packets', type: 'quantitative', title: 'packets', axis: COUNT_AXIS },
          color: { field: 'outcome', type: 'nominal', scale, title: 'outcome' },
        },
      },
    });
  }
  const used = (m.usage?.projects ?? []).filter((p) => p.series.length > 0);
  if (used.length > 0) {
    // The most used (as a share of the allocation) first; more lines than this cannot be told apart.
    const shown = [...used]
      .sort((a, b) => share(b.used, b.allocation) - share(a.used, a.allocation))
      .slice(0, USAGE_CHART_PROJECTS);
    const points = shown.flatMap((p) =>
      p.series.map((s) => ({
        project: p.projectId,
        day: s.day,
        percent: round1(share(s.used, p.allocation)),
      })),
    );
    charts.push({
      id: 'usage',
      title: 'Usage against the allocation (share of the allocation charged since its start)',
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        config: CONFIG,
        width: 640,
        height: 240,
        layer: [
          {
            data: { values: points },
            mark: { type: 'line', point: true },
            encoding: {
              x: {
                field: 'day',
                type: 'temporal',
                timeUnit: 'utcyearmonthdate',
                title: 'day (UTC)',
                // Ticks on whole days only; Vega drops the labels that would overlap.
                axis: { format: '%b %d', tickCount: { interval: 'day', step: 1 } },
              },
              y: { field: 'percent', type: 'quantitative', title: '% of allocation' },
              color: { field: 'project', type: 'nominal', title: 'ProjectID' },
            },
          },
          {
            data: { values: [{ percent: 100 }] },
            mark: { type: 'rule', color: '#b71c1c', strokeDash: [4, 4] },
            encoding: { y: { field: 'percent', type: 'quantitative' } },
          },
        ],
      },
    });
  }
  if (m.drift && m.drift.counts.length > 0) {
    charts.push({
      id: 'drift',
      title: 'Drift between the registry and Slurm',
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        config: CONFIG,
        width: 640,
        data: { values: m.drift.counts },
        mark: { type: 'bar', color: '#6d4c41' },
        encoding: {
          y: { field: 'kind', type: 'nominal', title: null, sort: '-x', axis: { labelLimit: 260 } },
          x: { field: 'count', type: 'quantitative', title: 'differences', axis: COUNT_AXIS },
        },
      },
    });
  }
  return charts;
}

/** Lines drawn on the usage chart; every project is in the table below it. */
export const USAGE_CHART_PROJECTS = 10;

export function share(used: number, allocation: number): number {
  return allocation > 0 ? (100 * used) / allocation : 0;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

/** Each chart as an SVG document (a string), in the order given. */
export async function renderCharts(charts: Chart[]): Promise<Map<string, string>> {
  const vega = await import('vega');
  const { compile } = await import('vega-lite');
  const out = new Map<string, string>();
  for (const chart of charts) {
    // Vega tags the data rows it is given; a copy keeps the report model as it was read.
    const view = new vega.View(vega.parse(compile(structuredClone(chart.spec)).spec), { renderer: 'none' });
    try {
      out.set(chart.id, await view.toSVG());
    } finally {
      view.finalize();
    }
  }
  return out;
}
