/**
 * Usage against allocations: what each project was allocated (the registry), what it has been
 * charged in its current allocation period (the usage records the reporter wrote), what is
 * left, and when it runs out at the rate of the last 30 days. `amie usage summary` prints it,
 * usage alerts are decided from it, and the HTML report draws `usageByDay` against it.
 *
 * Only records the sink took count (`reported_jobs.status = 'reported'`), in the configured
 * charge unit; a job belongs to the day (UTC) it ended. An allocation period runs from its
 * StartDate 00:00 UTC to the end of its EndDate (AMIE's EndDate is the last day of the award).
 */
import type { Queryable } from '../db/index.js';
import type { ChargeUnit } from './charge.js';

const S = 'amie_toolkit';
const DAY_MS = 86_400_000;
/** The rate a projection uses: charged usage over this many days before now. */
export const RATE_DAYS = 30;

/** One allocation action from the registry's history (the RPCs that made the allocation). */
export interface AllocationAction {
  allocationType: string;
  /** ServiceUnitsAllocated as the RPC carried it (an amount to add for supplement-like types). */
  serviceUnits: number | null;
  startDate: string | null;
  endDate: string | null;
  /** When the registry applied it. */
  at: string;
}

/**
 * Why the projected exhaustion date is what it is:
 * `projected` (a date before the end date), `after-end-date` (at the recent rate the allocation
 * lasts past its end date), `no-recent-usage` (nothing charged in the last 30 days), `exhausted`
 * (nothing remains), `period-ended` (the end date has passed), `no-allocation` (amount 0).
 */
export type Projection =
  'projected' | 'after-end-date' | 'no-recent-usage' | 'exhausted' | 'period-ended' | 'no-allocation';

export interface ProjectUsage {
  projectId: string;
  grantNumber: string;
  title: string | null;
  active: boolean;
  /** The unit of the allocation and of every amount below (the configured charge unit). */
  unit: ChargeUnit;
  /** The current allocation as the registry holds it. */
  allocated: number;
  startDate: string | null;
  endDate: string | null;
  /**
   * Names the allocation period (`h` + the registry history id of the `new` or `renewal` that
   * opened it; `start:` + the start date when the registry has no history): alerts are per period.
   */
  period: string;
  /** The allocation types of the current period, oldest first (e.g. renewal, supplement). */
  periodActions: AllocationAction[];
  /** Every allocation action the registry recorded for the project, oldest first. */
  history: AllocationAction[];
  /** Charged in the current period. */
  charged: number;
  remaining: number;
  /** charged / allocated × 100, two decimals; null without an allocation. */
  percentUsed: number | null;
  /** Charged in the last 30 days (in any period), and that per day. */
  chargedLast30Days: number;
  ratePerDay: number;
  /** The day (UTC) the allocation runs out at `ratePerDay`, or null (see `projection`). */
  projectedExhaustion: string | null;
  projection: Projection;
}

export interface UsageSummaryOptions {
  /** The unit charges are counted in: the configured charge unit (`gpu-hours` unless set). */
  unit: ChargeUnit;
  /** Only this project (ProjectID or GrantNumber). */
  project?: string;
  now?: Date;
}

const round = (n: number, decimals: number) => {
  const f = 10 ** decimals;
  return Math.round(Number((n * f).toPrecision(15))) / f;
};
const isoDay = (d: Date) => d.toISOString().slice(0, 10);
/** The first instant after an allocation's EndDate (the EndDate is its last day). */
const endInstant = (endDate: string) => new Date(Date.parse(`${endDate}T00:00:00Z`) + DAY_MS);

/** Per project of the registry, usage against its current allocation, ordered by ProjectID. */
export async function usageSummary(q: Queryable, opts: UsageSummaryOptions): Promise<ProjectUsage[]> {
  const now = opts.now ?? new Date();
  const { rows } = await q.query<{
    project_id: string;
    grant_number: string;
    title: string | null;
    active: boolean | string;
    service_units: string;
    start_date: string | null;
    end_date: string | null;
    charged: string;
    recent: string;
  }>(
    `SELECT p.project_id, p.grant_number, p.title, p.active, p.service_units::text AS service_units,
            p.start_date::text AS start_date, p.end_date::text AS end_date,
            coalesce((SELECT sum(j.charge) FROM ${S}.reported_jobs j
                       WHERE j.project_id = p.project_id AND j.status = 'reported' AND j.charge_unit = $2
                         AND (p.start_date IS NULL OR j.end_time >= p.start_date::timestamp AT TIME ZONE 'UTC')
                         AND (p.end_date IS NULL OR j.end_time < (p.end_date + 1)::timestamp AT TIME ZONE 'UTC')),
                     0)::text AS charged,
            coalesce((SELECT sum(j.charge) FROM ${S}.reported_jobs j
                       WHERE j.project_id = p.project_id AND j.status = 'reported' AND j.charge_unit = $2
                         AND j.end_time >= $3::timestamptz - make_interval(days => $4) AND j.end_time < $3::timestamptz),
                     0)::text AS recent
       FROM ${S}.projects p
      WHERE $1::text IS NULL OR p.project_id = $1 OR p.grant_number = $1
      ORDER BY p.project_id`,
    [opts.project ?? null, opts.unit, now.toISOString(), RATE_DAYS],
  );
  const histories = await allocationActions(
    q,
    rows.map((r) => r.project_id),
  );
  return rows.map((r) => {
    const history = histories.get(r.project_id) ?? [];
    const opened = history.map((h) => h.allocationType).lastIndexOf('new');
    const renewed = history.map((h) => h.allocationType).lastIndexOf('renewal');
    const first = Math.max(opened, renewed);
    const allocated = Number(r.service_units);
    const charged = round(Number(r.charged), 6);
    const remaining = round(allocated - charged, 6);
    const chargedLast30Days = round(Number(r.recent), 6);
    const ratePerDay = round(chargedLast30Days / RATE_DAYS, 6);
    const usage: ProjectUsage = {
      projectId: r.project_id,
      grantNumber: r.grant_number,
      title: r.title,
      active: r.active === true || r.active === 't',
      unit: opts.unit,
      allocated,
      startDate: r.start_date,
      endDate: r.end_date,
      period: first >= 0 ? `h${history[first]!.historyId}` : `start:${r.start_date ?? ''}`,
      periodActions: (first >= 0 ? history.slice(first) : []).map(action),
      history: history.map(action),
      charged,
      remaining,
      percentUsed: allocated > 0 ? round((charged / allocated) * 100, 2) : null,
      chargedLast30Days,
      ratePerDay,
      ...project(now, allocated, remaining, chargedLast30Days / RATE_DAYS, r.start_date, r.end_date),
    };
    return usage;
  });
}

function project(
  now: Date,
  allocated: number,
  remaining: number,
  ratePerDay: number,
  startDate: string | null,
  endDate: string | null,
): { projectedExhaustion: string | null; projection: Projection } {
  const none = (projection: Projection) => ({ projectedExhaustion: null, projection });
  if (!(allocated > 0)) return none('no-allocation');
  if (remaining <= 0) return none('exhausted');
  const end = endDate ? endInstant(endDate) : null;
  if (end && now.getTime() >= end.getTime()) return none('period-ended');
  if (!(ratePerDay > 0)) return none('no-recent-usage');
  // A period that has not started yet starts being used on its start date.
  const from = Math.max(now.getTime(), startDate ? Date.parse(`${startDate}T00:00:00Z`) : 0);
  const at = new Date(from + (remaining / ratePerDay) * DAY_MS);
  if (end && at.getTime() >= end.getTime()) return none('after-end-date');
  return { projectedExhaustion: isoDay(at), projection: 'projected' };
}

type StoredAction = AllocationAction & { historyId: string };

const action = ({ historyId: _, ...a }: StoredAction): AllocationAction => a;

async function allocationActions(q: Queryable, projectIds: string[]): Promise<Map<string, StoredAction[]>> {
  const out = new Map<string, StoredAction[]>();
  if (projectIds.length === 0) return out;
  const { rows } = await q.query<{
    project_id: string;
    history_id: string;
    allocation_type: string;
    service_units: string | null;
    start_date: string | null;
    end_date: string | null;
    at: unknown;
  }>(
    `SELECT project_id, history_id::text AS history_id, allocation_type, service_units::text AS service_units,
            start_date::text AS start_date, end_date::text AS end_date, at
       FROM ${S}.allocation_history WHERE project_id = ANY($1::text[]) ORDER BY history_id`,
    [projectIds],
  );
  for (const r of rows) {
    const list = out.get(r.project_id) ?? [];
    list.push({
      historyId: r.history_id,
      allocationType: r.allocation_type,
      serviceUnits: r.service_units === null ? null : Number(r.service_units),
      startDate: r.start_date,
      endDate: r.end_date,
      at: r.at instanceof Date ? r.at.toISOString() : new Date(String(r.at)).toISOString(),
    });
    out.set(r.project_id, list);
  }
  return out;
}

/** One project's charged usage on one day (UTC), for charts. */
export interface DailyUsage {
  project: string;
  /** YYYY-MM-DD, UTC: the day the jobs ended. */
  day: string;
  charged: number;
}

/**
 * Charged usage per project and day, ordered by project then day; days without usage are left
 * out. `since`/`until` bound the jobs' end times ([since, until)); `unit` defaults to gpu-hours.
 */
export async function usageByDay(
  q: Queryable,
  opts: { project?: string; since?: Date; until?: Date; unit?: ChargeUnit } = {},
): Promise<DailyUsage[]> {
  const { rows } = await q.query<{ project_id: string; day: string; charged: string }>(
    `SELECT project_id, to_char(end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, sum(charge)::text AS charged
       FROM ${S}.reported_jobs
      WHERE status = 'reported' AND charge_unit = $1
        AND ($2::text IS NULL OR project_id = $2)
        AND ($3::timestamptz IS NULL OR end_time >= $3::timestamptz)
        AND ($4::timestamptz IS NULL OR end_time < $4::timestamptz)
      GROUP BY 1, 2
      ORDER BY 1, 2`,
    [
      opts.unit ?? 'gpu-hours',
      opts.project ?? null,
      opts.since?.toISOString() ?? null,
      opts.until?.toISOString() ?? null,
    ],
  );
  return rows.map((r) => ({ project: r.project_id, day: r.day, charged: round(Number(r.charged), 6) }));
}

/** The projection in words, for people (the table and the Slack message). */
export function describeProjection(u: ProjectUsage): string {
  switch (u.projection) {
    case 'projected':
      return `runs out on ${u.projectedExhaustion} at the last ${RATE_DAYS} days' rate`;
    case 'after-end-date':
      return `lasts past its end date (${u.endDate}) at the last ${RATE_DAYS} days' rate`;
    case 'no-recent-usage':
      return `no usage in the last ${RATE_DAYS} days`;
    case 'exhausted':
      return 'used up';
    case 'period-ended':
      return `allocation ended ${u.endDate}`;
    case 'no-allocation':
      return 'no allocation';
  }
}

/** Amounts for people: at most two decimals. */
export function formatAmount(n: number): string {
  return String(round(n, 2));
}

/** An aligned table's rows for `amie usage summary`. */
export function summaryRows(usage: readonly ProjectUsage[]): Array<Record<string, string>> {
  return usage.map((u) => ({
    project: u.projectId,
    period: `${u.startDate ?? '?'}..${u.endDate ?? '?'}`,
    allocation: u.periodActions.map((a) => a.allocationType).join('+') || '-',
    allocated: formatAmount(u.allocated),
    charged: formatAmount(u.charged),
    remaining: formatAmount(u.remaining),
    used: u.percentUsed === null ? '-' : `${u.percentUsed}%`,
    'per day': formatAmount(u.ratePerDay),
    'runs out': u.projectedExhaustion ?? `- (${describeProjection(u)})`,
  }));
}
