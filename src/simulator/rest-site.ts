/**
 * The site's side of a simulation over HTTP: the packet source a site configures with
 * `source: {kind: rest, url, apiKeyEnv}`, pointed at the REST simulator, and the stand-in for a
 * site that runs as another process (`amie process --watch`) polling the simulator on its own.
 */
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import { createSource, type PacketSource } from '../sources/index.js';
import type { RestSimulator } from './http.js';
import type { SiteRunner } from './scenarios.js';

/** The environment variable the printed configuration names for the simulator's API key. */
export const SIMULATOR_KEY_ENV = 'AMIE_REST_API_KEY';

/**
 * The REST source a site configured for `sim` would get, keeping its books in `siteDb`. Built
 * through the same `createSource` as `amie process`, so the simulation tests the site's real path.
 */
export function restSourceFor(
  sim: RestSimulator,
  apiKey: string,
  siteDb: Database,
  log: Logger,
  opts: { dryRun?: boolean } = {},
): PacketSource {
  return createSource(
    {
      site: { name: sim.siteName, resource: sim.resource, remoteSite: sim.remoteSiteName },
      source: { kind: 'rest', url: sim.amieUrl, apiKeyEnv: SIMULATOR_KEY_ENV },
    },
    siteDb,
    log,
    { dryRun: opts.dryRun, env: { [SIMULATOR_KEY_ENV]: apiKey } },
  );
}

/**
 * A site that is another process: central only waits `pollMs` between its passes, so
 * `maxRounds × pollMs` is how long it waits for each reply. Once `signal` aborts, every pass
 * throws, which ends the scenarios at once.
 */
export function remoteSite(pollMs: number, signal?: AbortSignal): SiteRunner {
  return {
    async runOnce() {
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          clearTimeout(timer);
          reject(new Error('the simulator was stopped'));
        };
        const timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }, pollMs);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      return { results: [] };
    },
  };
}
