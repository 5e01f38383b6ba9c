/**
 * What a finished job costs its project. Every unit is a rate over the job's
 * elapsed wall time in hours:
 *
 * - `gpu-hours` (default): ElapsedRaw / 3600 × allocated gres/gpu
 * - `cpu-hours`:           ElapsedRaw / 3600 × NCPUS
 * - `node-hours`:          ElapsedRaw / 3600 × NNodes
 * - `billing`:             ElapsedRaw / 3600 × the billing TRES (billing-hours, so
 *                          TRESBillingWeights set in slurm.conf carry through)
 *
 * then × the partition's multiplier (1 when not listed), then rounded half-up to
 * `decimals` places (default 6). A job whose charge is zero after rounding is
 * skipped with the reason unless `includeZeroCharge` is set.
 */
import type { SacctJob } from './sacct.js';

export type ChargeUnit = 'gpu-hours' | 'cpu-hours' | 'node-hours' | 'billing';
export const CHARGE_UNITS: readonly ChargeUnit[] = ['gpu-hours', 'cpu-hours', 'node-hours', 'billing'];

export const DEFAULT_CHARGE_DECIMALS = 6;

export interface ChargeRule {
  unit: ChargeUnit;
  /** Partition name → factor on the charge; partitions not listed count 1. */
  partitionMultipliers?: Record<string, number>;
  /** Charges are rounded half-up to this many decimals; default 6. */
  decimals?: number;
  /** Report jobs that cost nothing (no GPUs, zero length) instead of skipping them; default false. */
  includeZeroCharge?: boolean;
}

export type ChargeResult = { charge: number } | { skip: string };

/** A charge rule that cannot be applied; the message names the key to fix. */
export class ChargeRuleError extends Error {
  override name = 'ChargeRuleError';
}

/** Every problem with a rule, each naming its key; empty when the rule is usable. */
export function checkChargeRule(rule: ChargeRule): string[] {
  const problems: string[] = [];
  if (!CHARGE_UNITS.includes(rule.unit)) {
    problems.push(`unit: "${String(rule.unit)}" is not one of ${CHARGE_UNITS.join(', ')}`);
  }
  if (rule.decimals !== undefined && !(Number.isInteger(rule.decimals) && rule.decimals >= 0 && rule.decimals <= 12)) {
    problems.push(`decimals: ${String(rule.decimals)} must be a whole number from 0 to 12`);
  }
  for (const [partition, m] of Object.entries(rule.partitionMultipliers ?? {})) {
    if (typeof m !== 'number' || !Number.isFinite(m) || m < 0) {
      problems.push(`partitionMultipliers.${partition}: ${String(m)} must be a number >= 0`);
    }
  }
  return problems;
}

const checked = new WeakSet<ChargeRule>();

function assertRule(rule: ChargeRule): void {
  if (checked.has(rule)) return;
  const problems = checkChargeRule(rule);
  if (problems.length > 0) throw new ChargeRuleError(`charge rule: ${problems.join('; ')}`);
  checked.add(rule);
}

/** Half-up rounding of a non-negative amount that survives binary fractions (1.0000005 → 1.000001). */
export function roundCharge(amount: number, decimals: number = DEFAULT_CHARGE_DECIMALS): number {
  const scale = 10 ** decimals;
  // toPrecision(15) drops the last-bit error of the multiplication before rounding.
  return Math.round(Number((amount * scale).toPrecision(15))) / scale;
}

function quantity(job: SacctJob, unit: ChargeUnit): { count: number; none: string } {
  switch (unit) {
    case 'gpu-hours':
      return { count: job.gpus, none: 'no GPUs' };
    case 'cpu-hours':
      return { count: job.cpus, none: 'no CPUs' };
    case 'node-hours':
      return { count: job.nodes, none: 'no nodes' };
    case 'billing':
      return { count: job.tres.billing ?? 0, none: 'no billing TRES' };
  }
}

export function chargeJob(job: SacctJob, rule: ChargeRule): ChargeResult {
  assertRule(rule);
  const decimals = rule.decimals ?? DEFAULT_CHARGE_DECIMALS;
  const { count, none } = quantity(job, rule.unit);
  // The partition comes from sacct: only the config's own keys count (not `constructor` and kin).
  const multipliers = rule.partitionMultipliers;
  const multiplier = multipliers && Object.hasOwn(multipliers, job.partition) ? multipliers[job.partition]! : 1;
  const charge = roundCharge((job.elapsedSeconds / 3600) * count * multiplier, decimals);
  if (charge > 0 || rule.includeZeroCharge) return { charge };

  let why: string;
  if (count === 0) why = none;
  else if (job.elapsedSeconds === 0) why = 'zero elapsed time';
  else if (multiplier === 0) why = `partition ${job.partition} has multiplier 0`;
  else why = `below ${10 ** -decimals} ${rule.unit} after rounding to ${decimals} decimals`;
  return { skip: `zero charge (${why})` };
}
