import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.js';
import type { Database } from '../../db/index.js';
import type { SiteScope } from '../../store/index.js';
import { isPacketTypeName, PACKET_TYPE_IDS, STATE_IDS, type StateName } from '../../protocol/ids.js';
import { escapeControls } from '../../text.js';
import { formatTable } from '../table.js';
import { jsonRow, toJsonText } from '../json.js';
import type { CliContext } from '../context.js';
import { wholeNumberOption } from '../conventions.js';

interface ListOptions {
  state?: string;
  type?: string;
  direction?: string;
  transaction?: string;
  limit?: string;
  stuck?: boolean;
  json?: boolean;
  foreign?: boolean;
}

export function register(program: Command, context: CliContext): void {
  const packets = program.command('packets').description('inspect AMIE packets and re-offer deferred or failed ones');

  packets
    .command('list')
    .description('list packets, newest first')
    .option('--state <state>', `packet state: ${Object.keys(STATE_IDS).join(', ')}`)
    .option('--type <type>', 'packet type, e.g. request_account_create')
    .option('--direction <dir>', 'in (received) or out (sent)')
    .option('--transaction <trans_rec_id>', 'packets of one transaction')
    .option('--limit <n>', 'at most N packets', '50')
    .option('--stuck', 'only received packets a pass has left pending (deferred, handler errors, unhandled)')
    .option(
      '--foreign',
      "pending packets this configuration leaves alone: another site's transactions, or another resource's (see site.resources)",
    )
    .option('--json', 'one JSON array for scripts')
    .action((opts: ListOptions) =>
      context.withDatabase(async (db, config) => {
        const rows = await listPackets(db, opts, config.site);
        if (opts.json) context.out(toJsonText(rows.map(jsonRow)));
        else for (const line of formatTable(rows)) context.out(line);
      }),
    );

  packets
    .command('show <packet_rec_id>')
    .description('one packet: header, every tag, its conversation and its audit history')
    .option('--json', 'JSON for scripts')
    .action((id: string, opts: { json?: boolean }) =>
      context.withDatabase(async (db) => {
        const shown = await showPacket(db, wholeNumberOption('packet_rec_id', id));
        if (opts.json) {
          // The tags keep their AMIE names: they are the packet's data, not field names.
          const { header, body, conversation, audit } = shown;
          context.out(
            toJsonText({
              header: jsonRow(header),
              body,
              conversation: conversation.map(jsonRow),
              audit: audit.map(jsonRow),
            }),
          );
          return;
        }
        const { header, body, conversation, audit } = shown;
        // One line per field and per tag: a line break in packet text is shown escaped, not allowed to forge a line.
        for (const [k, v] of Object.entries(header))
          context.out(`${k.padEnd(22)} ${escapeControls(v instanceof Date ? v.toISOString() : String(v))}`);
        context.out('');
        context.out('tags:');
        for (const [tag, value] of Object.entries(body))
          context.out(
            `  ${escapeControls(tag)}: ${escapeControls(typeof value === 'string' ? value : JSON.stringify(value))}`,
          );
        context.out('');
        context.out(`conversation (transaction ${header.trans_rec_id}):`);
        for (const line of formatTable(conversation)) context.out(`  ${line}`);
        context.out('');
        context.out('audit:');
        // The reason in full, on a line of its own: a table would cut it at 60 characters.
        for (const line of formatTable(audit, [
          'at',
          'outcome',
          'reply_packet_rec_id',
          'reply_type',
          'duration_ms',
          'handler',
        ]))
          context.out(`  ${line}`);
        for (const a of audit)
          if (a.reason)
            context.out(
              `  ${a.at instanceof Date ? a.at.toISOString() : String(a.at)} ${String(a.outcome)}: ${escapeControls(String(a.reason))}`,
            );
      }),
    );

  packets
    .command('retry <packet_rec_id>')
    .description('offer a deferred or failed incoming packet to the handler again on the next `amie process`')
    .action((id: string) =>
      context.withDatabase(async (db) => {
        const { reofferPacket, prepareDatabase } = await import('../../store/index.js');
        await prepareDatabase(db);
        const packetRecId = wholeNumberOption('packet_rec_id', id);
        const { header } = await showPacket(db, packetRecId);
        if (header.direction !== 'in')
          throw new ConfigError([`packet ${packetRecId} was sent by this site; only received packets can be retried`]);
        const { rows: answered } = await db.query<{ reply_packet_rec_id: number; reply_type: string }>(
          `SELECT reply_packet_rec_id::float8 AS reply_packet_rec_id, reply_type FROM amie_toolkit.audit
            WHERE source = 'tables' AND packet_rec_id = $1 AND reply_packet_rec_id IS NOT NULL ORDER BY audit_id DESC LIMIT 1`,
          [packetRecId],
        );
        if (answered[0]) {
          throw new ConfigError([
            `packet ${packetRecId} was already answered by packet ${answered[0].reply_packet_rec_id} (${answered[0].reply_type}); retrying would answer it twice`,
          ]);
        }
        await db.transaction((tx) => reofferPacket(tx, packetRecId, `retry-${Date.now()}`));
        const errors = Number(header.error_count ?? 0);
        context.out(
          `packet ${packetRecId} (${header.type}) will be offered to the handler on the next run; ` +
            (errors > 0
              ? `its error count (${errors}) was reset to 0, so it gets all its attempts again`
              : 'its error count was 0'),
        );
        if (header.transaction_state !== 'in-progress') {
          context.out(
            `note: its transaction ${header.trans_rec_id} is ${header.transaction_state}; only packets of in-progress transactions are processed`,
          );
        }
      }),
    );
}

async function listPackets(db: Database, opts: ListOptions, site: SiteScope) {
  const { prepareDatabase, foreignPendingSql, scopeResources, LEFT_PENDING_BY_A_PASS } =
    await import('../../store/index.js');
  await prepareDatabase(db);
  const where: string[] = [];
  const params: unknown[] = [];
  if (opts.foreign) {
    params.push(site.name, scopeResources(site));
    where.push(foreignPendingSql('$1', '$2'));
  }
  if (opts.state) {
    if (!Object.hasOwn(STATE_IDS, opts.state))
      throw new ConfigError([`--state: expected one of ${Object.keys(STATE_IDS).join(', ')}, got "${opts.state}"`]);
    params.push(STATE_IDS[opts.state as StateName]);
    where.push(`p.state_id = $${params.length}`);
  }
  if (opts.type) {
    if (!isPacketTypeName(opts.type)) throw new ConfigError([`--type: unknown packet type "${opts.type}"`]);
    params.push(PACKET_TYPE_IDS[opts.type]);
    where.push(`p.type_id = $${params.length}`);
  }
  if (opts.direction) {
    if (opts.direction !== 'in' && opts.direction !== 'out')
      throw new ConfigError([`--direction: expected in or out, got "${opts.direction}"`]);
    where.push(`p.outgoing_flag = ${opts.direction === 'out' ? 1 : 0}`);
  }
  if (opts.transaction) {
    params.push(wholeNumberOption('--transaction', opts.transaction));
    where.push(`p.trans_rec_id = $${params.length}`);
  }
  if (opts.stuck) {
    // Received, still in progress, and already seen by a pass that left it there.
    where.push(`p.outgoing_flag = 0 AND p.state_id = ${STATE_IDS['in-progress']} AND ${LEFT_PENDING_BY_A_PASS}`);
  }
  params.push(wholeNumberOption('--limit', opts.limit ?? '50'));
  const { rows } = await db.query<Record<string, unknown>>(
    `SELECT p.packet_rec_id, p.trans_rec_id, t.transaction_id::text AS transaction_id,
            CASE WHEN p.outgoing_flag = 1 THEN 'out' ELSE 'in' END AS direction,
            coalesce(td.type_name, p.type_id::text) AS type, coalesce(s.state_name, p.state_id::text) AS state, p.ts,
            coalesce(e.error_count, 0)::int AS errors, a.reason AS last_reason
       FROM packet_tbl p
       JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
       LEFT JOIN type_des td ON td.type_id = p.type_id
       LEFT JOIN state_des s ON s.state_id = p.state_id
       LEFT JOIN amie_toolkit.packet_errors e ON e.source = 'tables' AND e.packet_rec_id = p.packet_rec_id
       LEFT JOIN LATERAL (SELECT x.outcome, x.reason FROM amie_toolkit.audit x
                           WHERE x.source = 'tables' AND x.packet_rec_id = p.packet_rec_id ORDER BY x.audit_id DESC LIMIT 1) a ON true
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY p.packet_rec_id DESC
      LIMIT $${params.length}`,
    params,
  );
  return rows;
}

async function showPacket(db: Database, packetRecId: number) {
  const { prepareDatabase } = await import('../../store/index.js');
  const { PacketBody } = await import('../../protocol/body.js');
  await prepareDatabase(db);
  const { rows } = await db.query<Record<string, unknown>>(
    `SELECT p.packet_rec_id, p.packet_id::text AS packet_id, p.trans_rec_id,
            CASE WHEN p.outgoing_flag = 1 THEN 'out' ELSE 'in' END AS direction,
            coalesce(td.type_name, p.type_id::text) AS type, coalesce(s.state_name, p.state_id::text) AS state, p.version, p.ts,
            t.originating_site_name, t.transaction_id::text AS transaction_id, t.local_site_name, t.remote_site_name,
            coalesce(ts.state_name, t.state_id::text) AS transaction_state,
            coalesce((SELECT e.error_count FROM amie_toolkit.packet_errors e WHERE e.source = 'tables' AND e.packet_rec_id = p.packet_rec_id), 0)::int AS error_count
       FROM packet_tbl p
       JOIN transaction_tbl t ON t.trans_rec_id = p.trans_rec_id
       LEFT JOIN type_des td ON td.type_id = p.type_id
       LEFT JOIN state_des s ON s.state_id = p.state_id
       LEFT JOIN state_des ts ON ts.state_id = t.state_id
      WHERE p.packet_rec_id = $1`,
    [packetRecId],
  );
  const header = rows[0];
  if (!header) throw new ConfigError([`no packet with packet_rec_id ${packetRecId}`]);
  const { rows: data } = await db.query<{ tag: string; subtag: string | null; seq: number; value: string | null }>(
    'SELECT tag, subtag, seq, value FROM data_tbl WHERE packet_rec_id = $1',
    [packetRecId],
  );
  const { rows: conversation } = await db.query<Record<string, unknown>>(
    `SELECT p.packet_rec_id, p.packet_id::text AS packet_id, CASE WHEN p.outgoing_flag = 1 THEN 'out' ELSE 'in' END AS direction,
            coalesce(td.type_name, p.type_id::text) AS type, coalesce(s.state_name, p.state_id::text) AS state, p.ts
       FROM packet_tbl p LEFT JOIN type_des td ON td.type_id = p.type_id LEFT JOIN state_des s ON s.state_id = p.state_id
      WHERE p.trans_rec_id = $1 ORDER BY p.packet_id, p.outgoing_flag`,
    [header.trans_rec_id],
  );
  const audit = await db
    .query<Record<string, unknown>>(
      `SELECT at, outcome, reason, reply_packet_rec_id::float8 AS reply_packet_rec_id, reply_type, duration_ms, handler
         FROM amie_toolkit.audit WHERE source = 'tables' AND packet_rec_id = $1 ORDER BY audit_id`,
      [packetRecId],
    )
    .then((r) => r.rows)
    .catch(() => [] as Record<string, unknown>[]); // a database where the toolkit never ran has no audit
  return {
    header: header as Record<string, unknown> & {
      type: string;
      direction: string;
      trans_rec_id: number;
      transaction_state: string;
    },
    body: PacketBody.fromRows(data).toJSON(),
    conversation,
    audit,
  };
}
