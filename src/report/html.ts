/**
 * The status page: the report model and its chart SVGs as one self-contained HTML document
 * (inline CSS, inline SVG, no script, no outside URL), so it reads the same from a web server,
 * a file or a mail attachment, with no network. Every text from the database passes through
 * `escapeHtml`; the only markup not built here is Vega's SVG, which escapes its own text.
 */
import { escapeControls, formatAge } from '../text.js';
import { share, USAGE_CHART_PROJECTS } from './charts.js';
import type { ReportModel } from './gather.js';

const ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Text for an HTML element or a quoted attribute value: markup characters as entities, and
 * control and bidirectional-override characters as visible escapes (as on the terminal).
 */
export function escapeHtml(value: unknown): string {
  return escapeControls(String(value ?? '')).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const e = escapeHtml;

const CSS = `
:root { color-scheme: light; --fg: #1d2430; --muted: #5f6b7a; --line: #dde2e8; --bg: #f6f8fa; --bad: #b71c1c; --warn: #a15c00; --ok: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 0; padding: 0; list-style: none; }
.cards li { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 140px; }
.cards .n { display: block; font-size: 20px; font-weight: 600; }
.cards .warn .n { color: var(--warn); } .cards .bad .n { color: var(--bad); }
.cards .label { color: var(--muted); font-size: 12px; }
figure.chart { margin: 12px 0; overflow-x: auto; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
figure.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.reason { white-space: pre-wrap; word-break: break-word; max-width: 420px; }
.none { color: var(--muted); font-style: italic; }
.over { color: var(--bad); font-weight: 600; }
footer { color: var(--muted); font-size: 12px; padding: 24px 20px 30px; }
`;

/** The page; `svgs` holds each chart's SVG by chart id (from renderCharts). */
export function reportHtml(m: ReportModel, svgs: ReadonlyMap<string, string>): string {
  const generated = m.generatedAt.toISOString();
  const generatedText = `${generated.slice(0, 10)} ${generated.slice(11, 19)} UTC`;
  const s = m.status;
  const failedDay = s.failedLastDay;
  const card = (n: number | string, label: string, level: '' | 'warn' | 'bad' = '') =>
    `<li${level ? ` class="${level}"` : ''}><span class="n">${e(n)}</span><span class="label">${e(label)}</span></li>`;
  const cards = [
    card(s.pending, 'pending packets', s.pending > 0 ? 'warn' : ''),
    card(
      s.oldestPendingAgeSeconds === null ? '–' : formatAge(s.oldestPendingAgeSeconds),
      'oldest pending',
      s.oldestPendingAgeSeconds !== null && s.oldestPendingAgeSeconds >= 7200 ? 'warn' : '',
    ),
    card(m.stuck.length, 'stuck packets', m.stuck.length > 0 ? 'warn' : ''),
    card(failedDay, 'failures, last 24 h', failedDay > 0 ? 'bad' : ''),
    card(m.failureCount, `failures, last ${m.days} days`, m.failureCount > 0 ? 'warn' : ''),
    card(
      s.lastPassAgeSeconds === null ? 'never' : `${formatAge(s.lastPassAgeSeconds)} ago`,
      // A run still in its pass holds the run lock: a long backlog or a hung command, not a stopped cron.
      s.runInProgress ? 'last amie process pass; a run is at work' : 'last amie process pass',
      s.lastPassAgeSeconds === null || s.lastPassAgeSeconds >= 7200 ? 'warn' : '',
    ),
    ...(m.source === 'rest' ? [card(s.outboxUnsent, 'unsent REST replies', s.outboxUnsent > 0 ? 'warn' : '')] : []),
    card(s.usageFailed, 'usage records refused', s.usageFailed > 0 ? 'bad' : ''),
  ];

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="amie-toolkit amie report --html">
<title>AMIE status: ${e(m.site)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>AMIE status: ${e(m.site)}</h1>
<p class="meta">Generated <time id="generated" datetime="${e(generated)}">${e(generatedText)}</time>
 · packets from the ${m.source === 'rest' ? 'AMIE REST API' : 'AMIE tables'}
 · handler ${m.handler ? e(m.handler) : '<span class="none">none configured</span>'}
 · last ${e(m.days)} days (since ${e(m.since.toISOString().slice(0, 10))})</p>
<ul class="cards">
${cards.join('\n')}
</ul>
</header>
<main>
${packetsSection(m, svgs)}
${pendingSection(m)}
${failuresSection(m)}
${usageSection(m, svgs)}
${driftSection(m, svgs)}
</main>
<footer>Generated by <code>amie report --html</code> at ${e(generatedText)}. Regenerated by the site's schedule; the figures are those of that moment.</footer>
</body>
</html>
`;
}

function figure(id: string, caption: string, svgs: ReadonlyMap<string, string>): string {
  const svg = svgs.get(id);
  if (!svg) return '';
  return `<figure class="chart" data-chart="${e(id)}"><figcaption>${e(caption)}</figcaption>${svg}</figure>`;
}

function none(text: string): string {
  return `<p class="none">${e(text)}</p>`;
}

function table(headers: Array<[string, boolean?]>, rows: string[][]): string {
  const head = headers.map(([h, num]) => `<th${num ? ' class="num"' : ''}>${e(h)}</th>`).join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${rows
    .map((r) => `<tr>${r.join('')}</tr>`)
    .join('\n')}\n</tbody></table>`;
}

const td = (v: unknown, cls = '') => `<td${cls ? ` class="${cls}"` : ''}>${e(v)}</td>`;
const at = (d: Date) => `${d.toISOString().slice(0, 16).replace('T', ' ')}`;

function packetsSection(m: ReportModel, svgs: ReadonlyMap<string, string>): string {
  const total = m.packetsPerDay.reduce((n, p) => n + p.packets, 0);
  const body =
    total === 0
      ? none(`No packet was handled in the last ${m.days} days.`)
      : `<p>${e(total)} packet decision(s) by the handler in the last ${e(m.days)} days (a packet deferred and later answered counts on each day it was seen).</p>
${figure('packets-per-day', 'Packets per day by outcome', svgs)}
${figure('packets-by-type', 'Packets by type and outcome', svgs)}`;
  const byState = m.status.packets.length
    ? table(
        [['direction'], ['state'], ['packets', true]],
        m.status.packets.map((p) => [td(p.direction), td(p.state), td(p.count, 'num')]),
      )
    : none('No packet in the database.');
  return `<section id="packets"><h2>Packets</h2>
${body}
<h3>All packets by state</h3>
${byState}
</section>`;
}

function pendingSection(m: ReportModel): string {
  const s = m.status;
  const lines = [
    `${s.pending} incoming packet(s) waiting for the handler${s.oldestPendingAgeSeconds !== null ? `, the oldest for ${formatAge(s.oldestPendingAgeSeconds)}` : ''}.`,
    `${s.errorDeferred} deferred by handler errors.`,
  ];
  if (m.source === 'rest')
    lines.push(`${s.outboxUnsent} REST repl(ies) not yet accepted by the server, ${s.outboxRefused} refused.`);
  const stuck = m.stuck.length
    ? table(
        [['packet', true], ['type'], ['waiting'], ['errors', true], ['last outcome'], ['about'], ['last reason']],
        m.stuck.map((p) => [
          td(p.packetRecId, 'num'),
          td(p.type ?? ''),
          td(formatAge(p.ageSeconds)),
          td(p.errors, 'num'),
          td(p.lastOutcome ?? ''),
          td(p.subject),
          td(p.lastReason ?? '', 'reason'),
        ]),
      )
    : none('No stuck packet: every pending packet is new to the handler.');
  return `<section id="pending"><h2>Pending and stuck packets</h2>
<p>${lines.map(e).join(' ')}</p>
<p>Stuck: received packets a pass has left pending (deferred, handler errors, unhandled type); <code>amie packets show ID</code> tells more, <code>amie packets retry ID</code> offers one again.</p>
${stuck}
</section>`;
}

function failuresSection(m: ReportModel): string {
  const body = m.failures.length
    ? `${m.failureCount > m.failures.length ? `<p>The newest ${e(m.failures.length)} of ${e(m.failureCount)}.</p>` : ''}
${table(
  [['at (UTC)'], ['packet', true], ['type'], ['outcome'], ['about'], ['reason']],
  m.failures.map((f) => [
    td(at(f.at)),
    td(f.packetRecId, 'num'),
    td(f.type),
    td(f.outcome),
    td(f.subject),
    td(f.reason ?? '', 'reason'),
  ]),
)}`
    : none(`No packet was answered with a failure in the last ${m.days} days.`);
  return `<section id="failures"><h2>Failures</h2>
<p>Packets answered with a failure inform_transaction_complete: <em>fail</em>, refused by the handler; <em>invalid</em>, a packet the toolkit could not read.</p>
${body}
</section>`;
}

function usageSection(m: ReportModel, svgs: ReadonlyMap<string, string>): string {
  const u = m.usage;
  if (!u)
    return `<section id="usage"><h2>Usage against the allocation</h2>${none(`Not available: ${m.notAvailable.usage ?? 'no data'}.`)}</section>`;
  const withUsage = u.projects.filter((p) => p.series.length > 0).length;
  const chart =
    withUsage === 0
      ? none('No usage reported for any project yet.')
      : `${figure('usage', 'Share of the allocation charged, per project', svgs)}${
          withUsage > USAGE_CHART_PROJECTS
            ? `<p>The chart shows the ${USAGE_CHART_PROJECTS} projects that used the largest share; the table lists all.</p>`
            : ''
        }`;
  const rows = [...u.projects]
    .sort((a, b) => share(b.used, b.allocation) - share(a.used, a.allocation) || a.projectId.localeCompare(b.projectId))
    .map((p) => {
      const pct = share(p.used, p.allocation);
      return [
        td(p.projectId),
        td(p.grantNumber),
        td(`${p.startDate ?? '?'} .. ${p.endDate ?? '?'}`),
        td(p.allocation.toLocaleString('en-US'), 'num'),
        td(round2(p.used).toLocaleString('en-US'), 'num'),
        `<td class="num${pct > 100 ? ' over' : ''}">${e(p.allocation > 0 ? `${pct.toFixed(1)} %` : '–')}</td>`,
        td(p.runsOut),
        td(p.active ? 'active' : 'inactive'),
      ];
    });
  const open =
    u.unreported.pending + u.unreported.failed > 0
      ? `<p>Not counted: ${e(u.unreported.pending)} usage record(s) pending and ${e(u.unreported.failed)} refused by the Usage API (<code>amie usage failed</code>).</p>`
      : '';
  return `<section id="usage"><h2>Usage against the allocation</h2>
<p>Usage the site reported (accepted records), charged in each project's current allocation period, in ${e(u.unit)} (as <code>amie usage summary</code> counts it).</p>
${chart}
${open}
${table(
  [
    ['ProjectID'],
    ['grant'],
    ['allocation period'],
    [`allocation (${u.unit})`, true],
    ['used', true],
    ['share', true],
    ['outlook'],
    ['state'],
  ],
  rows,
)}
</section>`;
}

function driftSection(m: ReportModel, svgs: ReadonlyMap<string, string>): string {
  const d = m.drift;
  if (!d)
    return `<section id="drift"><h2>Drift between the registry and Slurm</h2>${none(`Not available: ${m.notAvailable.drift ?? 'no data'}.`)}</section>`;
  const total = d.counts.reduce((n, c) => n + c.count, 0);
  return `<section id="drift"><h2>Drift between the registry and Slurm</h2>
<p>${total === 0 ? 'Slurm matches the registry.' : `${e(total)} difference(s) between the registry and Slurm; <code>amie slurm check</code> lists them.`}${d.checkedAt ? ` Checked ${e(at(d.checkedAt))} UTC.` : ''}</p>
${total === 0 ? '' : figure('drift', 'Differences by kind', svgs)}
${table(
  [['kind'], ['count', true]],
  d.counts.map((c) => [td(c.kind), td(c.count, 'num')]),
)}
</section>`;
}

const round2 = (n: number) => Math.round(n * 100) / 100;
