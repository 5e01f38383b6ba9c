import type { Command } from 'commander';
import { openPglite } from '../../db/index.js';
import type { CliContext } from '../context.js';

/**
 * A look at the toolkit with nothing to set up: an embedded database in memory, so the demo
 * never touches a site's data and needs no configuration file.
 */
export function register(program: Command, context: CliContext): void {
  program
    .command('demo')
    .description('create the AMIE tables in a throw-away embedded database and show what is in them')
    .action(async () => {
      const { AMIE_TABLES, initDatabase, TOOLKIT_SCHEMA } = await import('../../store/index.js');
      const db = await openPglite();
      try {
        const result = await initDatabase(db);
        context.out(`AMIE toolkit demo on an ${db.description}`);
        context.out(
          `AMIE tables ${result.amieTables}; toolkit migrations applied: ${result.migrationsApplied.join(', ') || 'none'}`,
        );

        const { rows: toolkitTables } = await db.query<{ name: string }>(
          `SELECT table_schema || '.' || table_name AS name FROM information_schema.tables
            WHERE table_schema = $1 ORDER BY table_name`,
          [TOOLKIT_SCHEMA],
        );
        const tables = [...AMIE_TABLES, ...toolkitTables.map((t) => t.name)];
        const width = Math.max(...tables.map((t) => t.length));
        context.out('');
        context.out('tables (rows):');
        for (const table of tables) {
          const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
          context.out(`  ${table.padEnd(width)}  ${rows[0]?.n ?? 0}`);
        }

        const { rows: states } = await db.query<{ id: number; name: string }>(
          'SELECT state_id::int AS id, state_name AS name FROM state_des ORDER BY state_id',
        );
        context.out('');
        context.out('packet and transaction states (state_des):');
        for (const s of states) context.out(`  ${String(s.id).padStart(2)}  ${s.name}`);

        const { rows: types } = await db.query<{ id: number; name: string }>(
          'SELECT type_id::int AS id, type_name AS name FROM type_des ORDER BY type_id',
        );
        context.out('');
        context.out('packet types (type_des):');
        for (const t of types) context.out(`  ${String(t.id).padStart(2)}  ${t.name}`);
      } finally {
        await db.close();
      }
    });
}
