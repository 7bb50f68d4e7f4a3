// Which active bans a verb works on, and in what order: the filters and sort keys `list` offers and `unban --all`
// shares, so "the bans list shows" and "the bans unban --all lifts" are the same set.
import type { IpTarget } from '../net/ip.js';
import type { BanRecord } from '../store/store.js';
import { LABEL_VALUES } from '../metrics.js';
import { didYouMean } from '../config/nearest.js';
import { CliError, EXIT_USAGE } from './context.js';
import type { ActiveBanEntry } from './records.js';

/**
 * Who made a ban. A ban record does not store it: only the CLI makes `manual` bans, and every other reason is decided
 * by a daemon (its node is the record's `node`). A feed's entries are not ban records: their origin is `feed`.
 */
export const ORIGINS = ['daemon', 'cli', 'feed'] as const;
export type Origin = (typeof ORIGINS)[number];

export function originOf(r: Pick<BanRecord, 'reason'>): Origin {
  return r.reason === 'manual' ? 'cli' : 'daemon';
}

export const SORT_KEYS = ['left', 'banned', 'address', 'reason', 'node', 'before'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export interface BanQueryOptions {
  /** comma-separated lists, each option possibly given several times */
  reason?: string[];
  node?: string[];
  origin?: string[];
  sort?: string;
  reverse?: boolean;
}

export interface BanQuery {
  /** whether any filter was given */
  readonly filtered: boolean;
  matches(e: ActiveBanEntry): boolean;
  /** undefined: the store's own order (soonest to expire first, as the index is kept) */
  readonly compare: ((a: ActiveBanEntry, b: ActiveBanEntry) => number) | undefined;
}

/** commander's collector for a repeatable comma-separated option */
export function collectList(value: string, previous: string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v.length > 0),
  ];
}

function oneOf<T extends string>(option: string, values: readonly string[] | undefined, allowed: readonly T[]): Set<T> | undefined {
  if (!values?.length) return undefined;
  for (const v of values) {
    if (!(allowed as readonly string[]).includes(v)) {
      throw new CliError(EXIT_USAGE, `invalid ${option} ${JSON.stringify(v)}${didYouMean(v, allowed)}: one of ${allowed.join(', ')}`);
    }
  }
  return new Set(values as T[]);
}

/** `feeds`: the configured feeds' names, which are the reasons of their entries */
export function banQuery(o: BanQueryOptions, feeds: readonly string[] = []): BanQuery {
  const reasons = oneOf('--reason', o.reason, [...LABEL_VALUES.banReason, ...feeds]);
  const origins = oneOf('--origin', o.origin, ORIGINS);
  // node ids are whatever each PBX's node.id says: matched as given
  const nodes = o.node?.length ? new Set(o.node) : undefined;
  const key = o.sort === undefined ? undefined : oneOf('--sort', [o.sort], SORT_KEYS)!.values().next().value!;
  const base = key ? COMPARE[key] : undefined;
  const compare =
    base && o.reverse ? (a: ActiveBanEntry, b: ActiveBanEntry) => base(b, a) : (base ?? (o.reverse ? reverseLeft : undefined));
  const filtered = Boolean(reasons || origins || nodes);
  return {
    filtered,
    matches: (e) =>
      // a ban whose record cannot be read now matches no filter (its reason and node are not known)
      (e.known !== false || !filtered) &&
      (!reasons || reasons.has(e.record.reason as never)) &&
      (!origins || origins.has(e.feed ? 'feed' : originOf(e.record))) &&
      (!nodes || nodes.has(e.record.node)),
    compare,
  };
}

/** Numeric order: IPv4 before IPv6, then by address, a network before the addresses inside it. */
export function compareTargets(a: IpTarget, b: IpTarget): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.words.length; i++) {
    const d = a.words[i]! - b.words[i]!;
    if (d !== 0) return d;
  }
  return a.bits - b.bits;
}

const byLeft = (a: ActiveBanEntry, b: ActiveBanEntry): number => a.record.until - b.record.until || compareTargets(a.target, b.target);
const reverseLeft = (a: ActiveBanEntry, b: ActiveBanEntry): number => byLeft(b, a);

/** Each key's natural order: what an operator asks first (soonest to expire, newest, most repeated). */
const COMPARE: Record<SortKey, (a: ActiveBanEntry, b: ActiveBanEntry) => number> = {
  left: byLeft,
  banned: (a, b) => b.record.bannedAt - a.record.bannedAt || compareTargets(a.target, b.target),
  address: (a, b) => compareTargets(a.target, b.target),
  reason: (a, b) => a.record.reason.localeCompare(b.record.reason) || byLeft(a, b),
  node: (a, b) => a.record.node.localeCompare(b.record.node) || compareTargets(a.target, b.target),
  before: (a, b) => b.record.previousBans - a.record.previousBans || compareTargets(a.target, b.target),
};
