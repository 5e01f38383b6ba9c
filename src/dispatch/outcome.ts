/**
 * What a handler decided about a packet. Returning reply tags (a plain object) is the normal
 * case; the other outcomes are explicit values so that a reader of a handler sees every path.
 */

/** Marks outcome values; exported so that subclasses' declarations can name it. */
export const OUTCOME: unique symbol = Symbol.for('amie-toolkit.outcome') as never;

export type Outcome =
  | { readonly [OUTCOME]: true; kind: 'fail'; message: string }
  | { readonly [OUTCOME]: true; kind: 'defer'; reason: string }
  | { readonly [OUTCOME]: true; kind: 'ignore'; reason: string }
  | { readonly [OUTCOME]: true; kind: 'unhandled' };

/** Answer with a failure inform_transaction_complete (DetailCode 2) carrying `message`. */
export function fail(message: string): Outcome {
  return { [OUTCOME]: true, kind: 'fail', message };
}

/** Leave the packet in progress; it is offered again on the next run (approval pending, outside system busy…). */
export function defer(reason: string): Outcome {
  return { [OUTCOME]: true, kind: 'defer', reason };
}

/** Mark the packet completed without any reply; the reason goes to the audit. */
export function ignore(reason: string): Outcome {
  return { [OUTCOME]: true, kind: 'ignore', reason };
}

/** What the base class returns for a packet type the site's handler does not implement. */
export function unhandled(): Outcome {
  return { [OUTCOME]: true, kind: 'unhandled' };
}

export function isOutcome(value: unknown): value is Outcome {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[OUTCOME] === true;
}

/**
 * Thrown from anywhere a handler runs (a hook, a site command's argument check) when the packet
 * itself cannot be done: the packet's changes are rolled back as for any error, but it is
 * answered at once with a failure inform_transaction_complete carrying the message instead of
 * being tried again, since the same packet would fail the same way.
 */
export class PacketFailure extends Error {
  override name = 'PacketFailure';
}
