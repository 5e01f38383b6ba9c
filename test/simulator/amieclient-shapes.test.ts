/**
 * What XSEDE's Python amieclient shows of the real ACCESS services, held against the simulator,
 * the REST source and the Usage API client: the shapes of answers, what a reply may leave to the
 * server, central's ITC answered over REST, failed usage records with ids that can be cleared.
 */
import { describe, expect, it } from 'vitest';
import { parseRestPacket, toRestPacketJson } from '../../src/sources/rest-json.js';
import { RAC_PACKET, RPC_PACKET } from '../fixtures/rest-packets.js';

/** Sorts object keys all the way down, so two JSON values compare without regard to key order. */
function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sortedKeys(x)]));
  return v;
}

describe('[13.5] packet JSON round trip', () => {
  it('[13.5] a fixture-shaped packet goes JSON -> packet -> JSON unchanged except key order, null states included', () => {
    for (const json of [RAC_PACKET, RPC_PACKET]) {
      const again = toRestPacketJson(parseRestPacket(structuredClone(json)));
      expect(sortedKeys(JSON.parse(JSON.stringify(again)))).toEqual(sortedKeys(json));
    }
    const again = toRestPacketJson(parseRestPacket(structuredClone(RAC_PACKET)));
    // amieclient's Packet.from_dict reads header['transaction_state'] and header['packet_state'] with no default.
    expect(again.header).toHaveProperty('packet_state', null);
    expect(again.header).toHaveProperty('transaction_state', 'in-progress');
    const noStates = toRestPacketJson({ ...parseRestPacket(structuredClone(RAC_PACKET)), transactionState: null });
    expect(Object.keys(noStates.header)).toEqual(expect.arrayContaining(['transaction_state', 'packet_state']));
  });
});
