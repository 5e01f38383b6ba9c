import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AmieHandler, type HandlerClass } from './handler.js';

/** Handlers that ship with the toolkit, by the name the config uses. Loaded on demand. */
export const BUILTIN_HANDLERS: Record<string, () => Promise<HandlerClass>> = {};

export function registerBuiltinHandler(name: string, load: () => Promise<HandlerClass>): void {
  BUILTIN_HANDLERS[name] = load;
}

export type HandlerSpec = string | { module: string; options?: unknown };

export class HandlerLoadError extends Error {
  override name = 'HandlerLoadError';
}

export interface LoadedHandler {
  cls: HandlerClass;
  name: string;
  options: unknown;
}

/**
 * Resolves `handler:` from the config: a built-in name, or a path (relative to the config
 * file) to a module whose default export is a handler class, optionally with options that
 * the class validates through its static `optionsSchema`.
 */
export async function loadHandlerClass(spec: HandlerSpec, configDir: string): Promise<LoadedHandler> {
  const ref = typeof spec === 'string' ? spec : spec.module;
  const rawOptions = typeof spec === 'string' ? {} : (spec.options ?? {});
  let cls: unknown;
  let name = ref;
  const builtin = Object.hasOwn(BUILTIN_HANDLERS, ref) ? BUILTIN_HANDLERS[ref] : undefined;
  if (builtin) {
    cls = await builtin();
  } else if (/^[a-z][a-z0-9-]*$/.test(ref)) {
    throw new HandlerLoadError(
      `handler: unknown built-in handler "${ref}" (built-in: ${Object.keys(BUILTIN_HANDLERS).join(', ') || 'none'}; or give a path to a module)`,
    );
  } else {
    const file = isAbsolute(ref) ? ref : resolve(configDir, ref);
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (err) {
      throw new HandlerLoadError(`handler: cannot load module ${file}: ${(err as Error).message}`);
    }
    cls = mod.default;
    if (!isHandlerClass(cls)) {
      throw new HandlerLoadError(`handler: ${file} must have a default export that is a class extending AmieHandler`);
    }
    name = (cls as HandlerClass).handlerName && (cls as HandlerClass).handlerName !== 'custom' ? (cls as HandlerClass).handlerName! : ref;
  }
  const handlerClass = cls as HandlerClass;
  let options: unknown = rawOptions;
  const schema = handlerClass.optionsSchema;
  if (schema) {
    const parsed = schema.safeParse(rawOptions);
    if (!parsed.success) {
      throw new HandlerLoadError(`handler.options: ${describeSchemaError(parsed.error)}`);
    }
    options = parsed.data;
  }
  return { cls: handlerClass, name, options };
}

function isHandlerClass(x: unknown): boolean {
  if (typeof x !== 'function') return false;
  // instanceof fails when the site's module imports its own copy of the toolkit: fall back to shape.
  const proto = (x as { prototype?: unknown }).prototype as Record<string, unknown> | undefined;
  return x.prototype instanceof AmieHandler || typeof proto?.inform_transaction_complete === 'function';
}

/** One line per problem, each naming the option path, for zod errors and anything else. */
function describeSchemaError(error: unknown): string {
  const issues = (error as { issues?: Array<{ path: PropertyKey[]; message: string }> })?.issues;
  if (Array.isArray(issues)) {
    return issues.map((i) => `${i.path.length ? i.path.map(String).join('.') + ': ' : ''}${i.message}`).join('; ');
  }
  return error instanceof Error ? error.message : String(error);
}
