import { Policy } from '../../policy/policy.js';
import type { BanRecord } from '../../store/store.js';
import { connect, loadCliConfig, type ConfigOption } from '../context.js';
import { activeBanRecords, feedEntry, type ActiveBanEntry } from '../records.js';
import { feedNames } from '../../feeds/feeds.js';
import { feedRows, readFeeds, type FeedEntryRow } from '../../feeds/read.js';
import { banQuery, originOf, type BanQueryOptions } from '../ban-query.js';
import { JsonArrayWriter, age, isoTime, left, print, renderTable } from '../output.js';

export interface ListOptions extends ConfigOption, BanQueryOptions {
  json?: boolean;
}

const TITLES = ['ADDRESS', 'REASON', 'BANNED', 'LEFT', 'NODE', 'BEFORE'];

/**
 * Active bans, read a page of the index at a time (never KEYS), then the entries of the configured feeds (their
 * reason is the feed's name, their origin `feed`). `--json` without `--sort` streams as it reads, so 100k bans never
 * sit in memory; a table, or a sorted listing, is printed once everything is read, with columns as wide as what they
 * hold.
 */
export async function list(opts: ListOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const query = banQuery(opts, feedNames(cfg.blocklists));
  const conn = await connect(cfg, new Policy(cfg.policy));
  const now = Date.now();
  const stream = opts.json && !query.compare ? new JsonArrayWriter() : undefined;
  const kept: ActiveBanEntry[] = [];
  try {
    for await (const page of activeBanRecords(conn.store, now)) {
      for (const e of page) {
        if (!query.matches(e)) continue;
        if (stream) stream.push(entryJson(e, now));
        else kept.push(e);
      }
    }
    if (feedNames(cfg.blocklists).length > 0) {
      for (const row of feedRows(await readFeeds(conn.redis!, cfg, { entries: true }), now)) {
        const e = feedEntry(row);
        if (!query.matches(e)) continue;
        if (stream) stream.push(entryJson(e, now));
        else kept.push(e);
      }
    }
  } finally {
    await conn.close();
  }
  if (stream) {
    stream.end();
    return 0;
  }
  if (query.compare) kept.sort(query.compare);
  if (opts.json) {
    const out = new JsonArrayWriter();
    for (const e of kept) out.push(entryJson(e, now));
    out.end();
    return 0;
  }
  if (kept.length === 0) {
    await print(query.filtered ? 'no active bans match\n' : 'no active bans\n');
    return 0;
  }
  const rows = kept.map(({ target, record: r, feed }) => [
    target.text, r.reason,
    // a plain list's entry has no start of its own and no end: it stays while listed
    feed && feed.seenAt === null ? '-' : age(r.bannedAt, now),
    feed && feed.until === null ? 'listed' : left(r.until, now),
    r.node, feed ? '-' : String(r.previousBans),
  ]);
  await print(renderTable(TITLES, rows));
  return 0;
}

/** One ban as JSON: times in ISO 8601, remaining time rounded down. */
export function toJson(r: BanRecord, now: number): Record<string, unknown> {
  return {
    address: r.address,
    reason: r.reason,
    ...(r.note ? { note: r.note } : {}),
    origin: originOf(r),
    bannedAt: isoTime(r.bannedAt),
    until: isoTime(r.until),
    remainingSeconds: Math.max(0, Math.floor((r.until - now) / 1000)),
    node: r.node,
    previousBans: r.previousBans,
    count: r.count,
    kinds: r.kinds,
    firstSeen: isoTime(r.firstSeen),
    lastSeen: isoTime(r.lastSeen),
    ...(r.members ? { members: r.members } : {}),
  };
}

/** the record under the address it was found by (parsed from the index), not the one its fields claim */
function entryJson(e: ActiveBanEntry, now: number): Record<string, unknown> {
  if (e.feed) return feedJson(e.feed, now);
  return toJson({ ...e.record, address: e.target.text }, now);
}

/** A feed's entry as JSON: the feed's name as reason, when APIBAN last listed it and until when it is held. */
export function feedJson(row: FeedEntryRow, now: number): Record<string, unknown> {
  return {
    address: row.target.text,
    reason: row.feed,
    origin: 'feed',
    feed: row.feed,
    seenAt: row.seenAt === null ? null : isoTime(row.seenAt),
    until: row.until === null ? null : isoTime(row.until),
    remainingSeconds: row.until === null ? null : Math.max(0, Math.floor((row.until - now) / 1000)),
    node: row.node,
    pulledAt: isoTime(row.pulledAt),
  };
}
