import { parseTarget, type IpTarget } from '../net/ip.js';
import type { BanRecord, Store } from '../store/store.js';

/** An active ban: its address parsed once, and its record. */
export interface ActiveBanEntry {
  readonly target: IpTarget;
  readonly record: BanRecord;
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
