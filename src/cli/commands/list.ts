import { Policy } from '../../policy/policy.js';
import type { BanRecord } from '../../store/store.js';
import { connect, loadCliConfig, type ConfigOption } from '../context.js';
import { activeBanRecords } from '../records.js';
import { JsonArrayWriter, Table, age, isoTime, left } from '../output.js';

export interface ListOptions extends ConfigOption {
  json?: boolean;
}

// 24 + 9 + 9 + 8 + 12 + 6 + 2-space gaps = 78 columns: an IPv4 or short IPv6 row fits an 80-column terminal
const COLUMNS = [
  { title: 'ADDRESS', width: 24 },
  { title: 'REASON', width: 9 },
  { title: 'BANNED', width: 9 },
  { title: 'LEFT', width: 8 },
  { title: 'NODE', width: 12 },
  { title: 'BEFORE', width: 6 },
];

/** Active bans, a page of the index at a time (never KEYS), printed as they arrive. */
export async function list(opts: ListOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const conn = await connect(cfg, new Policy(cfg.policy));
  const now = Date.now();
  const json = opts.json ? new JsonArrayWriter() : undefined;
  const table = json ? undefined : new Table(COLUMNS);
  let count = 0;
  try {
    for await (const records of activeBanRecords(conn.store, now)) {
      for (const r of records) {
        if (count++ === 0) table?.header();
        if (json) json.push(toJson(r, now));
        else table!.row([r.address, r.reason, age(r.bannedAt, now), left(r.until, now), r.node.slice(0, 12), String(r.previousBans)]);
      }
    }
  } finally {
    await conn.close();
  }
  if (json) json.end();
  else if (count === 0) process.stdout.write('no active bans\n');
  return 0;
}

export function toJson(r: BanRecord, now: number): Record<string, unknown> {
  return {
    address: r.address,
    reason: r.reason,
    ...(r.note ? { note: r.note } : {}),
    bannedAt: isoTime(r.bannedAt),
    until: isoTime(r.until),
    remainingSeconds: Math.max(0, Math.round((r.until - now) / 1000)),
    node: r.node,
    previousBans: r.previousBans,
    count: r.count,
    kinds: r.kinds,
    firstSeen: isoTime(r.firstSeen),
    lastSeen: isoTime(r.lastSeen),
  };
}
