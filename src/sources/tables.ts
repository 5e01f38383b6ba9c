/**
 * The AMIE tables as a packet source: the legacy site database that the central transfer daemon
 * reads and writes. Pending packets are claimed with row locks (concurrent runs take disjoint
 * batches), and a batch's replies are written in the same transaction as everything the handler
 * recorded, so a crash loses nothing and answers nothing twice.
 */
import type { Database, Queryable } from '../db/index.js';
import type { Logger } from '../log.js';
import { PacketBody, stateName } from '../protocol/index.js';
import {
  FOREIGN_WARNING_AGE_MS,
  claimBatch,
  countForeignWaiting,
  recordDecisions,
  rowsFromJson,
  type ClaimedRow,
  type SiteScope,
} from '../store/index.js';
import type { ClaimOptions, ClaimedPacket, PacketDecision, PacketSource, RecordedDecision } from './types.js';

/** Thrown inside the transaction to roll a dry run back; carries the decisions out. */
class DryRunRollback extends Error {
  constructor(readonly decisions: PacketDecision[]) {
    super('dry run: rolled back');
  }
}

export class TablesSource implements PacketSource {
  /** The count last warned about: a long-running process (`--watch`) says it again only when it changes. */
  private foreignWarned = 0;

  constructor(
    private readonly db: Database,
    private readonly log?: Logger,
  ) {}

  get description(): string {
    return `AMIE tables in ${this.db.description}`;
  }

  /** Warns when packets no configuration of this scope takes have waited long: the one serving them may be missing. */
  async start(options: { site: SiteScope }): Promise<void> {
    if (!this.log) return;
    const waiting = await countForeignWaiting(this.db, options.site, FOREIGN_WARNING_AGE_MS);
    const changed = waiting !== this.foreignWarned;
    this.foreignWarned = waiting;
    if (waiting > 0 && changed) {
      this.log.warn(
        { foreign_waiting: waiting },
        `${waiting} pending packet(s) of another site or resource have waited over ${FOREIGN_WARNING_AGE_MS / 3_600_000} h: ` +
          'is the configuration that serves them running? (amie packets list --foreign)',
      );
    }
  }

  async runBatch(
    options: ClaimOptions,
    handle: (packets: ClaimedPacket[], tx: Queryable) => Promise<PacketDecision[]>,
  ): Promise<RecordedDecision[]> {
    try {
      return await this.db.transaction(async (tx) => {
        if ((await options.lock?.(tx)) === false) return [];
        const rows = await claimBatch(tx, options);
        if (rows.length === 0) return [];
        const decisions = await handle(rows.map(claimedPacket), tx);
        if (options.dryRun) throw new DryRunRollback(decisions);
        const ids = await recordDecisions(tx, decisions);
        return decisions.map((d, i) => ({ ...d, replyPacketRecId: ids[i] ?? null }));
      });
    } catch (err) {
      if (err instanceof DryRunRollback) return err.decisions.map((d) => ({ ...d, replyPacketRecId: null }));
      throw err;
    }
  }
}

function claimedPacket(row: ClaimedRow): ClaimedPacket {
  return {
    packetRecId: row.packet_rec_id,
    packetId: Number(row.packet_id),
    typeId: Number(row.type_id),
    transaction: {
      transRecId: row.trans_rec_id,
      originatingSiteName: row.originating_site_name,
      transactionId: Number(row.transaction_id),
      localSiteName: row.local_site_name,
      remoteSiteName: row.remote_site_name,
      state: stateName(Number(row.trans_state_id)) ?? 'in-progress',
      ts: row.trans_ts,
    },
    body: PacketBody.fromRows(rowsFromJson(row.data)),
    request: row.request
      ? {
          packetRecId: row.request.packet_rec_id,
          packetId: Number(row.request.packet_id),
          typeId: Number(row.request.type_id),
          body: PacketBody.fromRows(rowsFromJson(row.request.data)),
        }
      : null,
    errorCount: row.error_count,
  };
}
