import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ChargeRuleError,
  chargeJob,
  checkChargeRule,
  isSacctSkip,
  parseSacctLine,
  parseSacctStream,
  roundCharge,
  type ChargeRule,
  type SacctJob,
} from '../../src/usage/index.js';

/** A finished job as sacct would print it; only the charging inputs vary. */
function job(o: { elapsed: number; nodes?: number; cpus?: number; tres?: string; partition?: string }): SacctJob {
  const line = [
    '5001',
    '5001',
    'delta',
    'alice',
    'abc123',
    o.partition ?? 'gpuA',
    'COMPLETED',
    '2024-03-01T10:00:00',
    '2024-03-01T10:00:00',
    '2024-03-01T12:00:00',
    '02:00:00',
    String(o.elapsed),
    String(o.nodes ?? 1),
    String(o.cpus ?? 16),
    o.tres ?? 'billing=24,cpu=16,gres/gpu=2,mem=16G,node=1',
  ].join('|');
  const j = parseSacctLine(line);
  if (isSacctSkip(j)) throw new Error(j.skip);
  return j;
}

const twoHours = job({ elapsed: 7200, nodes: 2, cpus: 16 });

describe('chargeJob units', () => {
  it('gpu-hours: elapsed hours × allocated GPUs', () => {
    expect(chargeJob(twoHours, { unit: 'gpu-hours' })).toEqual({ charge: 4 });
  });
  it('gpu-hours counts typed GPUs when only typed counts are given', () => {
    expect(chargeJob(job({ elapsed: 3600, tres: 'cpu=8,gres/gpu:a100=3,node=1' }), { unit: 'gpu-hours' })).toEqual({
      charge: 3,
    });
  });
  it('cpu-hours: elapsed hours × NCPUS', () => {
    expect(chargeJob(twoHours, { unit: 'cpu-hours' })).toEqual({ charge: 32 });
  });
  it('node-hours: elapsed hours × NNodes', () => {
    expect(chargeJob(twoHours, { unit: 'node-hours' })).toEqual({ charge: 4 });
  });
  it('billing: elapsed hours × the billing TRES (billing-hours)', () => {
    expect(chargeJob(twoHours, { unit: 'billing' })).toEqual({ charge: 48 });
  });
  it('charges a job of more than a day by ElapsedRaw', () => {
    expect(chargeJob(job({ elapsed: 93784, tres: 'gres/gpu=1' }), { unit: 'gpu-hours' })).toEqual({
      charge: 26.051111,
    });
  });
});

describe('partition multipliers', () => {
  const rule: ChargeRule = { unit: 'gpu-hours', partitionMultipliers: { gpuA: 1.5, 'gpu-debug': 0.25 } };
  it('multiplies by the job partition and leaves unlisted partitions at 1', () => {
    expect(chargeJob(twoHours, rule)).toEqual({ charge: 6 });
    expect(chargeJob(job({ elapsed: 7200, partition: 'gpu-debug' }), rule)).toEqual({ charge: 1 });
    expect(chargeJob(job({ elapsed: 7200, partition: 'gpuH' }), rule)).toEqual({ charge: 4 });
  });
  it('a multiplier of 0 makes a free partition, skipped like any zero charge', () => {
    const free: ChargeRule = { unit: 'gpu-hours', partitionMultipliers: { gpuA: 0 } };
    expect(chargeJob(twoHours, free)).toEqual({ skip: 'zero charge (partition gpuA has multiplier 0)' });
    expect(chargeJob(twoHours, { ...free, includeZeroCharge: true })).toEqual({ charge: 0 });
  });
});

describe('rounding', () => {
  it('rounds half-up to 6 decimals by default', () => {
    // 1 s on 1 GPU = 0.000277777... GPU-hours
    expect(chargeJob(job({ elapsed: 1, tres: 'gres/gpu=1' }), { unit: 'gpu-hours' })).toEqual({ charge: 0.000278 });
    // 9 s = 0.0025 h exactly: half-up at 3 decimals
    expect(chargeJob(job({ elapsed: 9, tres: 'gres/gpu=1' }), { unit: 'gpu-hours', decimals: 3 })).toEqual({
      charge: 0.003,
    });
  });
  it('honours decimals, including whole units', () => {
    const j = job({ elapsed: 5400, tres: 'gres/gpu=1' }); // 1.5 h
    expect(chargeJob(j, { unit: 'gpu-hours', decimals: 0 })).toEqual({ charge: 2 });
    expect(chargeJob(j, { unit: 'gpu-hours', decimals: 2, partitionMultipliers: { gpuA: 1 / 3 } })).toEqual({
      charge: 0.5,
    });
  });
  it('rounds decimal halves up although binary floating point stores them just below', () => {
    expect(roundCharge(1.005, 2)).toBe(1.01);
    expect(roundCharge(1.0000005)).toBe(1.000001);
    expect(roundCharge(2.675, 2)).toBe(2.68);
    expect(roundCharge(0.1 + 0.2, 6)).toBe(0.3);
  });
  it('a charge that rounds to zero is skipped, saying so', () => {
    expect(chargeJob(job({ elapsed: 1, tres: 'gres/gpu=1' }), { unit: 'gpu-hours', decimals: 3 })).toEqual({
      skip: 'zero charge (below 0.001 gpu-hours after rounding to 3 decimals)',
    });
  });
});

describe('zero charges', () => {
  it('skips jobs without GPUs under gpu-hours, with the reason', () => {
    expect(chargeJob(job({ elapsed: 7200, tres: 'billing=16,cpu=16,mem=16G,node=1' }), { unit: 'gpu-hours' })).toEqual({
      skip: 'zero charge (no GPUs)',
    });
  });
  it('skips zero-length jobs', () => {
    expect(chargeJob(job({ elapsed: 0 }), { unit: 'gpu-hours' })).toEqual({ skip: 'zero charge (zero elapsed time)' });
  });
  it('skips jobs without a billing TRES under billing', () => {
    expect(chargeJob(job({ elapsed: 60, tres: 'cpu=1,node=1' }), { unit: 'billing' })).toEqual({
      skip: 'zero charge (no billing TRES)',
    });
  });
  it('includes them with charge 0 when includeZeroCharge is set', () => {
    const rule: ChargeRule = { unit: 'gpu-hours', includeZeroCharge: true };
    expect(chargeJob(job({ elapsed: 7200, tres: 'cpu=16,node=1' }), rule)).toEqual({ charge: 0 });
    expect(chargeJob(job({ elapsed: 0 }), rule)).toEqual({ charge: 0 });
  });
  it('counts the skipped jobs of a sacct run by reason', async () => {
    const lines = readFileSync(fileURLToPath(new URL('./fixtures/sacct-odd.txt', import.meta.url)), 'utf8').split('\n');
    const skipped = new Map<string, number>();
    let total = 0;
    for await (const r of parseSacctStream(lines)) {
      if (isSacctSkip(r)) continue;
      const c = chargeJob(r, { unit: 'gpu-hours' });
      if ('skip' in c) skipped.set(c.skip, (skipped.get(c.skip) ?? 0) + 1);
      else total += c.charge;
    }
    expect(Object.fromEntries(skipped)).toEqual({
      'zero charge (no GPUs)': 5, // 200+0, 302, 304, 305, 4502
      'zero charge (zero elapsed time)': 1, // 306
    });
    // 1001: 4, 123_4: 0.5, 200+1: 4, 303: 1.5, 307: 2, 308: 1, 309: 2, 310: 1, 4501: 26.051111
    expect(roundCharge(total)).toBe(42.051111);
  });
});

describe('rule checking', () => {
  it('names every bad key', () => {
    const bad = {
      unit: 'gpu-days',
      decimals: 1.5,
      partitionMultipliers: { gpuA: -1, gpuB: Number.NaN },
    } as unknown as ChargeRule;
    expect(checkChargeRule(bad)).toEqual([
      'unit: "gpu-days" is not one of gpu-hours, cpu-hours, node-hours, billing',
      'decimals: 1.5 must be a whole number from 0 to 12',
      'partitionMultipliers.gpuA: -1 must be a number >= 0',
      'partitionMultipliers.gpuB: NaN must be a number >= 0',
    ]);
    expect(() => chargeJob(twoHours, bad)).toThrow(ChargeRuleError);
    expect(() => chargeJob(twoHours, bad)).toThrow(/charge rule: unit: "gpu-days"/);
    expect(checkChargeRule({ unit: 'billing', decimals: 0, partitionMultipliers: { a: 0, b: 2 } })).toEqual([]);
  });
});
