import { z } from 'zod';
import { usageConfigSchema } from '../usage/config.js';
import { notifyConfigSchema } from '../notify/config.js';
import { lazySection } from './lazy-section.js';
import { insecureUrlProblem } from '../http.js';

/**
 * The configuration file's shape, one schema per section. Every object is strict: a
 * misspelt key is an error, never a silently ignored setting. To add a section, write its
 * schema here and add one line to `configSections`; any key in it ending in `Env` names an
 * environment variable that must be set (see `secrets.ts`).
 */

/** AMIE site names are varchar(16) in transaction_tbl. */
const siteName = z
  .string()
  .min(1)
  .max(16)
  .regex(/^[A-Za-z0-9_.-]+$/, { error: 'expected letters, digits, "_", "." or "-" only' });

/** The name of an environment variable that holds a secret; the secret never sits in the file. */
export const envVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
  error: 'expected the NAME of an environment variable (letters, digits, "_"), not the secret itself',
});

const resourceName = z.string().min(1).regex(/^\S+$/, { error: 'expected a resource name without spaces' });

export const siteSchema = z.preprocess(
  // `resources` alone: its first entry stands for `resource` (the one usage records name).
  (site) =>
    isMapping(site) &&
    site.resource === undefined &&
    Array.isArray(site.resources) &&
    typeof site.resources[0] === 'string'
      ? { ...site, resource: site.resources[0] }
      : site,
  z
    .strictObject({
      /** local_site_name in the AMIE tables. */
      name: siteName,
      /** This site's resource as it appears in ResourceList (the one-resource form of `resources`). */
      resource: resourceName,
      /**
       * The resources this configuration answers for: packets about any other resource are left
       * to the configuration that serves it. Default: [resource].
       */
      resources: z.array(resourceName).min(1).optional(),
      /** remote_site_name: the central side. */
      remoteSite: siteName.default('TGCDB'),
    })
    .superRefine((site, ctx) => {
      if (site.resources && !site.resources.includes(site.resource)) {
        ctx.addIssue({
          code: 'custom',
          path: ['resource'],
          message: `"${site.resource}" is not one of site.resources; leave site.resource out, or list it there`,
        });
      }
    }),
);

/** database.url, and AMIE_DATABASE_URL, which replaces it: the same rules for both. */
export const databaseUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\//, { error: 'expected a PostgreSQL URL: postgres://user@host:port/dbname', abort: true })
  .refine(isUrl, { error: 'not a valid URL: expected postgres://user@host:port/dbname' });

export const databaseSchema = z
  .strictObject({
    url: databaseUrl.optional(),
    path: z.string().min(1).optional(),
    passwordEnv: envVarName.optional(),
  })
  .superRefine((db, ctx) => {
    if (db.url !== undefined && db.path !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'give either url (a PostgreSQL server) or path (the embedded database), not both',
      });
    }
    if (db.passwordEnv !== undefined && db.url === undefined) {
      ctx.addIssue({ code: 'custom', path: ['passwordEnv'], message: 'only applies with database.url' });
    }
    if (db.passwordEnv !== undefined && db.url !== undefined && hasUrlPassword(db.url)) {
      ctx.addIssue({
        code: 'custom',
        path: ['passwordEnv'],
        message:
          'database.url already carries a password: remove it from the url and keep it only in the environment variable',
      });
    }
  });

/** A built-in handler name, a path to a module, or a module with options for its class. */
export const handlerSchema = z.union([
  z.string().min(1),
  z.strictObject({
    module: z.string().min(1),
    options: z.record(z.string(), z.unknown()).optional(),
  }),
]);

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const logSchema = z.strictObject({
  level: z.enum(LOG_LEVELS).default('info'),
});

/** How `amie process` works through pending packets. */
export const processSchema = z.strictObject({
  /** Packets claimed and committed together; a crash redoes at most one batch of (idempotent) work. */
  batchSize: z.number().int().min(1).max(1000).default(50),
  /** A handler exception defers the packet this many times; the next one answers with a failure ITC. */
  maxErrorDeferrals: z.number().int().min(0).max(1000).default(5),
});

/**
 * Where packets come from and replies go: the AMIE tables of the database (the default), or the
 * ACCESS AMIE REST API. Changing this section is all a site does to move from one to the other.
 */
export const sourceSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('tables') }),
    z.strictObject({
      kind: z.literal('rest'),
      /** Base URL of the AMIE REST API. */
      url: z.string().refine(isHttpUrl, {
        error: 'expected the http(s) base URL of the AMIE REST API, e.g. https://amie.example.org/api/',
      }),
      /** XA-SITE; default site.name. */
      site: siteName.optional(),
      /** The environment variable holding the API key (XA-API-KEY). */
      apiKeyEnv: envVarName,
      timeoutMs: z.number().int().min(100).max(600_000).optional(),
      retries: z.number().int().min(0).max(10).optional(),
      /** Leave the site's view of deferred/unhandled/ignored packets in their client_state on the server. */
      clientState: z.boolean().optional(),
      /** The largest answer read, bytes (default 64 MiB); a larger one stops the call with an error. */
      maxResponseBytes: z.number().int().min(1024).optional(),
      /** Allow a plain http url to a host that is not loopback: the API key then crosses the network unencrypted. */
      allowInsecureHttp: z.boolean().optional(),
    }),
  ])
  .superRefine((source, ctx) => {
    if (source.kind !== 'rest') return;
    const problem = insecureUrlProblem(source.url, source.allowInsecureHttp, 'source.allowInsecureHttp');
    if (problem) ctx.addIssue({ code: 'custom', path: ['url'], message: problem });
  });

export const configSections = {
  site: siteSchema,
  /** Omitted: the embedded database .amie/db beside the config file. */
  database: databaseSchema.optional(),
  /** Required by the commands that answer packets, not by `amie db`. */
  handler: handlerSchema.optional(),
  log: logSchema.default({ level: 'info' }),
  process: processSchema.default({ batchSize: 50, maxErrorDeferrals: 5 }),
  /** Built only when present (lazySection), as is notify. */
  usage: lazySection(usageConfigSchema),
  source: sourceSchema.default({ kind: 'tables' }),
  /** Where `amie process` tells operators what it did (Slack). */
  notify: lazySection(notifyConfigSchema),
};

export const configSchema = z.strictObject(configSections).superRefine((config, ctx) => {
  // Usage alerts are Slack messages: thresholds with nowhere to post them would be silently dropped.
  if ((config.usage?.alerts.length ?? 0) > 0 && !config.notify?.slack) {
    ctx.addIssue({
      code: 'custom',
      path: ['usage', 'alerts'],
      message:
        'usage alerts are posted to Slack: expected a notify.slack section (channel, tokenEnv), or no usage.alerts',
    });
  }
});

export type ConfigData = z.output<typeof configSchema>;
export type SiteConfig = z.output<typeof siteSchema>;
export type DatabaseSection = z.output<typeof databaseSchema>;
export type HandlerConfig = z.output<typeof handlerSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;

/** The validated configuration and the file it came from (relative paths in it are taken from its directory). */
export type AmieConfig = ConfigData & { configFile: string };

/** What `handler:` names (a built-in name or a module path), without loading it; null when there is none. */
export function configuredHandler(config: Pick<ConfigData, 'handler'>): string | null {
  const h = config.handler;
  if (h === undefined) return null;
  return typeof h === 'string' ? h : h.module;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isUrl(url: string): boolean {
  return URL.canParse(url);
}

function isHttpUrl(url: string): boolean {
  return /^https?:\/\//.test(url) && URL.canParse(url);
}

function hasUrlPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}
