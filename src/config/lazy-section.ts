import { z } from 'zod';

/**
 * The schema behind each lazy section, for walking the configuration's shape. Keyed by object:
 * checking that a section (generic over its schema) is a z.ZodType cost TypeScript 0.6 s, a sixth
 * of checking the whole toolkit.
 */
const schemas = new WeakMap<object, () => z.ZodType>();

/**
 * A configuration section whose schema is built only when a file has the section, once. zod spends
 * tens of microseconds on every schema node it builds, most configurations have no `usage:` or
 * `notify:` section, and every start-up of `amie` (cron, monitoring) would build them all.
 */
export function lazySection<T extends z.ZodType>(build: () => T) {
  const schema = once(build);
  const section = z.unknown().transform((value, ctx): z.output<T> | undefined => {
    if (value === undefined) return undefined;
    const parsed = schema().safeParse(value, { jitless: true });
    if (parsed.success) return parsed.data;
    // Paths are the section's own; the configuration's object puts the section's key in front.
    ctx.issues.push(...(parsed.error.issues as z.core.$ZodRawIssue[]));
    return z.NEVER;
  });
  const optional = section.optional();
  schemas.set(section, schema).set(optional, schema);
  return optional;
}

/** The schema behind a lazy section (built now), so that the configuration's shape can be walked; else undefined. */
export function lazySectionSchema(section: z.ZodType): z.ZodType | undefined {
  return schemas.get(section)?.();
}

/** `build`'s result, built on the first call and kept: a section's schemas, built when first needed. */
export function once<T>(build: () => T): () => T {
  let built: T | undefined;
  return () => (built ??= build());
}
