/**
 * The one JSON convention of every `--json` output: camelCase keys, and record ids
 * (packetRecId, transRecId, transactionId, packetId, ...) as JSON numbers. Rows read with SQL
 * column names go through `jsonRow` on their way out.
 */

/** `packet_rec_id` → `packetRecId`. */
export function camelCase(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** A database row as JSON: camelCase keys; a numeric id the driver gave as text becomes a number. */
export function jsonRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    // numeric(38,0) and bigint ids come back from the drivers as text.
    out[camelCase(key)] =
      /_id$/.test(key) && typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : value;
  }
  return out;
}

/** Pretty JSON, as every command prints it. */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
