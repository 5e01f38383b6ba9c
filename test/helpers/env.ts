/**
 * Which outside services the tests may use. A test that needs one runs when the
 * environment provides it and is skipped otherwise, with the reason in its name.
 * CI sets AMIE_TEST_REQUIRE_SERVICES=1, which turns every such skip into a failure.
 */
export const PG_URL = process.env.AMIE_TEST_DATABASE_URL || '';
export const REQUIRE_SERVICES = process.env.AMIE_TEST_REQUIRE_SERVICES === '1';

/** Throws (failing the suite) when a service is required but missing; otherwise returns whether it is there. */
export function serviceAvailable(name: string, available: boolean, howToEnable: string): boolean {
  if (!available && REQUIRE_SERVICES) {
    throw new Error(`${name} is required (AMIE_TEST_REQUIRE_SERVICES=1) but not available: ${howToEnable}`);
  }
  if (!available && !warned.has(name)) {
    warned.add(name);
    console.warn(`[amie tests] skipping ${name} tests: ${howToEnable}`);
  }
  return available;
}
const warned = new Set<string>();

export const hasPostgres = () =>
  serviceAvailable('PostgreSQL server', PG_URL !== '', 'set AMIE_TEST_DATABASE_URL=postgres://user@host:port/db');

/** Title suffix that tells a reader of the test report why a test did not run. */
export const pgSkipNote = PG_URL ? '' : ' [skipped: no AMIE_TEST_DATABASE_URL]';
