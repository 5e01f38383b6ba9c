/**
 * A real browser for the tests that need one: Debian's chromium package, driven through
 * playwright-core (which downloads no browser of its own). Skipped when it is not installed,
 * unless AMIE_TEST_REQUIRE_SERVICES=1 (see env.ts).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { serviceAvailable } from './env.js';

export const CHROMIUM = process.env.AMIE_TEST_CHROMIUM || '/usr/bin/chromium';

export const hasChromium = () =>
  serviceAvailable(
    'Chromium',
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) or set AMIE_TEST_CHROMIUM`,
  );

/** Headless Chromium with a new, empty profile and nothing that reaches the network on its own. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'amie-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
