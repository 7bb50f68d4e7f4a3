import { Policy } from '../../policy/policy.js';
import type { BanRecord } from '../../store/store.js';
import { readCliConfig, type ConfigOption } from '../context.js';
import { openOperator } from '../operator.js';
import { feedEntry, type ActiveBanEntry } from '../records.js';
import { feedNames } from '../../feeds/feeds.js';
import { feedRows, type FeedEntryRow } from '../../feeds/read.js';
import { banQuery, originOf, type BanQueryOptions } from '../ban-query.js';
import { JsonArrayWriter, age, isoTime, left, print, renderTable } from '../output.js';
import { say } from './say.js';

export interface ListOptions extends ConfigOption, BanQueryOptions {
  json?: boolean;
}

const TITLES = ['ADDRESS', 'REASON', 'BANNED', 'LEFT', 'NODE', 'BEFORE'];

/**
 * Active bans, read a page at a time (never KEYS), then the entries of the configured feeds (their reason is the
 * feed's name, their origin `feed`). `--json` without `--sort` streams as it reads, so 100k bans never sit in memory;
 * a table, or a sorted listing, is printed once everything is read, with columns as wide as what they hold. A ban the
 * daemon enforces but whose record cannot be read now (Redis down) shows `?` where it is not known.
 */
export async function list(opts: ListOptions): Promise<number> {
  const loaded = readCliConfig(opts);
  const cfg = loaded.cfg;
  const policy = new Policy(cfg.policy);
  const query = banQuery(opts, feedNames(cfg.blocklists));
  const op = await openOperator(loaded, policy);
  const now = Date.now();
  const stream = opts.json && !query.compare ? new JsonArrayWriter() : undefined;
  const kept: ActiveBanEntry[] = [];
  let note: string | undefined;
  let feedNote: string | undefined;
  try {
    ({ note } = await op.eachBan((page) => {
      for (const e of page) {
        if (!query.matches(e)) continue;
        if (stream) stream.push(entryJson(e, now));
        else kept.push(e);
      }
    }));
    const feeds = await op.feeds({ entries: true });
    if (feeds.note) feedNote = feeds.note;
    for (const row of feedRows(feeds.readings, now)) {
      const e = feedEntry(row);
      if (!query.matches(e)) continue;
      if (stream) stream.push(entryJson(e, now));
      else kept.push(e);
    }
  } finally {
    await op.close();
  }
  if (note) say(note);
  if (feedNote) say(feedNote);
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
  const rows = kept.map(({ target, record: r, known, feed }) =>
    known === false
      ? [target.text, '?', '?', left(r.until, now), '?', '?']
      : [
          target.text,
          r.reason,
          // a plain list's entry has no start of its own and no end: it stays while listed
          feed && feed.seenAt === null ? '-' : age(r.bannedAt, now),
          feed && feed.until === null ? 'listed' : left(r.until, now),
          r.node,
          feed ? '-' : String(r.previousBans),
        ],
  );
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
  if (e.known === false) {
    return {
      address: e.target.text,
      known: false,
      until: isoTime(e.record.until),
      remainingSeconds: Math.max(0, Math.floor((e.record.until - now) / 1000)),
    };
  }
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
