import { parseTarget, type IpTarget } from '../net/ip.js';
import type { BanRecord, Failing, Store } from '../store/store.js';
import type { FeedEntryRow } from '../feeds/read.js';

/** An active ban: its address parsed once, and its record. */
export interface ActiveBanEntry {
  readonly target: IpTarget;
  readonly record: BanRecord;
  /**
   * false: a ban the daemon enforces whose record cannot be read now (Redis is down and it was made before); only its
   * end is true, the rest of `record` is blank
   */
  readonly known?: false;
  /** set when the entry comes from a feed (its record is then made up from the feed's: reason = the feed's name) */
  readonly feed?: FeedEntryRow;
}

/** A ban known only by its end: see ActiveBanEntry.known. */
export function enforcedOnly(target: IpTarget, until: number): ActiveBanEntry {
  return {
    target,
    known: false,
    record: {
      address: target.text,
      reason: '',
      kinds: {},
      count: 0,
      firstSeen: 0,
      lastSeen: 0,
      bannedAt: 0,
      until,
      node: '',
      previousBans: 0,
    },
  };
}

/**
 * A feed's entry in the shape `list` sorts and filters: the reason is the feed's name, the node the one that pulled
 * it, the ban's start when APIBAN last listed it (a plain list's: its last pull), and a plain list's entry never ends
 * (it stays while listed).
 */
export function feedEntry(row: FeedEntryRow): ActiveBanEntry {
  const since = row.seenAt ?? row.pulledAt;
  return {
    target: row.target,
    feed: row,
    record: {
      address: row.target.text,
      reason: row.feed,
      kinds: {},
      count: 0,
      firstSeen: since,
      lastSeen: since,
      bannedAt: since,
      until: row.until ?? Infinity,
      node: row.node,
      previousBans: 0,
    },
  };
}

/**
 * The full records of the active bans, a page of the index at a time. A ban lifted or expired between the index
 * read and the record read is simply absent, and so is an index entry that is not a canonical address (Redis is
 * shared: whatever it holds is checked like outside input).
 */
export async function* activeBanRecords(store: Store, now: number): AsyncGenerator<ActiveBanEntry[]> {
  for await (const page of store.activeBans(now)) {
    const entries = await Promise.all(
      page.map(async (b): Promise<ActiveBanEntry | null> => {
        const target = parseTarget(b.address);
        if (!target || target.text !== b.address) return null;
        const record = await store.getBan(target, now);
        return record ? { target, record } : null;
      }),
    );
    yield entries.filter((e): e is ActiveBanEntry => e !== null);
  }
}

/** A target counting toward a ban, as `status` shows it (times in ms). */
export interface FailingEntry {
  readonly address: string;
  readonly failures: number;
  readonly threshold: number;
  readonly last: number;
  /** attacker text: escaped wherever it is printed */
  readonly account: string;
}

export interface FailingView {
  readonly total: number;
  /** the most failures first, the most recent among equals */
  readonly top: readonly FailingEntry[];
  /** when the answer is not the fleet's windows (the daemon's local fallback while Redis is away) */
  readonly note?: string;
}

/** A Store.failing answer as `status` carries it. */
export function failingView(f: Failing): FailingView {
  return {
    total: f.total,
    top: f.top.map((t) => ({ address: t.target.text, failures: t.failures, threshold: t.threshold, last: t.last, account: t.account })),
  };
}

/**
 * The `failing` part of a daemon's status answer, checked (a daemon of another version may answer another shape, or
 * none): entries that are not whole are left out; null when there is none to read.
 */
export function readFailing(v: unknown): FailingView | null {
  const f = v as { total?: unknown; top?: unknown; note?: unknown } | null;
  if (typeof f !== 'object' || f === null || !Number.isSafeInteger(f.total) || !Array.isArray(f.top)) return null;
  const top: FailingEntry[] = [];
  for (const e of f.top as unknown[]) {
    const t = e as Partial<Record<keyof FailingEntry, unknown>> | null;
    if (typeof t !== 'object' || t === null) continue;
    const { address, failures, threshold, last, account } = t;
    if (typeof address !== 'string' || typeof account !== 'string') continue;
    if (!Number.isSafeInteger(failures) || !Number.isSafeInteger(threshold) || !Number.isSafeInteger(last)) continue;
    top.push({ address, failures: failures as number, threshold: threshold as number, last: last as number, account });
  }
  return { total: f.total as number, top, ...(typeof f.note === 'string' ? { note: f.note } : {}) };
}
