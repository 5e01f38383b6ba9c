/**
 * A small site handler to start from: answers account requests with the site's own login
 * scheme, and leaves everything else to a person (deferred) or to the built-in types it does
 * not implement (reported as unhandled and left in place).
 *
 * Point the config at the compiled file:   handler: { module: ./handlers/my-site.js, options: { prefix: x } }
 * It answers no request_project_create, so `amie simulate --scenario all` passes only its
 * invalid_packet check; `amie init handler DIR` starts a handler that passes them all.
 */
import { z } from 'zod';
import { AmieHandler, defer, type IncomingPacket, type PacketContext } from 'amie-toolkit';

const Options = z
  .object({
    prefix: z
      .string()
      .regex(/^[a-z]{1,4}$/)
      .default('x'),
  })
  .strict();

export default class MySiteHandler extends AmieHandler<z.infer<typeof Options>> {
  static override handlerName = 'my-site';
  static override optionsSchema = Options;

  override async request_account_create(p: IncomingPacket<'request_account_create'>, ctx: PacketContext) {
    // Only packets of site.resource (or site.resources) reach the handler: no need to check p.resource.
    const last = p.tags.UserLastName.normalize('NFD')
      .replace(/[^a-zA-Z]/g, '')
      .toLowerCase()
      .slice(0, 12);
    if (!last) return defer('cannot derive a login from the name: an operator must choose one');
    const login = `${this.options.prefix}${last}`;
    ctx.log.info({ login }, 'creating account');
    // ... create the Unix account here (idempotently: the packet may be offered again after a crash) ...
    return {
      UserPersonID: login,
      UserRemoteSiteLogin: login,
      ProjectID: p.tags.ProjectID ?? p.tags.GrantNumber,
      AccountActivityTime: new Date().toISOString(),
    };
  }

  override async data_account_create(p: IncomingPacket<'data_account_create'>, ctx: PacketContext) {
    ctx.log.info({ dns: p.tags.DnList ?? [] }, 'central recorded the account');
    // Returning nothing answers with a success inform_transaction_complete.
  }
}
