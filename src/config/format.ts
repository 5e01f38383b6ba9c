import type { z } from 'zod';
import { lazySectionSchema } from './lazy-section.js';
import { nearest } from './nearest.js';

export { nearest, editDistance } from './nearest.js';

/**
 * Turns zod issues into lines an operator can act on: `file: key.path: what was expected,
 * what was found`. Values are echoed only where they cannot be secrets, and URLs lose
 * their password first.
 */
export function formatIssues(
  issues: readonly z.core.$ZodIssue[],
  sourceName: string,
  schema: z.ZodType,
  input: unknown,
): string[] {
  const lines: string[] = [];
  for (const issue of issues) lines.push(...formatIssue(issue, [], schema, input).map((l) => `${sourceName}: ${l}`));
  return lines;
}

type Path = readonly PropertyKey[];

function formatIssue(issue: z.core.$ZodIssue, prefix: Path, schema: z.ZodType, input: unknown): string[] {
  const path = [...prefix, ...issue.path];
  const where = (p: Path) => (p.length ? `${p.map(String).join('.')}: ` : '');
  const value = valueAt(input, path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(schema, path);
      return issue.keys.map((key) => {
        const near = nearest(key, known);
        const hint = near
          ? ` (did you mean "${near}"?)`
          : known.length
            ? ` (expected one of: ${known.join(', ')})`
            : '';
        return `${where([...path, key])}unknown key${hint}`;
      });
    }
    case 'invalid_type':
      if (value === undefined) return [`${where(path)}missing: expected ${article(issue.expected)}`];
      return [`${where(path)}expected ${article(issue.expected)}, got ${describe(value, path)}`];
    case 'too_big':
      if (issue.origin === 'string') {
        return [`${where(path)}expected at most ${issue.maximum} characters, got ${describe(value, path)}`];
      }
      return [`${where(path)}expected at most ${issue.maximum}, got ${describe(value, path)}`];
    case 'too_small':
      if (issue.origin === 'string') {
        return [
          Number(issue.minimum) <= 1
            ? `${where(path)}expected a non-empty string`
            : `${where(path)}expected at least ${issue.minimum} characters, got ${describe(value, path)}`,
        ];
      }
      return [`${where(path)}expected at least ${issue.minimum}, got ${describe(value, path)}`];
    case 'invalid_value':
      return [
        `${where(path)}expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(value, path)}`,
      ];
    case 'invalid_union': {
      // Report the branch the input was evidently meant for: the one that did not reject it outright by type.
      const branches = issue.errors;
      const meant = branches.find((b) => !b.some((i) => i.code === 'invalid_type' && i.path.length === 0));
      if (meant) return meant.flatMap((i) => formatIssue(i, path, schema, input));
      return [
        `${where(path)}${issue.message === 'Invalid input' ? `unexpected ${describe(value, path)}` : issue.message}`,
      ];
    }
    default:
      return [`${where(path)}${issue.message}`];
  }
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function valueAt(input: unknown, path: Path): unknown {
  let v = input;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function describe(value: unknown, path: Path): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    const last = String(path[path.length - 1] ?? '');
    const shown = /url$/i.test(last) ? stripUrlPassword(value) : value;
    return JSON.stringify(shown.length > 60 ? `${shown.slice(0, 57)}...` : shown);
  }
  return `${typeof value} ${String(value)}`;
}

function stripUrlPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  options?: z.ZodType[];
  in?: z.ZodType;
  out?: z.ZodType;
}
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The keys the schema accepts at `path`, looking through optional/default wrappers and unions. */
export function knownKeys(schema: z.ZodType, path: Path): string[] {
  const keys = new Set<string>();
  const visit = (s: z.ZodType, rest: Path): void => {
    const lazy = lazySectionSchema(s);
    if (lazy) return visit(lazy, rest);
    const def = defOf(s);
    switch (def.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'catch':
      case 'readonly':
        return visit(def.innerType!, rest);
      case 'pipe':
        // A preprocess step is a pipe from a transform: its keys are those of what it feeds.
        return visit(defOf(def.in!).type === 'transform' ? def.out! : def.in!, rest);
      case 'union':
        return def.options!.forEach((o) => visit(o, rest));
      case 'object': {
        if (rest.length === 0) return Object.keys(def.shape!).forEach((k) => keys.add(k));
        const child = def.shape![String(rest[0])];
        if (child) visit(child, rest.slice(1));
        return;
      }
      default:
        return;
    }
  };
  visit(schema, path);
  return [...keys];
}
