/**
 * The REST simulator for tests. Without a database of its own choosing, central plays in a
 * copy of the run's initialised embedded database (see db.ts) instead of a new one, which
 * would spend seconds in initdb; stop() closes it with the server.
 */
import { RestSimulator, type RestSimulatorOptions } from '../../src/simulator/http.js';
import { freshPgliteDatabase } from './db.js';

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
