import { z } from 'zod';
import { once } from '../config/lazy-section.js';
import { insecureUrlProblem } from '../http.js';
import { CHARGE_UNITS, type ChargeRule, type ChargeUnit } from './charge.js';
import { USAGE_SINKS } from './sinks/types.js';

/**
 * The `usage:` section of the configuration. Kept here, beside the reporter that reads it;
 * the config schema only mounts it. (It cannot borrow helpers from src/config/schema.ts,
 * which imports this file.)
 */

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export { USAGE_SINKS, type UsageSinkName } from './sinks/types.js';

/** The Usage API refuses bodies over 1024 KiB; half of that leaves room for any proxy's own limit. */
export const DEFAULT_BATCH_BYTES = 512 * 1024;

/**
 * The section's schemas, built on first use: a configuration without `usage:` never builds them
 * (see lazySection), and cron pays for every schema built at start-up.
 */
function buildSchemas() {
  const usageApi = z
    .strictObject({
      /** Base URL of the Usage API; `usage/` is appended. */
      url: z.url({
        protocol: /^https?$/,
        error: 'expected an http(s) URL of the Usage API, e.g. https://usage.example.org/api/',
      }),
      /** Environment variable holding the XA-API-KEY; the key never sits in the file. */
      apiKeyEnv: z.string().regex(ENV_NAME, {
        error: 'expected the NAME of an environment variable (letters, digits, "_"), not the key itself',
      }),
      /** Seconds one POST may take before it is abandoned and retried. */
      timeoutSeconds: z.number().positive().max(600).default(60),
      /** Retries of one batch after a network error, timeout or 5xx answer (with doubling waits). */
      maxRetries: z.number().int().min(0).max(20).default(5),
      /** Serialized size limit of one POST body, bytes; the server refuses over 1024 KiB. */
      maxBatchBytes: z
        .number()
        .int()
        .min(1024)
        .max(1000 * 1024)
        .default(DEFAULT_BATCH_BYTES),
      /** Records per POST at most. */
      maxBatchRecords: z.number().int().min(1).max(100_000).default(1000),
      /** The largest answer read, bytes (default 64 MiB); a larger one stops the call with an error. */
      maxResponseBytes: z.number().int().min(1024).optional(),
      /** Allow a plain http url to a host that is not loopback: the API key then crosses the network unencrypted. */
      allowInsecureHttp: z.boolean().optional(),
    })
    .superRefine((api, ctx) => {
      const problem = insecureUrlProblem(api.url, api.allowInsecureHttp, 'usage.usageApi.allowInsecureHttp');
      if (problem) ctx.addIssue({ code: 'custom', path: ['url'], message: problem });
    });

  const chargeObject = z.strictObject({
    unit: z.enum(CHARGE_UNITS as unknown as [ChargeUnit, ...ChargeUnit[]]),
    /** Partition name → factor on the charge; partitions not listed count 1. */
    partitionMultipliers: z.record(z.string(), z.number().min(0)).optional(),
    decimals: z.number().int().min(0).max(12).optional(),
    includeZeroCharge: z.boolean().optional(),
  });

  const usage = z
    .strictObject({
      /** Where usage goes: NPU packets in the AMIE tables (amie-db) or the ACCESS Usage API. */
      sink: z.enum(USAGE_SINKS).default('amie-db'),
      /** A charge unit, or a rule with partition multipliers. */
      charge: z
        .union([z.enum(CHARGE_UNITS as unknown as [ChargeUnit, ...ChargeUnit[]]), chargeObject])
        .default('gpu-hours'),
      /**
       * Slurm account → AMIE ProjectID, for projects the registry does not know. Slurm keeps
       * account names in lower case, so keys are matched without regard to case.
       */
      projects: z.record(z.string().min(1), z.string().min(1).max(128)).default({}),
      usageApi: usageApi.optional(),
      /**
       * A run without --since starts this many hours before the end of the last finished run:
       * jobs that reach the accounting late are still seen, and exactly-once makes the overlap free.
       */
      overlapHours: z
        .number()
        .min(0)
        .max(24 * 90)
        .default(24),
      /** The very first run without --since looks back this many days. */
      firstRunDays: z.number().positive().max(3650).default(7),
      /** Jobs written per database transaction (amie-db) or claimed per round (usage-api). */
      batchSize: z.number().int().min(1).max(10_000).default(500),
      /** sacct --clusters: names, or "all"; absent: the cluster sacct is configured for. */
      clusters: z.union([z.literal('all'), z.array(z.string().regex(/^[A-Za-z0-9_.-]+$/)).min(1)]).optional(),
      /** The sacct program; default `sacct` from PATH. */
      sacctPath: z.string().min(1).optional(),
      /**
       * sacct is stopped (and the run fails, releasing the usage lock) when it prints nothing for
       * this many seconds: a hung slurmdbd must not stop usage reporting silently.
       */
      sacctTimeoutSeconds: z
        .number()
        .positive()
        .max(24 * 3600)
        .default(600),
      /**
       * Percentages of a project's allocation that, once its charged usage reaches them, post one
       * Slack message (notify.slack) per project, threshold and allocation period.
       */
      alerts: z
        .array(
          z
            .number()
            .min(1, { error: 'expected a percentage of the allocation from 1 to 1000, e.g. 80' })
            .max(1000, { error: 'expected a percentage of the allocation from 1 to 1000, e.g. 100' }),
        )
        .max(20, { error: 'expected at most 20 thresholds, e.g. [80, 100]' })
        .refine((a) => a.every((t, i) => i === 0 || t > a[i - 1]!), {
          error: 'expected thresholds in ascending order without repeats, e.g. [80, 100]',
        })
        .default([]),
    })
    .superRefine((u, ctx) => {
      if (u.sink === 'usage-api' && !u.usageApi) {
        ctx.addIssue({
          code: 'custom',
          path: ['usageApi'],
          message: 'sink is usage-api but usageApi is missing: expected { url: https://..., apiKeyEnv: NAME }',
        });
      }
    });
  return { usageApi, usage };
}

const schemas = once(buildSchemas);

/** The `usage:` section's schema (also exported, built, as UsageConfigSchema). */
export const usageConfigSchema = () => schemas().usage;

/** The `usage.usageApi:` schema (also exported, built, as UsageApiConfigSchema). */
export const usageApiConfigSchema = () => schemas().usageApi;

export type UsageConfig = z.output<ReturnType<typeof usageConfigSchema>>;
export type UsageApiConfig = z.output<ReturnType<typeof usageApiConfigSchema>>;

/** The defaults a site gets with no `usage:` section at all. */
export function defaultUsageConfig(): UsageConfig {
  return usageConfigSchema().parse({});
}

/** The charge rule the config describes. */
export function chargeRuleOf(u: Pick<UsageConfig, 'charge'>): ChargeRule {
  return typeof u.charge === 'string' ? { unit: u.charge } : { ...u.charge };
}
