/**
 * A configuration problem the operator must fix before anything runs. `problems` holds one
 * line per problem, each starting with the file and the key path, so a run reports every
 * mistake at once instead of one per attempt. The CLI prints them and exits 2.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: string[];
  constructor(problems: string | string[], options?: { cause?: unknown }) {
    const list = Array.isArray(problems) ? problems : [problems];
    super(list.join('\n'), options);
    this.problems = list;
  }
}
