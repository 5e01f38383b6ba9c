/**
 * The REST servers tests talk to, and what they send them. The REST simulator: without a database
 * of its own choosing, central plays in a copy of the run's initialised embedded database (see
 * db.ts) instead of a new one, which would spend seconds in initdb; stop() closes it with the
 * server. The fake AMIE REST API (test/sources/fake-amie-rest.ts), one for every test that needs
 * one. A compute record as the Usage API gets it.
 */
import { afterEach, beforeEach } from 'vitest';
import type { Logger } from '../../src/log.js';
import { RestSimulator, type RestSimulatorOptions } from '../../src/simulator/http.js';
import type { ComputeRecord } from '../../src/usage/api-client.js';
import { FakeAmieRest } from '../sources/fake-amie-rest.js';
import { SITE, capturedLog } from './amie.js';
import { freshPgliteDatabase, type DriverCase } from './db.js';

/** The four official scenarios, in the order they play, written out rather than taken from the code under test. */
export const OFFICIAL = [
  'request_project_reactivate',
  'request_account_reactivate',
  'request_person_merge',
  'request_user_modify',
];

/** The REST simulator on loopback, central in its own copy of the initialised embedded database unless `opts.db`. */
export async function startRestSimulator(opts: RestSimulatorOptions): Promise<RestSimulator> {
  if (opts.db) return RestSimulator.start(opts);
  const central = await freshPgliteDatabase({ init: true });
  let sim: RestSimulator;
  try {
    sim = await RestSimulator.start({ ...opts, db: central.db });
  } catch (err) {
    await central.cleanup();
    throw err;
  }
  const stop = sim.stop.bind(sim);
  sim.stop = async () => {
    try {
      await stop();
    } finally {
      await central.cleanup();
    }
  };
  return sim;
}

/** The fake AMIE REST API and a captured debug log (see capturedLog) of the test running now. */
export interface EachTestRestApi {
  readonly api: FakeAmieRest;
  readonly log: Logger;
  readonly lines: string[];
}

/**
 * Gives every test of the enclosing describe block its own fake AMIE REST API, closed after the
 * test, and a fresh captured log; nothing when the driver is not available (its tests are skipped).
 */
export function restApiEachTest(driver: DriverCase): EachTestRestApi {
  let api: FakeAmieRest | undefined;
  let captured: ReturnType<typeof capturedLog> | undefined;
  beforeEach(async () => {
    if (!driver.available) return;
    api = await FakeAmieRest.start();
    captured = capturedLog();
  });
  afterEach(async () => {
    await api?.close();
  });
  const open = () => {
    if (!api || !captured) throw new Error(`no fake AMIE REST API is running here (${driver.name})`);
    return { api, ...captured };
  };
  return {
    get api() {
      return open().api;
    },
    get log() {
      return open().log;
    },
    get lines() {
      return open().lines;
    },
  };
}

/** Compute record `i` for the Usage API (LocalRecordID 1000 + i): alice's hour of 2024-03-01 on p-abc123; `extra` over it. */
export function computeRecord(i: number, extra: Partial<ComputeRecord> = {}): ComputeRecord {
  return {
    Username: 'alice',
    LocalProjectID: 'p-abc123',
    LocalRecordID: String(1000 + i),
    Resource: SITE.resource,
    SubmitTime: '2024-03-01T10:00:00Z',
    StartTime: '2024-03-01T10:00:05Z',
    EndTime: '2024-03-01T11:00:05Z',
    Charge: 1,
    Attributes: { NodeCount: 1 },
    ...extra,
  };
}
