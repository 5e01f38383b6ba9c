import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlurmDifference, SlurmDrift } from '../../src/slurm/check.js';
import { escapeHtml, generateReport, renderCharts, type ReportModel } from '../../src/report/index.js';
import { databaseEachTest, driverCase, driverCases, type TestDatabase } from '../helpers/db.js';
import { SITE } from '../helpers/amie.js';
import { tryRunLock } from '../../src/store/index.js';
import { DEFER_REASON, HOSTILE_PI, HOSTILE_PROJECT, HOSTILE_USER, seedReportData, type SeededReport } from './seed.js';

const CONFIG = { site: SITE, source: { kind: 'tables' as const }, handler: 'registry' };

describe('escapeHtml, the one way database text reaches the page', () => {
  it('turns markup characters into entities and control characters into visible escapes', () => {
    expect(escapeHtml('<script>alert(1)</script>')).toBe('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(escapeHtml(`O'Neil & "Sons"`)).toBe('O&#39;Neil &amp; &quot;Sons&quot;');
    expect(escapeHtml('a\u202eb\u001b[2J')).toBe('a\\u202eb\\u001b[2J');
    expect(escapeHtml(null)).toBe('');
    expect(escapeHtml(42)).toBe('42');
  });
});

describe("Vega's SVG", () => {
  it('carries data text only escaped (labels, legends and ARIA descriptions)', async () => {
    const hostile = `<script>alert(1)</script> & "q" 'x'`;
    const svgs = await renderCharts([
      {
        id: 't',
        title: 't',
        spec: {
          data: { values: [{ k: hostile, n: 3 }] },
          mark: 'bar',
          encoding: {
            y: { field: 'k', type: 'nominal' },
            x: { field: 'n', type: 'quantitative' },
            color: { field: 'k', type: 'nominal' },
          },
        },
      },
    ]);
    const svg = svgs.get('t')!;
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain('&lt;script&gt;');
    expect(svg).not.toMatch(/<script/i);
    expect(svg).not.toContain('"q"');
  });
});

describe.each(driverCases())('the status page on $name', (driver) => {
  let t: TestDatabase;
  let seeded: SeededReport;
  let model: ReportModel;
  let html: string;
  beforeAll(async () => {
    if (!driver.available) return;
    t = await driver.open();
    seeded = await seedReportData(t.db);
    ({ model, html } = await generateReport(t.db, CONFIG, { days: 30, limit: 50 }));
  }, 240_000);
  afterAll(() => t?.cleanup());

  it.skipIf(!driver.available)('counts the packets of each day by type and outcome', () => {
    const today = new Date().toISOString().slice(0, 10);
    expect(model.packetsPerDay.every((p) => p.day === today)).toBe(true);
    const outcomes = new Set(model.packetsPerDay.map((p) => p.outcome));
    for (const o of ['reply', 'invalid', 'fail', 'defer']) expect(outcomes).toContain(o);
    const rpcReplies = model.packetsPerDay.find((p) => p.type === 'request_project_create' && p.outcome === 'reply');
    expect(rpcReplies?.packets).toBeGreaterThanOrEqual(2);
  });

  it.skipIf(!driver.available)('lists the stuck packet with its reason and subject, and the pending figures', () => {
    expect(model.status.pending).toBe(1);
    expect(model.stuck).toHaveLength(1);
    expect(model.stuck[0]).toMatchObject({
      packetRecId: seeded.stuckPacketRecId,
      type: 'request_account_create',
      lastOutcome: 'defer',
      lastReason: DEFER_REASON,
    });
    expect(model.stuck[0]!.subject).toContain(HOSTILE_USER);
  });

  it.skipIf(!driver.available)('lists the failures with their reasons, newest first', () => {
    expect(model.failureCount).toBe(2);
    expect(model.failures.map((f) => f.outcome)).toEqual(['fail', 'invalid']);
    const refused = model.failures[0]!;
    expect(refused.packetRecId).toBe(seeded.failedPacketRecId);
    expect(refused.reason).toContain('TG-NOSUCH');
    expect(refused.subject).toContain(HOSTILE_PI);
    expect(refused.subject).toContain(HOSTILE_PROJECT);
  });

  it.skipIf(!driver.available)('sums the usage of each project since its allocation started', () => {
    const usage = model.usage!;
    for (const [project, used] of seeded.used) {
      const p = usage.projects.find((x) => x.projectId === project)!;
      expect(p.used).toBe(used);
      expect(p.allocation).toBe(seeded.allocation.get(project));
      expect(p.series.at(-1)!.used).toBe(used);
      expect(p.series.map((s) => s.used)).toEqual([...p.series.map((s) => s.used)].sort((a, b) => a - b));
    }
    expect(usage.unreported).toEqual({ pending: 1, failed: 1 });
    // In the configured charge unit (none configured: gpu-hours), with amie usage summary's outlook.
    expect(usage.unit).toBe('gpu-hours');
    const over = usage.projects.find((p) => p.used >= p.allocation)!;
    expect(over.runsOut).toBe('used up');
  });

  it.skipIf(!driver.available)('says drift is not available for a handler other than slurm', () => {
    expect(model.drift).toBeNull();
    expect(model.notAvailable.drift).toMatch(/slurm handler/);
  });

  it.skipIf(!driver.available)('is one page with every chart, no script, and packet text escaped', () => {
    expect(html).toMatch(/^<!DOCTYPE html>/);
    for (const id of ['packets-per-day', 'packets-by-type', 'usage']) expect(html).toContain(`data-chart="${id}"`);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<img/i);
    expect(html).not.toMatch(/\b(src|href)=["']?(https?:)?\/\//i);
    expect(html).toContain(escapeHtml(HOSTILE_PI));
    expect(html).toContain(escapeHtml(HOSTILE_USER));
    expect(html).toContain(escapeHtml(DEFER_REASON));
    expect(html).toContain(`datetime="${model.generatedAt.toISOString()}"`);
    expect(html).toContain('Not available: only for the slurm handler');
  });
});

describe('the status page over the REST source', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('reads stuck and failed packets, and whom they are about, from the REST source tables', async () => {
    const packet = (first: string) =>
      JSON.stringify({
        type: 'request_account_create',
        body: { UserFirstName: first, UserLastName: 'Doe', ProjectID: 'p-1' },
      });
    await t.db.query(
      `INSERT INTO amie_toolkit.rest_packets (packet_rec_id, trans_rec_id, type_id, packet, state)
       VALUES (501, 9001, 16, $1, 'pending'), (502, 9002, 16, $2, 'completed')`,
      [packet(HOSTILE_PI), packet('Ann')],
    );
    await t.db.query(
      `INSERT INTO amie_toolkit.audit (source, run_id, packet_rec_id, trans_rec_id, packet_type, outcome, reason)
       VALUES ('rest', 'r1', 501, 9001, 'request_account_create', 'defer', 'later'),
              ('rest', 'r1', 502, 9002, 'request_account_create', 'fail', 'no such project'),
              ('tables', 'r1', 502, 9002, 'request_account_create', 'fail', 'another source')`,
    );
    const source = { kind: 'rest', url: 'https://amie.example.org/', apiKeyEnv: 'AMIE_KEY' } as const;
    const { model, html } = await generateReport(
      t.db,
      { site: SITE, source, handler: 'registry' },
      { days: 7, limit: 10 },
    );
    expect(model.source).toBe('rest');
    expect(model.stuck).toMatchObject([{ packetRecId: 501, lastOutcome: 'defer', subject: `${HOSTILE_PI} Doe, p-1` }]);
    expect(model.failures).toMatchObject([{ packetRecId: 502, reason: 'no such project', subject: 'Ann Doe, p-1' }]);
    expect(model.failureCount).toBe(1);
    expect(model.usage).toBeNull();
    expect(html).toContain('Not available: no project is in the registry.');
    expect(html).toContain('unsent REST replies');
    expect(html).not.toMatch(/<script/i);
  });
});

describe('the status page while a run is at work', () => {
  const t = databaseEachTest(driverCase('pglite'));

  it('says so beside the last pass when a run of the configuration holds its run lock', async () => {
    const before = await generateReport(t.db, CONFIG, { days: 7, limit: 10 });
    expect(before.model.status.runInProgress).toBe(false);
    expect(before.html).not.toContain('a run is at work');
    // The one session of the embedded database holds it, as the run would.
    expect(await tryRunLock(t.db, SITE)).toBe(true);
    const { model, html } = await generateReport(t.db, CONFIG, { days: 7, limit: 10 });
    expect(model.status.runInProgress).toBe(true);
    expect(html).toContain('last amie process pass; a run is at work');
    // Another configuration's run is not this one's.
    const other = await generateReport(
      t.db,
      { ...CONFIG, site: { ...SITE, resources: [SITE.resource, 'other.example.org'] } },
      { days: 7, limit: 10 },
    );
    expect(other.model.status.runInProgress).toBe(false);
  });
});

describe('the drift section (amie slurm check)', () => {
  const t = databaseEachTest(driverCase('pglite'));

  const difference = (kind: SlurmDifference['kind'], project: string): SlurmDifference => ({
    project,
    slurmAccount: project,
    cluster: 'c1',
    kind,
    detail: `${kind} of <b>${project}</b>`,
    user: null,
    fix: [],
  });

  it('counts the differences by kind and charts them', async () => {
    const drift: SlurmDrift = {
      differences: [difference('allocation', 'p1'), difference('user-missing', 'p1'), difference('allocation', 'p2')],
      foreign: [],
      checked: { projects: 2, accounts: 2, logins: 1, clusters: ['c1'] },
    };
    const { model, html } = await generateReport(t.db, CONFIG, {
      days: 7,
      limit: 10,
      drift: () => Promise.resolve(drift),
    });
    expect(model.drift?.counts).toEqual([
      { kind: 'allocation', count: 2 },
      { kind: 'user-missing', count: 1 },
    ]);
    expect(html).toContain('3 difference(s) between the registry and Slurm');
    expect(html).toContain('data-chart="drift"');
  });

  it('says why the section is missing when Slurm cannot be asked, and still writes the page', async () => {
    const drift = () => Promise.reject(new Error('sacctmgr show assoc: <unreachable>'));
    const { model, html } = await generateReport(t.db, CONFIG, { days: 7, limit: 10, drift });
    expect(model.drift).toBeNull();
    expect(html).toContain('amie slurm check failed: sacctmgr show assoc: &lt;unreachable&gt;');
  });
});
