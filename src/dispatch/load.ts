import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { nearest } from '../config/nearest.js';
import { PACKET_TYPE_IDS } from '../protocol/ids.js';
import { AmieHandler, HANDLED_TYPES, type HandlerClass, type HandlerContext } from './handler.js';

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
  } else if (/^[A-Za-z][A-Za-z0-9_-]*$/.test(ref)) {
    // No dot and no slash: meant as a built-in name (a module path always has an extension).
    const builtins = Object.keys(BUILTIN_HANDLERS);
    const near = nearest(ref, builtins);
    throw new HandlerLoadError(
      `handler: unknown built-in handler "${ref}" (${near ? `did you mean "${near}"? ` : ''}built-in: ${builtins.join(', ') || 'none'}; or give a path to a module)`,
    );
  } else {
    const file = isAbsolute(ref) ? ref : resolve(configDir, ref);
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (err) {
      if (/\.[cm]?ts$/.test(file)) {
        throw new HandlerLoadError(
          `handler: ${file} is TypeScript, which node does not run: build it first (npm run build, or npx tsc) and name the compiled .js file`,
        );
      }
      throw new HandlerLoadError(`handler: cannot load module ${file}: ${(err as Error).message}`);
    }
    cls = mod.default;
    if (!isHandlerClass(cls)) {
      throw new HandlerLoadError(`handler: ${file} must have a default export that is a class extending AmieHandler`);
    }
    name =
      (cls as HandlerClass).handlerName && (cls as HandlerClass).handlerName !== 'custom'
        ? (cls as HandlerClass).handlerName!
        : ref;
  }
  const handlerClass = cls as HandlerClass;
  const misnamed = misnamedMethod(handlerClass);
  if (misnamed) throw new HandlerLoadError(`handler: ${name}: ${misnamed}`);
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

/**
 * Constructs the loaded handler for a run. A constructor that throws (an option it rejects, a
 * file it cannot read) is a configuration problem like any other: `amie` exits 2 naming it.
 */
export function constructHandler(loaded: LoadedHandler, context: HandlerContext): AmieHandler {
  try {
    return new loaded.cls(context);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new HandlerLoadError(`handler: ${loaded.name}: the constructor failed: ${message.split('\n').join(' ')}`, {
      cause: err,
    });
  }
}

/**
 * A method named like a packet type that the dispatcher will never call (`request_projet_create`,
 * or `notify_project_create`, a reply the site sends): its packets would silently go unhandled.
 * Names the closest type the site receives, or returns undefined when every name is fine.
 */
function misnamedMethod(cls: HandlerClass): string | undefined {
  const handled = new Set<string>(HANDLED_TYPES);
  for (
    let proto = cls.prototype as object | null;
    proto && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  ) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key === 'constructor' || handled.has(key)) continue;
      // Read the descriptor, not the property: a getter of the class must not run here.
      if (typeof Object.getOwnPropertyDescriptor(proto, key)?.value !== 'function') continue;
      // Only a name with an underscore can be a packet type; the suggestion costs an edit distance per type.
      if (!key.includes('_')) continue;
      const near = nearest(key, HANDLED_TYPES);
      const typeLike = /^(request|data|notify|inform)_/.test(key) || near !== undefined;
      if (!typeLike) continue;
      const why = Object.hasOwn(PACKET_TYPE_IDS, key)
        ? 'is a packet the site sends, never one it receives'
        : 'is not an AMIE packet type';
      return `method ${key} ${why}, so it would never be called${near ? ` (did you mean ${near}?)` : ''}; packet types a handler answers: ${HANDLED_TYPES.join(', ')}`;
    }
  }
  return undefined;
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
