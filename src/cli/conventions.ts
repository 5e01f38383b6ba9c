import type { Command, OutputConfiguration } from 'commander';
import { editDistance } from '../config/nearest.js';
import { ConfigError } from '../config/errors.js';

/**
 * `amie packets list | head -1`: once the reader of stdout has gone, nobody is left to read
 * the rest, so the command ends there, quietly and with exit 0, as command-line tools do.
 * A closed stderr only loses messages; the command goes on.
 */
export function endQuietlyOnClosedPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  process.stderr.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

/** Mistakes on the command line read like every other `amie` error: `amie: ...`, one line. */
export const amieOutput: OutputConfiguration = {
  outputError: (text, write) =>
    write(
      text
        .replace(/^error: /, 'amie: ')
        .replace(/\n\(Did you mean (.*)\?\)/, (_, names: string) => ` (did you mean ${names}?)`),
    ),
};

/**
 * Help that follows the whole command path (`amie help db init`), a one-line answer for a
 * command that does not exist, and after any mistake the help command to run for the command
 * it was made in. Called once every command is registered.
 */
export function completeHelp(program: Command): void {
  program
    .command('help [command...]')
    .description('display help for a command, e.g. amie help db init')
    .action((path: string[]) => {
      let command = program;
      for (const name of path) {
        const sub = command.commands.find((c) => c.name() === name || c.aliases().includes(name));
        if (!sub) unknownCommand(command, name);
        command = sub;
      }
      command.outputHelp();
    });
  const visit = (command: Command) => {
    if (command.parent) command.showHelpAfterError(`(run amie help ${commandPath(command)} for usage)`);
    if (command.commands.length)
      command.on('command:*', (operands: string[]) => unknownCommand(command, operands[0] ?? ''));
    command.commands.forEach(visit);
  };
  visit(program);
}

function unknownCommand(parent: Command, name: string): never {
  const names = parent.commands.map((c) => c.name());
  const close = names.filter(
    (n) => n.startsWith(name) || name.startsWith(n) || editDistance(n, name) <= Math.max(1, Math.floor(n.length / 3)),
  );
  const where = parent.parent ? ` in 'amie ${commandPath(parent)}'` : '';
  const guess = close.length ? ` (did you mean ${close.join(' or ')}?)` : '';
  return parent.error(`amie: unknown command '${name}'${where}${guess}`, {
    code: 'commander.unknownCommand',
    exitCode: 2,
  });
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * A command-line option that counts something (`--limit`, `--watch`, a packet_rec_id): digits
 * only, at least 1 and at most `max`. Anything else is a ConfigError naming the option (exit 2).
 */
export function wholeNumberOption(flag: string, value: string, max?: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || (max !== undefined && n > max)) {
    const expected = max === undefined ? 'a positive whole number' : `a whole number from 1 to ${max}`;
    throw new ConfigError([`${flag}: expected ${expected}, got "${value}"`]);
  }
  return n;
}
