/** The AllocationType values of an RPC (§6): `new` creates a project, the others change an existing one. */
export const ALLOCATION_TYPES = [
  'new',
  'renewal',
  'supplement',
  'transfer',
  'adjustment',
  'advance',
  'extension',
] as const;
export type AllocationType = (typeof ALLOCATION_TYPES)[number];

export interface Allocation {
  serviceUnits: number;
  startDate: string | null;
  endDate: string | null;
}

/**
 * The project's allocation after an RPC. `new` and `renewal` start a new allocation period
 * (amount and dates replaced); `supplement`, `transfer`, `adjustment` and `advance` carry an
 * amount to add (negative for a transfer out or a downward adjustment) and may move the end
 * date later; `extension` only moves the end date.
 */
export function nextAllocation(
  before: Allocation | null,
  type: string,
  units: number,
  startDate: string | null,
  endDate: string | null,
): Allocation {
  const later = (a: string | null, b: string | null) => (a && b ? (a > b ? a : b) : (a ?? b));
  if (!before || type === 'new' || type === 'renewal') return { serviceUnits: units, startDate, endDate };
  if (type === 'extension') return { ...before, endDate: later(before.endDate, endDate) };
  return {
    serviceUnits: before.serviceUnits + units,
    startDate: before.startDate ?? startDate,
    endDate: later(before.endDate, endDate),
  };
}
