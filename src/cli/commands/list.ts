import { Policy } from '../../policy/policy.js';
import type { BanRecord } from '../../store/store.js';
import { connect, loadCliConfig, type ConfigOption } from '../context.js';
import { activeBanRecords, type ActiveBanEntry } from '../records.js';
import { banQuery, originOf, type BanQueryOptions } from '../ban-query.js';
import { JsonArrayWriter, age, isoTime, left, print, renderTable } from '../output.js';

export interface ListOptions extends ConfigOption, BanQueryOptions {
  json?: boolean;
}

const TITLES = ['ADDRESS', 'REASON', 'BANNED', 'LEFT', 'NODE', 'BEFORE'];

/**
 * Active bans, read a page of the index at a time (never KEYS). `--json` without `--sort` streams as it reads, so
 * 100k bans never sit in memory; a table, or a sorted listing, is printed once everything is read, with columns as
 * wide as what they hold.
 */
export async function list(opts: ListOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const query = banQuery(opts);
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
  const rows = kept.map(({ target, record: r }) => [
    target.text, r.reason, age(r.bannedAt, now), left(r.until, now), r.node, String(r.previousBans),
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
  return toJson({ ...e.record, address: e.target.text }, now);
}
