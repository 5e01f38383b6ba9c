/**
 * The registry's tables (defined here with every other toolkit table; src/registry reads and writes them).
 */
import { TOOLKIT_SCHEMA, type Migration } from './migration.js';

const S = TOOLKIT_SCHEMA;

/**
 * The registry's books: who the site knows, under which login, in which projects. PersonID and
 * ProjectID are text because they are the site's own identifiers as AMIE carries them.
 *
 * A merged-away person keeps its row, its login and its DNs history: the row is what keeps the
 * login from ever being handed to someone else, and `person_aliases` says where it went.
 */
export const REGISTRY_MIGRATION: Migration = {
  id: '0003-registry',
  sql: `
CREATE TABLE IF NOT EXISTS ${S}.people (
  person_id    text PRIMARY KEY,
  global_id    text UNIQUE,
  first_name   text NOT NULL,
  middle_name  text,
  last_name    text NOT NULL,
  email        text,
  organization text,
  org_code     text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
-- A PersonID that was merged into another person; later packets naming it reach the kept one.
CREATE TABLE IF NOT EXISTS ${S}.person_aliases (
  alias      text PRIMARY KEY,
  person_id  text NOT NULL REFERENCES ${S}.people (person_id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS person_aliases_person ON ${S}.person_aliases (person_id);
CREATE TABLE IF NOT EXISTS ${S}.site_person_ids (
  site           text NOT NULL,
  site_person_id text NOT NULL,
  person_id      text NOT NULL REFERENCES ${S}.people (person_id),
  PRIMARY KEY (site, site_person_id)
);
CREATE INDEX IF NOT EXISTS site_person_ids_person ON ${S}.site_person_ids (person_id);
CREATE TABLE IF NOT EXISTS ${S}.person_dns (
  person_id text NOT NULL REFERENCES ${S}.people (person_id),
  dn        text NOT NULL,
  added_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (person_id, dn)
);
CREATE TABLE IF NOT EXISTS ${S}.logins (
  login      text PRIMARY KEY,
  person_id  text NOT NULL UNIQUE REFERENCES ${S}.people (person_id),
  uid        int  NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${S}.projects (
  project_id    text PRIMARY KEY,
  grant_number  text NOT NULL UNIQUE,
  title         text,
  pi_person_id  text NOT NULL REFERENCES ${S}.people (person_id),
  resource      text NOT NULL,
  active        boolean NOT NULL DEFAULT true,
  service_units numeric NOT NULL DEFAULT 0,
  start_date    date,
  end_date      date,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projects_pi ON ${S}.projects (pi_person_id);
CREATE TABLE IF NOT EXISTS ${S}.allocation_history (
  history_id      bigserial PRIMARY KEY,
  project_id      text NOT NULL REFERENCES ${S}.projects (project_id),
  resource        text NOT NULL,
  allocation_type text NOT NULL,
  service_units   numeric,
  start_date      date,
  end_date        date,
  record_id       text,
  packet_rec_id   int,
  at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS allocation_history_project ON ${S}.allocation_history (project_id);
CREATE TABLE IF NOT EXISTS ${S}.accounts (
  person_id  text NOT NULL REFERENCES ${S}.people (person_id),
  project_id text NOT NULL REFERENCES ${S}.projects (project_id),
  resource   text NOT NULL,
  active     boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (person_id, project_id, resource)
);
CREATE INDEX IF NOT EXISTS accounts_project ON ${S}.accounts (project_id);
-- The first answer to each RPC RecordID, repeated verbatim when the RecordID comes again.
CREATE TABLE IF NOT EXISTS ${S}.rpc_records (
  record_id     text PRIMARY KEY,
  project_id    text,
  reply         jsonb NOT NULL,
  packet_rec_id int,
  at            timestamptz NOT NULL DEFAULT now()
);
`,
};

/**
 * The scheduler account a project's jobs run under. The registry writes it when a handler names
 * one (the Slurm handler does); the usage reporter maps jobs back to ProjectIDs through it.
 */
export const SLURM_ACCOUNT_MIGRATION: Migration = {
  id: '0005-registry-slurm-account',
  sql: `
ALTER TABLE ${S}.projects ADD COLUMN IF NOT EXISTS slurm_account text;
CREATE UNIQUE INDEX IF NOT EXISTS projects_slurm_account ON ${S}.projects (slurm_account);
`,
};
