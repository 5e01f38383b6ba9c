import { z } from 'zod';

/**
 * A configuration section whose schema is built only when a file has the section. zod spends tens
 * of microseconds on every schema node it builds, most configurations have no `usage:` or
 * `notify:` section, and every start-up of `amie` (cron, monitoring) would build them all.
 */
const schemas = new WeakMap<z.ZodType, () => z.ZodType>();

export function lazySection<T extends z.ZodType>(schema: () => T) {
  const section = z.unknown().transform((value, ctx): z.output<T> | undefined => {
    if (value === undefined) return undefined;
    const parsed = schema().safeParse(value, { jitless: true });
    if (parsed.success) return parsed.data;
    // Paths are the section's own; the configuration's object puts the section's key in front.
    ctx.issues.push(...(parsed.error.issues as z.core.$ZodRawIssue[]));
    return z.NEVER;
  });
  schemas.set(section, schema);
  return section.optional();
}

/** The schema behind a lazy section (built now), so that the configuration's shape can be walked; else undefined. */
export function lazySectionSchema(section: z.ZodType): z.ZodType | undefined {
  return schemas.get(section)?.();
}
