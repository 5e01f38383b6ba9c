import { dirname, resolve } from 'node:path';

/** The embedded database's directory, relative to the config file, when `database` names none. */
export const DEFAULT_DATABASE_PATH = '.amie/db';

/**
 * A path from the config file, taken from the file's directory (`~` is not expanded). A config
 * given as text (parseConfig) has no directory: its paths are taken from the current one.
 */
export function configRelative(cfg: { configFile: string }, path: string): string {
  return resolve(dirname(resolve(cfg.configFile)), path);
}

/**
 * A program named in the config: a bare name (`sacct`) is looked up on the PATH when it runs;
 * anything with a slash is a path, taken from the config file's directory like every other one.
 */
export function configProgram(configDir: string | undefined, program: string): string {
  return program.includes('/') && configDir !== undefined ? resolve(configDir, program) : program;
}
