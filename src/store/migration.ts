/**
 * What a schema change is, kept apart from the ordered list in migrations.ts so that the
 * modules defining migrations can name the type without importing the list that names them.
 */

/**
 * The toolkit's own tables live in their own schema so that a site's AMIE tables (and the
 * legacy software that reads them) never see a table they do not know.
 */
export const TOOLKIT_SCHEMA = 'amie_toolkit';

export interface Migration {
  /** Recorded in amie_toolkit.migrations once applied; never rename an applied migration. */
  id: string;
  /** May hold several statements; runs inside the migration transaction. */
  sql: string;
}
