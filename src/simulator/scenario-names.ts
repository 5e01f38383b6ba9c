/**
 * The names and one-line descriptions of the simulator's scenarios, apart from the scenarios
 * themselves so that `amie simulate --help` can list them without loading the simulator.
 */

export const OFFICIAL_SCENARIOS = [
  'request_project_reactivate',
  'request_account_reactivate',
  'request_person_merge',
  'request_user_modify',
] as const;
export const EXTRA_CHECKS = ['record_id_repeat', 'supplement', 'known_pi', 'invalid_packet'] as const;
export const SCENARIO_NAMES = [...OFFICIAL_SCENARIOS, ...EXTRA_CHECKS] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export const SCENARIO_DESCRIPTIONS: Record<ScenarioName, string> = {
  request_project_reactivate: 'RPC -> request_project_inactivate -> request_project_reactivate',
  request_account_reactivate: 'RPC -> RAC -> request_account_inactivate -> RAC (the reactivation)',
  request_person_merge: 'RPC -> two RACs (two different people) -> request_person_merge',
  request_user_modify: "RPC -> request_user_modify delete and replace of the PI's DNs",
  record_id_repeat: 'RPC -> the same RPC again (same RecordID): the first answer is repeated',
  supplement: 'RPC -> RPC supplement of the same project',
  known_pi: 'RPC -> RPC for a new grant whose PI the site already knows',
  invalid_packet: 'RPC missing required tags: the site refuses it with a failure ITC',
};

/**
 * Accepts `all`, one name, or a comma-separated list; anything else is an error listing the
 * names, since the operator typed it.
 */
export function resolveScenarioNames(spec: string): ScenarioName[] {
  if (spec.trim() === 'all') return [...SCENARIO_NAMES];
  const names = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(SCENARIO_NAMES as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length > 0) {
    throw new Error(
      `--scenario: unknown scenario "${unknown.join(', ') || spec}"; expected all or one of ${SCENARIO_NAMES.join(', ')}`,
    );
  }
  return names as ScenarioName[];
}
