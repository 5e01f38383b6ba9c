/**
 * The four official AMIE test scenarios (§7 of the protocol reference), each next request sent
 * only once the previous transaction completed, and extra checks of what a site gets wrong
 * most: repeated RecordIDs, supplements, known PIs and invalid packets.
 */
import type { Database } from '../db/index.js';
import type { PacketTypeName, TagValue } from '../protocol/index.js';
import { listTransactionPackets } from '../store/index.js';
import { CentralSite, type Check, type Conversation, type ConversationExpectations } from './central.js';
import { SimData, type SimPerson } from './people.js';
import { OFFICIAL_SCENARIOS, SCENARIO_DESCRIPTIONS, SCENARIO_NAMES, type ScenarioName } from './scenario-names.js';

/** What the simulator needs of the site's dispatcher: one pass over pending packets. */
export interface SiteRunner {
  runOnce(): Promise<{
    results: Array<{ transRecId: number; type: string; outcome: string; reason?: string }>;
  }>;
}

/** One row of a scenario's conversation: a packet central sent and the site's reply to it. */
export interface ConversationRow {
  transactionId: number;
  in: string;
  out: string;
  /** Key identifiers of both packets, tag=value. */
  ids: string;
}

export interface ScenarioReport {
  name: ScenarioName;
  official: boolean;
  description: string;
  passed: boolean;
  conversation: ConversationRow[];
  checks: Check[];
  durationMs: number;
}

export interface SimulationOptions {
  /** The site under test: local_site_name and its resource. */
  site: { name: string; resource: string; remoteSite?: string };
  /**
   * Dispatcher passes allowed per transaction before the scenario fails. A handler error is
   * deferred and retried by the dispatcher, so this must exceed its maxErrorDeferrals.
   */
  maxRounds?: number;
}

/** Raised by a step whose transaction did not end as the scenario needs: the rest is not run. */
class StepStopped extends Error {}

const KEY_TAGS = [
  'GrantNumber',
  'RecordID',
  'AllocationType',
  'ProjectID',
  'PiPersonID',
  'PiRemoteSiteLogin',
  'UserPersonID',
  'UserRemoteSiteLogin',
  'PersonID',
  'ActionType',
  'KeepPersonID',
  'DeletePersonID',
] as const;

class ScenarioRun {
  readonly checks: Check[] = [];
  readonly conversations: Conversation[] = [];

  constructor(
    readonly central: CentralSite,
    readonly site: SiteRunner,
    readonly data: SimData,
    readonly maxRounds: number,
  ) {}

  check(ok: boolean, message: string): void {
    this.checks.push({ ok, message });
  }

  /** Sends one request and plays rounds until its transaction ends. */
  async step(
    type: PacketTypeName,
    tags: Record<string, TagValue>,
    expect: ConversationExpectations = {},
  ): Promise<Conversation> {
    const c = await this.central.send(type, tags, expect);
    this.conversations.push(c);
    let lastTrouble: string | undefined;
    for (let round = 0; round < this.maxRounds && c.state === 'open'; round++) {
      const summary = await this.site.runOnce();
      for (const r of summary.results) {
        if (r.transRecId === c.transRecId && ['defer', 'error', 'unhandled'].includes(r.outcome)) {
          lastTrouble = `the site left its ${r.type} in progress (${r.outcome}${r.reason ? `: ${r.reason}` : ''})`;
        }
      }
      await this.central.transfer();
    }
    if (c.state === 'open') {
      await this.central.abandon(
        c,
        `not finished after ${this.maxRounds} rounds of the dispatcher; ${lastTrouble ?? 'the site sent no reply'}`,
      );
    }
    this.checks.push(...c.checks);
    const ended = c.state === 'completed' || (expect.failure === true && c.failedChecks.length === 0);
    if (!ended || c.failedChecks.length > 0) throw new StepStopped(c.label);
    return c;
  }

  /** A tag of the site's reply that later steps rely on; a missing one stops the scenario. */
  need(c: Conversation, type: PacketTypeName, tag: string): string {
    const v = c.replyTag(type, tag);
    if (!v) {
      this.check(false, `${c.label}: the site's ${type} has no ${tag}, which the next requests must use`);
      throw new StepStopped(c.label);
    }
    return v;
  }

  /** Opens a project the way every scenario starts. */
  async newProject(pi: SimPerson, overrides: Record<string, TagValue> = {}) {
    const rpc = this.data.rpc(pi, overrides);
    const c = await this.step('request_project_create', rpc);
    return {
      rpc,
      grantNumber: rpc.GrantNumber as string,
      projectId: this.need(c, 'notify_project_create', 'ProjectID'),
      piPersonId: this.need(c, 'notify_project_create', 'PiPersonID'),
      piLogin: this.need(c, 'notify_project_create', 'PiRemoteSiteLogin'),
    };
  }

  same(what: string, actual: string | undefined, expected: string): void {
    this.check(
      actual === expected,
      actual === expected ? `${what} is ${expected}` : `${what} is "${actual ?? ''}", expected "${expected}"`,
    );
  }
}

type ScenarioBody = (run: ScenarioRun) => Promise<void>;

const SCENARIOS: Record<ScenarioName, ScenarioBody> = {
  async request_project_reactivate(run) {
    const p = await run.newProject(run.data.person());
    const resource = [run.data.resource];
    await run.step('request_project_inactivate', {
      ProjectID: p.projectId,
      ResourceList: resource,
      Comment: 'allocation expired',
    });
    await run.step('request_project_reactivate', {
      ProjectID: p.projectId,
      ResourceList: resource,
      PersonID: p.piPersonId,
      Comment: 'renewal approved',
    });
  },

  async request_account_reactivate(run) {
    const p = await run.newProject(run.data.person({ requestedLogin: true }));
    const user = run.data.person();
    const rac = await run.step('request_account_create', run.data.rac(user, p));
    const personId = run.need(rac, 'notify_account_create', 'UserPersonID');
    const login = run.need(rac, 'notify_account_create', 'UserRemoteSiteLogin');
    run.check(personId !== p.piPersonId, `the new user got a PersonID of their own (${personId}), not the PI's`);
    const resource = [run.data.resource];
    await run.step('request_account_inactivate', {
      PersonID: personId,
      ProjectID: p.projectId,
      ResourceList: resource,
      Comment: 'left the group',
    });
    // Central reactivates an account with a new RAC naming the person, not request_account_reactivate.
    const again = await run.step('request_account_create', run.data.rac(user, p, { UserPersonID: personId }), {
      reply: { UserPersonID: personId, UserRemoteSiteLogin: login },
    });
    run.same(
      'the reactivating NAC UserRemoteSiteLogin',
      again.replyTag('notify_account_create', 'UserRemoteSiteLogin'),
      login,
    );
  },

  async request_person_merge(run) {
    const p = await run.newProject(run.data.person());
    const keep = run.data.person();
    const drop = run.data.person({ requestedLogin: true });
    const first = await run.step('request_account_create', run.data.rac(keep, p));
    const second = await run.step('request_account_create', run.data.rac(drop, p));
    const keepId = run.need(first, 'notify_account_create', 'UserPersonID');
    const dropId = run.need(second, 'notify_account_create', 'UserPersonID');
    run.check(
      keepId !== dropId,
      keepId !== dropId
        ? `two people got two PersonIDs (${keepId}, ${dropId})`
        : `two different people both got PersonID ${keepId}`,
    );
    await run.step('request_person_merge', {
      KeepPersonID: keepId,
      KeepGlobalID: keep.globalId,
      KeepPortalLogin: keep.portalLogin,
      DeletePersonID: dropId,
      DeleteGlobalID: drop.globalId,
      DeletePortalLogin: drop.portalLogin,
    });
  },

  async request_user_modify(run) {
    const pi = run.data.person();
    const p = await run.newProject(pi);
    await run.step('request_user_modify', { ActionType: 'delete', PersonID: p.piPersonId, DnList: [pi.dns[1]!] });
    await run.step('request_user_modify', {
      ActionType: 'replace',
      PersonID: p.piPersonId,
      FirstName: pi.firstName,
      LastName: pi.lastName,
      Organization: pi.organization,
      OrgCode: pi.orgCode,
      Email: `new.${pi.email}`,
      DnList: [`/DC=org/DC=cilogon/C=US/O=${pi.organization}/CN=${pi.firstName} ${pi.lastName} B${run.data.suffix}`],
    });
  },

  async record_id_repeat(run) {
    const p = await run.newProject(run.data.person());
    const again = await run.step('request_project_create', p.rpc, {
      reply: { ProjectID: p.projectId, PiPersonID: p.piPersonId },
    });
    run.same(
      `the repeated RecordID ${String(p.rpc.RecordID)}: NPC PiRemoteSiteLogin`,
      again.replyTag('notify_project_create', 'PiRemoteSiteLogin'),
      p.piLogin,
    );
  },

  async supplement(run) {
    const p = await run.newProject(run.data.person());
    const c = await run.step(
      'request_project_create',
      {
        ...p.rpc,
        AllocationType: 'supplement',
        RecordID: run.data.recordId(),
        ProjectID: p.projectId,
        PiPersonID: p.piPersonId,
        ServiceUnitsAllocated: '10000',
      },
      { reply: { ProjectID: p.projectId, PiPersonID: p.piPersonId } },
    );
    run.same(
      'the supplement NPC PiRemoteSiteLogin',
      c.replyTag('notify_project_create', 'PiRemoteSiteLogin'),
      p.piLogin,
    );
  },

  async known_pi(run) {
    const pi = run.data.person();
    const first = await run.newProject(pi);
    const second = await run.step('request_project_create', run.data.rpc(pi, { PiPersonID: first.piPersonId }), {
      reply: { PiPersonID: first.piPersonId, PiRemoteSiteLogin: first.piLogin },
      replyNot: { ProjectID: first.projectId },
    });
    const projectId = second.replyTag('notify_project_create', 'ProjectID');
    run.check(
      projectId !== undefined && projectId !== first.projectId,
      `the known PI's new grant got a new ProjectID (${projectId ?? 'none'}, first project ${first.projectId})`,
    );
  },

  async invalid_packet(run) {
    const rpc = run.data.rpc(run.data.person());
    delete rpc.GrantNumber;
    rpc.StartDate = 'next Tuesday';
    const c = await run.step('request_project_create', rpc, { failure: true });
    const itc = c.reply('inform_transaction_complete');
    const message = typeof itc?.Message === 'string' ? itc.Message : '';
    run.check(
      message.includes('GrantNumber'),
      message.includes('GrantNumber')
        ? 'the failure ITC names the missing GrantNumber'
        : `the failure ITC should name the missing GrantNumber so central can act; its Message is "${message}"`,
    );
  },
};

/**
 * Runs scenarios in order, each with fresh grant numbers and people. `db` is where central plays:
 * the site's own database when the site reads the AMIE tables, or the REST simulator's
 * (`RestSimulator.db`) when the site's dispatcher reads the REST API (`restSourceFor`); `site`
 * is that dispatcher, or `remoteSite()` for a site running as another process.
 */
export async function runScenarios(
  db: Database,
  site: SiteRunner,
  names: readonly ScenarioName[],
  options: SimulationOptions,
): Promise<ScenarioReport[]> {
  const reports: ScenarioReport[] = [];
  for (const name of names) reports.push(await runScenario(db, site, name, options));
  return reports;
}

export async function runScenario(
  db: Database,
  site: SiteRunner,
  name: ScenarioName,
  options: SimulationOptions,
): Promise<ScenarioReport> {
  const started = Date.now();
  const central = new CentralSite(db, {
    siteName: options.site.name,
    resource: options.site.resource,
    remoteSiteName: options.site.remoteSite,
  });
  const run = new ScenarioRun(
    central,
    site,
    new SimData(options.site.resource, undefined, SCENARIO_NAMES.indexOf(name)),
    options.maxRounds ?? 10,
  );
  try {
    await SCENARIOS[name](run);
  } catch (err) {
    if (!(err instanceof StepStopped)) {
      run.check(false, `the scenario stopped on an error: ${err instanceof Error ? err.message : String(err)}`);
    } else {
      const left = run.conversations.length;
      run.check(
        false,
        `scenario stopped after ${left} transaction(s): ${err.message} did not complete, later steps were not sent`,
      );
    }
  }
  const conversation = await conversationRows(db, run.conversations);
  return {
    name,
    official: (OFFICIAL_SCENARIOS as readonly string[]).includes(name),
    description: SCENARIO_DESCRIPTIONS[name],
    passed: run.checks.length > 0 && run.checks.every((c) => c.ok),
    conversation,
    checks: run.checks,
    durationMs: Date.now() - started,
  };
}

/** Thrown by the site of `queueScenarios` the first time it is asked to answer: central stops there. */
class QueuedOnly extends Error {}

/**
 * `amie simulate --queue-only`: central writes the first request of each scenario into the
 * site's AMIE tables and stops, leaving the packets for `amie process` (and `--dry-run`,
 * `packets show`, `packets retry`) to be tried by hand. `CentralSite.resume` later ships and
 * answers the site's replies. The later steps of a scenario need the whole run: plain
 * `amie simulate`.
 */
export async function queueScenarios(
  db: Database,
  names: readonly ScenarioName[],
  options: SimulationOptions,
): Promise<Array<{ scenario: ScenarioName; conversation: Conversation }>> {
  const central = new CentralSite(db, {
    siteName: options.site.name,
    resource: options.site.resource,
    remoteSiteName: options.site.remoteSite,
  });
  const stop: SiteRunner = {
    runOnce: () => Promise.reject(new QueuedOnly()),
  };
  const queued: Array<{ scenario: ScenarioName; conversation: Conversation }> = [];
  for (const name of names) {
    const run = new ScenarioRun(
      central,
      stop,
      new SimData(options.site.resource, undefined, SCENARIO_NAMES.indexOf(name)),
      1,
    );
    try {
      await SCENARIOS[name](run);
    } catch (err) {
      if (!(err instanceof QueuedOnly)) throw err;
    }
    queued.push(...run.conversations.map((conversation) => ({ scenario: name, conversation })));
  }
  return queued;
}

/** Pairs each packet central sent with the site's reply to it, from the AMIE tables. */
async function conversationRows(db: Database, conversations: Conversation[]): Promise<ConversationRow[]> {
  const rows: ConversationRow[] = [];
  for (const c of conversations) {
    const packets = await listTransactionPackets(db, c.transRecId);
    for (const [i, p] of packets.entries()) {
      if (p.outgoing) continue;
      const reply = packets.slice(i + 1).find((x) => x.outgoing);
      const next = packets.slice(i + 1).find((x) => !x.outgoing);
      const answered = reply && (!next || reply.packetId < next.packetId) ? reply : undefined;
      const ids: string[] = [];
      for (const packet of answered ? [p, answered] : [p]) {
        for (const tag of KEY_TAGS) {
          const row = packet.rows.find((r) => r.tag === tag && r.subtag === null);
          const entry = row?.value ? `${tag}=${row.value}` : undefined;
          if (entry && !ids.includes(entry)) ids.push(entry);
        }
      }
      rows.push({
        transactionId: c.transactionId,
        in: typeName(p.type, p.typeId) + (p.state === 'in-progress' ? ' (not taken)' : ''),
        out: answered
          ? typeName(answered.type, answered.typeId) + statusOf(answered)
          : p.type === 'inform_transaction_complete'
            ? '(closes)'
            : '(none)',
        ids: ids.join(' '),
      });
    }
  }
  return rows;
}

function typeName(type: string | undefined, typeId: number): string {
  return type ?? `type_id ${typeId}`;
}

function statusOf(p: { type: string | undefined; rows: Array<{ tag: string; value: string | null }> }): string {
  if (p.type !== 'inform_transaction_complete') return '';
  const status = p.rows.find((r) => r.tag === 'StatusCode')?.value;
  return status ? ` ${status}` : '';
}
