/**
 * The typed view of a body that handlers read and return. Every type here is derived from the
 * `as const` lists of spec.ts, so the view cannot drift from what validation checks.
 */
import type { PacketTypeName } from './ids.js';
import { PacketBody, type TagValue } from './body.js';
import type { COMPOSITE_SUBTAGS, ListTag, PacketTags } from './spec.js';

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The value type of one tag: a list, composite entries keyed by subtag, or plain text. */
export type TagValueOf<T extends string> = T extends keyof typeof COMPOSITE_SUBTAGS
  ? Array<{ [S in (typeof COMPOSITE_SUBTAGS)[T][number]]: string }>
  : T extends ListTag
    ? string[]
    : string;

export type RequiredTag<N extends PacketTypeName> = PacketTags[N]['required'][number];
export type AllowedTag<N extends PacketTypeName> = PacketTags[N]['allowed'][number];
/** Every tag the packet type may carry. */
export type TagName<N extends PacketTypeName> = RequiredTag<N> | AllowedTag<N>;
/** Reply tags the dispatcher copies from the request when the handler leaves them out. */
export type InferredTag<N extends PacketTypeName> = PacketTags[N] extends { readonly inferFromRequest: infer I }
  ? Extract<keyof I, string>
  : never;

/**
 * A packet type's tags: required ones always present, allowed ones optional. For a union of
 * types it is the union of their views (the conditional distributes), so a packet of one type
 * is also a packet of any union containing it.
 */
export type TagsOf<N extends PacketTypeName> = N extends PacketTypeName
  ? Simplify<
      { [T in RequiredTag<N>]: TagValueOf<T> } & { [T in Exclude<AllowedTag<N>, RequiredTag<N>>]?: TagValueOf<T> }
    >
  : never;

/** What a handler returns for a reply: TagsOf with the tags the request can supply made optional. */
export type ReplyTagsOf<N extends PacketTypeName> = N extends PacketTypeName
  ? Simplify<Omit<TagsOf<N>, InferredTag<N>> & Partial<Pick<TagsOf<N>, Extract<InferredTag<N>, keyof TagsOf<N>>>>>
  : never;

/**
 * The body as the typed view of its packet type. Unexpected tags are kept, untyped; the caller
 * is expected to have validated the body, since a missing required tag is simply absent here.
 */
export function readTags<N extends PacketTypeName>(_type: N, body: PacketBody): TagsOf<N> & Record<string, TagValue> {
  return body.toJSON() as TagsOf<N> & Record<string, TagValue>;
}

export function bodyFromTags(tags: Record<string, TagValue | undefined | null>): PacketBody {
  return PacketBody.fromTags(tags);
}
