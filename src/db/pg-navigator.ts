/**
 * Imported by pg.ts just before pg itself, so that pg loads without waking Node's fetch. When it
 * loads, pg tells a Cloudflare Worker from Node by `navigator.userAgent`, which Node has from
 * version 21 on; without it pg builds a `Response`, and on Node 20 that first `Response` loads
 * all of fetch (about 50 ms of CPU, a tenth of `amie status`). So on Node 20 a `navigator`
 * saying Node stands there while pg loads (modules are evaluated in the order they are imported,
 * bundled or not), and pg.ts takes it away again at once.
 */
const g = globalThis as { navigator?: unknown };
const lent = g.navigator === undefined;
if (lent) g.navigator = { userAgent: `Node.js/${process.versions.node}` };

/** Removes the navigator lent above, once pg has loaded. */
export function returnNavigator(): void {
  if (lent) delete g.navigator;
}
