/**
 * The REST packet source's tables (defined here with every other toolkit table; src/sources uses them).
 */
import { TOOLKIT_SCHEMA, type Migration } from './migration.js';

const S = TOOLKIT_SCHEMA;

/**
 * What the REST source keeps locally: the incoming packets it saw and its outbox of replies.
 * A reply is written to the outbox in the same database transaction as the handler's books and
 * the packet's completion, and POSTed only after that commits (a transactional outbox): a run
 * that dies before the commit leaves the packet pending, one that dies after it leaves the reply
 * unsent, and the next run sends it, after asking the server whether it already arrived.
 */
export const REST_SOURCE_MIGRATION: Migration = {
  id: '0006-rest-source',
  sql: `
CREATE TABLE IF NOT EXISTS ${S}.rest_packets (
  packet_rec_id bigint PRIMARY KEY,           -- the server's
  trans_rec_id  bigint NOT NULL,
  type_id       int NOT NULL,
  packet        jsonb NOT NULL,               -- as the server sent it
  -- pending: to be handled; completed: handled (answered, ignored or closed), never again;
  -- context: only read as the opening RPC/RAC of a later DPC/DAC, not handled here.
  state         text NOT NULL CHECK (state IN ('pending', 'completed', 'context')),
  client_state  text,                         -- what this toolkit last set on the server
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS rest_packets_transaction ON ${S}.rest_packets (trans_rec_id);
CREATE TABLE IF NOT EXISTS ${S}.rest_outbox (
  -- One reply per incoming packet, ever: the key is what makes a second answer impossible.
  in_reply_to         bigint PRIMARY KEY REFERENCES ${S}.rest_packets (packet_rec_id),
  trans_rec_id        bigint NOT NULL,
  reply_type          text NOT NULL,
  packet              jsonb NOT NULL,         -- the JSON POSTed
  -- unsent: waiting; sent: the server has it; refused: the server said no (4xx), the
  -- transaction was marked failed and the reply is kept for the record.
  status              text NOT NULL DEFAULT 'unsent' CHECK (status IN ('unsent', 'sent', 'refused')),
  created_at          timestamptz NOT NULL DEFAULT now(),
  attempts            int NOT NULL DEFAULT 0,
  sent_at             timestamptz,
  reply_packet_rec_id bigint,                 -- the server's id for the reply, when it said
  last_error          text
);
CREATE INDEX IF NOT EXISTS rest_outbox_unsent ON ${S}.rest_outbox (created_at) WHERE status = 'unsent';
`,
};
