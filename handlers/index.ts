/**
 * The handlers that ship with the toolkit, registered under the names the config's
 * `handler:` key uses. Each is loaded only when a config names it.
 */
import { registerBuiltinHandler } from '../src/dispatch/load.js';

registerBuiltinHandler('registry', async () => (await import('./registry.js')).RegistryHandler);
registerBuiltinHandler('slurm', async () => (await import('./slurm.js')).SlurmHandler);

export {};
