import { readSecretEnv, type AmieConfig } from '../config/index.js';
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import { AmieRestClient } from './rest-client.js';
import { RestSource } from './rest.js';
import { TablesSource } from './tables.js';
import type { PacketSource } from './types.js';

export * from './types.js';
export { TablesSource } from './tables.js';
export { RestSource, RestDeliveryError, type RestSourceOptions } from './rest.js';
export {
  AmieRestClient,
  AmieRestError,
  type AmieRestClientOptions,
  type PacketFilters,
  type PacketListing,
} from './rest-client.js';
export {
  RestPacketError,
  parseRestPacket,
  parseReplyPacket,
  toRestPacketJson,
  replyPacketJson,
  claimedFromRest,
  packetListOf,
  postedPacketRecId,
  type RestPacket,
  type RestPacketJson,
  type RestPacketHeaderJson,
  type RestReply,
} from './rest-json.js';
export { REST_SOURCE_MIGRATION } from '../store/rest-schema.js';

/**
 * The packet source the configuration names: the AMIE tables of `db` (`source.kind: tables`, the
 * default) or the ACCESS REST API (`source.kind: rest`), whose API key is read from the environment
 * variable `source.apiKeyEnv` (a ConfigError naming it when unset).
 */
export function createSource(
  config: Pick<AmieConfig, 'site' | 'source'>,
  db: Database,
  log: Logger,
  opts: { dryRun?: boolean; env?: NodeJS.ProcessEnv } = {},
): PacketSource {
  const source = config.source ?? { kind: 'tables' };
  if (source.kind === 'tables') return new TablesSource(db, log);
  const apiKey = readSecretEnv('source.apiKeyEnv', source.apiKeyEnv, opts.env ?? process.env);
  const client = new AmieRestClient({
    url: source.url,
    site: source.site ?? config.site.name,
    apiKey,
    timeoutMs: source.timeoutMs,
    retries: source.retries,
    maxResponseBytes: source.maxResponseBytes,
    allowInsecureHttp: source.allowInsecureHttp,
    onRetry: (info) =>
      log.warn(
        { request: info.request, attempt: info.attempt, wait_ms: info.waitMs, reason: info.reason },
        'AMIE REST API call failed; retrying',
      ),
  });
  return new RestSource(db, client, log, { dryRun: opts.dryRun, clientState: source.clientState });
}
