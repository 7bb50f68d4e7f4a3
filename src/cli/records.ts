import { parseTarget, type IpTarget } from '../net/ip.js';
import type { BanRecord, Store } from '../store/store.js';

/** An active ban: its address parsed once, and its record. */
export interface ActiveBanEntry {
  readonly target: IpTarget;
  readonly record: BanRecord;
  /**
   * false: a ban the daemon enforces whose record cannot be read now (Redis is down and it was made before); only its
   * end is true, the rest of `record` is blank
   */
  readonly known?: false;
}

/** A ban known only by its end: see ActiveBanEntry.known. */
export function enforcedOnly(target: IpTarget, until: number): ActiveBanEntry {
  return {
    target,
    known: false,
    record: { address: target.text, reason: '', kinds: {}, count: 0, firstSeen: 0, lastSeen: 0, bannedAt: 0, until, node: '', previousBans: 0 },
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
