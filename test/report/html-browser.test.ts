import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomically } from '../../src/atomic-file.js';
import { openPglite, type Database } from '../../src/db/index.js';
import { generateReport, type ReportModel } from '../../src/report/index.js';
import { SITE } from '../helpers/amie.js';
import { hasChromium, launchChromium } from '../helpers/browser.js';
import { DEFER_REASON, HOSTILE_PI, HOSTILE_PROJECT, HOSTILE_USER, seedReportData } from './seed.js';

// The page as a reader sees it: opened from a file in headless Chromium with no network.
// The page and its screenshot stay in test-results/ for a person to look at.
const ARTIFACTS = resolve('test-results');
const PAGE = resolve(ARTIFACTS, 'report.html');
const SCREENSHOT = resolve(ARTIFACTS, 'report.png');
const CHARTS = ['packets-per-day', 'packets-by-type', 'usage'];

const available = hasChromium();

describe.skipIf(!available)('the status page in a real browser', () => {
  let db: Database;
  let model: ReportModel;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  const dialogs: string[] = [];
  const requests: string[] = [];
  let page: Awaited<ReturnType<typeof browser.context.newPage>>;

  beforeAll(async () => {
    db = await openPglite();
    await seedReportData(db);
    const report = await generateReport(
      db,
      { site: SITE, source: { kind: 'tables' }, handler: 'registry' },
      {
        days: 30,
        limit: 50,
      },
    );
    model = report.model;
    mkdirSync(ARTIFACTS, { recursive: true });
    await writeFileAtomically(PAGE, report.html);

    browser = await launchChromium();
    page = await browser.context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('request', (r) => {
      if (!r.url().startsWith('file:')) requests.push(r.url());
    });
    await page.goto(pathToFileURL(PAGE).href, { waitUntil: 'load' });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }, 240_000);
  afterAll(async () => {
    await browser?.close();
    await db?.close();
  });

  it('loads with no console error, no page error and no request beyond the file', () => {
    expect(consoleErrors).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(requests).toEqual([]);
  });

  it('shows every chart as an SVG with data marks', async () => {
    const charts = await page.$$eval('figure.chart', (figures) =>
      figures.map((f) => ({
        id: f.getAttribute('data-chart'),
        svgs: f.querySelectorAll('svg').length,
        marks: f.querySelectorAll('g.role-mark > path, g.role-mark > line').length,
        width: f.querySelector('svg')?.getBoundingClientRect().width ?? 0,
      })),
    );
    expect(charts.map((c) => c.id)).toEqual(CHARTS);
    for (const c of charts) {
      expect(c.svgs, c.id).toBe(1);
      expect(c.marks, c.id).toBeGreaterThan(0);
      expect(c.width, c.id).toBeGreaterThan(100);
    }
  });

  it('shows packet text as text: no script ran, no element came from it', async () => {
    expect(dialogs).toEqual([]);
    const found = {
      scripts: await page.locator('script').count(),
      images: await page.locator('img').count(),
      bold: await page.locator('b').allTextContents(),
      text: await page.locator('body').innerText(),
    };
    expect(found.scripts).toBe(0);
    expect(found.images).toBe(0);
    expect(found.bold).toEqual([]);
    for (const t of [HOSTILE_PI, HOSTILE_USER, HOSTILE_PROJECT, DEFER_REASON]) expect(found.text).toContain(t);
  });

  it('says when it was generated', async () => {
    const generated = page.locator('#generated');
    expect(await generated.getAttribute('datetime')).toBe(model.generatedAt.toISOString());
    expect(await generated.innerText()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  });
});
