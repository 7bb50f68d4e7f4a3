// What the CLI reads of the feeds (`list`, `show`, `status`): each configured feed's shared record and, when asked,
// its entries as pulled (before any node's ignore list: that is each node's own). Nothing is fetched from a feed.
import type { Cluster, Redis } from 'ioredis';
import type { AppConfig } from '../config/schema.js';
import { contains, type IpTarget } from '../net/ip.js';
import { FeedDataError, FeedEntries } from './entries.js';
import { describeFeeds, type FeedDescription } from './feeds.js';
import { RedisFeedState, type FeedRecord } from './state.js';

export interface FeedReading {
  readonly feed: FeedDescription;
  /** null: never pulled (or its record expired) */
  readonly record: FeedRecord | null;
  /** the entries as pulled; null when not asked for, absent, or unreadable (see `unreadable`) */
  readonly entries: FeedEntries | null;
  /** how many entries the record holds, from its header */
  readonly count: number;
  /** why the entries could not be read */
  readonly unreadable?: string;
  /** ms until the next pull is due (as the last pull left it); null when one is due now */
  readonly nextPullMs: number | null;
}

/** One entry as `list` and `show` print it. */
export interface FeedEntryRow {
  readonly feed: string;
  readonly target: IpTarget;
  /** APIBAN: when it was last listed (ms); null for a plain list */
  readonly seenAt: number | null;
  /** APIBAN: when it leaves the kernel unless listed again (ms); null for a plain list (it stays while listed) */
  readonly until: number | null;
  /** when and by which node the feed was last pulled */
  readonly pulledAt: number;
  readonly node: string;
}

export async function readFeeds(client: Redis | Cluster, cfg: AppConfig, opts: { entries: boolean }): Promise<FeedReading[]> {
  const state = new RedisFeedState(client, cfg.redis.keyPrefix, cfg.node.id);
  const out: FeedReading[] = [];
  for (const feed of describeFeeds(cfg.blocklists)) {
    const record = await state.read(feed.name);
    const left = record ? record.next - Date.now() : 0;
    const nextPullMs = left > 0 ? left : null;
    let entries: FeedEntries | null = null;
    let unreadable: string | undefined;
    if (record?.data && opts.entries) {
      try {
        entries = FeedEntries.decode(record.data, cfg.blocklists.maxEntries);
      } catch (err) {
        if (!(err instanceof FeedDataError)) throw err;
        unreadable = err.message;
      }
    }
    const count = record?.data ? (FeedEntries.count(record.data) ?? 0) : 0;
    out.push({ feed, record, entries, count, nextPullMs, ...(unreadable ? { unreadable } : {}) });
  }
  return out;
}

/** Every entry of the feeds read with their entries, in force at `now` (APIBAN's lapsed ones left out). */
export function* feedRows(readings: readonly FeedReading[], now: number): IterableIterator<FeedEntryRow> {
  for (const r of readings) {
    if (!r.entries || !r.record) continue;
    for (const ref of r.entries.refs()) {
      const row = rowOf(r, ref.family, ref.index);
      if (row.until === null || row.until > now) yield row;
    }
  }
}

/** The entries of the feeds that overlap `target` (the target itself, a network covering it, or inside it). */
export function feedMatches(readings: readonly FeedReading[], target: IpTarget, now: number): FeedEntryRow[] {
  const out: FeedEntryRow[] = [];
  for (const r of readings) {
    if (!r.entries || !r.record) continue;
    for (const ref of r.entries.refs()) {
      if (ref.family !== target.family) continue;
      const t = r.entries.target(ref.family, ref.index);
      if (!contains(t, target) && !contains(target, t)) continue;
      const row = rowOf(r, ref.family, ref.index, t);
      if (row.until === null || row.until > now) out.push(row);
    }
  }
  return out;
}

function rowOf(r: FeedReading, family: 4 | 6, index: number, target?: IpTarget): FeedEntryRow {
  const entries = r.entries!;
  const seen = entries.seen(family, index);
  const apiban = r.feed.kind === 'apiban';
  return {
    feed: r.feed.name,
    target: target ?? entries.target(family, index),
    seenAt: apiban ? seen * 1000 : null,
    until: apiban ? seen * 1000 + (r.feed.bantimeMs ?? 0) : null,
    pulledAt: r.record!.pulledAt,
    node: r.record!.node,
  };
}
