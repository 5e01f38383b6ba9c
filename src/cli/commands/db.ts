import type { Command } from 'commander';
import type { CliContext } from '../context.js';

// The store is loaded when a command runs, so `amie --help` works even where it cannot load.
const store = () => import('../../store/index.js');

export function register(program: Command, context: CliContext): void {
  const db = program.command('db').description('set up and check the AMIE database');

  db.command('init')
    .description('create the AMIE tables if there are none, and apply the toolkit migrations (safe to rerun)')
    .action(() =>
      context.withDatabase(
        async (database, _config, log) => {
          const { initDatabase } = await store();
          const result = await initDatabase(database);
          log.debug({ database: database.description, ...result }, 'database initialised');
          const tables = result.amieTables === 'created' ? 'AMIE tables created' : 'AMIE tables already there';
          const migrations = result.migrationsApplied.length
            ? `toolkit migrations applied: ${result.migrationsApplied.join(', ')}`
            : 'no toolkit migrations to apply';
          context.out(`${database.description}: ${tables}; ${migrations}`);
        },
        { create: true },
      ),
    );

  db.command('check')
    .description('check that the AMIE tables are usable and count packets by state (cheap; for monitoring)')
    .action(() =>
      context.withDatabase(async (database) => {
        const { prepareDatabase } = await store();
        await prepareDatabase(database);
        const { rows } = await database.query<{ outgoing: number; state: string; n: number }>(
          `SELECT p.outgoing_flag::int AS outgoing, coalesce(s.state_name, p.state_id::text) AS state, count(*)::int AS n
             FROM packet_tbl p LEFT JOIN state_des s ON s.state_id = p.state_id
            GROUP BY 1, 2 ORDER BY 1, 2`,
        );
        const summary = (outgoing: number) => {
          const parts = rows.filter((r) => r.outgoing === outgoing).map((r) => `${r.state} ${r.n}`);
          return parts.length ? parts.join(', ') : 'none';
        };
        context.out(`${database.description}: AMIE tables ready`);
        context.out(`incoming packets: ${summary(0)}`);
        context.out(`outgoing packets: ${summary(1)}`);
      }),
    );
}
