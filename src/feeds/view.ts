// What this node enforces of a feed: the entries as pulled, less what its own policy refuses. The shared state in
// Redis holds what the list said; each node applies its own ignore list and never-ban rules (its own addresses and
// gateways differ), here, whenever the state changes and at every reconciliation (host facts change too).
//
// A network that covers a protected address (ignoreip, this host, a gateway, loopback, …) is split around it rather
// than skipped: a community list's /16 of a hosting provider stays enforced but for the one address you need, instead
// of the whole /16 going free because your monitoring host sits in it. The pieces are CIDR networks, at most one per
// bit between the network's prefix and the protected one's (32 for an IPv4 address, 128 for IPv6) per protected
// range inside it. A network wholly inside a protected range, and one wider than policy.widest, is skipped.
import { contains, overlaps, prefixOf, targetFromWords, type IpTarget } from '../net/ip.js';
import type { Policy } from '../policy/policy.js';
import { EntriesBuilder, type FeedEntries } from './entries.js';

export interface ViewStats {
  /** entries (or pieces) not enforced because they lie inside a protected range */
  readonly refused: number;
  /** networks enforced less a protected range inside them */
  readonly split: number;
  /** networks wider than policy.widest */
  readonly tooWide: number;
}

export interface EnforcedView {
  readonly entries: FeedEntries;
  readonly stats: ViewStats;
}

/**
 * The entries of a feed this node may enforce, split around what its policy protects. The entries a protected range
 * touches are found by binary search (those inside it, and the at most 33 or 129 networks that could contain it), and
 * too-wide ones by a scan of the prefix lengths, so a 100k list that touches nothing protected is used as it is, with
 * no entry made into a target.
 */
export function enforcedView(raw: FeedEntries, policy: Policy): EnforcedView {
  const ranges = policy.protectedRanges();
  const widest = policy.neverBan.widest;
  const touched: Record<4 | 6, Set<number>> = { 4: new Set(), 6: new Set() };
  for (const family of [4, 6] as const) {
    const bits = raw.part(family).bits;
    const min = family === 4 ? widest.ipv4 : widest.ipv6;
    for (let i = 0; i < bits.length; i++) if (bits[i]! < min) touched[family].add(i);
  }
  for (const r of ranges) {
    for (const i of raw.within(r)) touched[r.family].add(i);
    for (let b = 0; b < r.bits; b++) {
      const i = raw.indexOf(prefixOf(r, b));
      if (i >= 0) touched[r.family].add(i);
    }
  }
  if (touched[4].size + touched[6].size === 0) return { entries: raw, stats: { refused: 0, split: 0, tooWide: 0 } };

  const builder = new EntriesBuilder(raw.withSeen);
  let refused = 0;
  let split = 0;
  let tooWide = 0;
  for (const { family, index } of raw.refs()) {
    const seen = raw.seen(family, index);
    if (!touched[family].has(index)) {
      raw.addEntryTo(builder, family, index);
      continue;
    }
    const target = raw.target(family, index);
    if (policy.neverBan.reason(target)?.why === 'too wide') {
      tooWide++;
      continue;
    }
    const pieces: IpTarget[] = [];
    splitAround(target, ranges, pieces);
    if (pieces.length === 0) {
      refused++;
      continue;
    }
    if (pieces.length > 1 || pieces[0] !== target) split++;
    for (const piece of pieces) {
      // refusal() is the authority; the split above only follows the same ranges
      if (policy.refusal(piece) === null) builder.add(piece, seen);
      else refused++;
    }
  }
  return { entries: builder.build().entries, stats: { refused, split, tooWide } };
}

/** The CIDR networks covering `network` less every range of `ranges` (in address order); none when one covers it. */
export function splitAround(network: IpTarget, ranges: readonly IpTarget[], out: IpTarget[]): void {
  const hits = ranges.filter((r) => overlaps(r, network));
  if (hits.length === 0) {
    out.push(network);
    return;
  }
  if (hits.some((r) => contains(r, network))) return;
  // a host overlapping a range is contained by it, so `network` is a network wider than some range here
  const [low, high] = halves(network);
  splitAround(low, hits, out);
  splitAround(high, hits, out);
}

/** The two networks one bit longer that make up `network`. */
export function halves(network: IpTarget): [IpTarget, IpTarget] {
  const bits = network.bits + 1;
  const high = [...network.words];
  const word = Math.floor(network.bits / 32);
  high[word] = (high[word]! | (1 << (31 - (network.bits % 32)))) >>> 0;
  return [targetFromWords(network.family, network.words, bits)!, targetFromWords(network.family, high, bits)!];
}
