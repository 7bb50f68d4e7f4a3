import { parseTarget } from '../net/ip.js';
import type { BanRecord, Store } from '../store/store.js';

/**
 * The full records of the active bans, a page of the index at a time. A ban lifted or expired between the index
 * read and the record read is simply absent.
 */
export async function* activeBanRecords(store: Store, now: number): AsyncGenerator<BanRecord[]> {
  for await (const page of store.activeBans(now)) {
    const records = await Promise.all(
      page.map((b) => {
        const target = parseTarget(b.address);
        return target ? store.getBan(target, now) : Promise.resolve(null);
      }),
    );
    yield records.filter((r): r is BanRecord => r !== null);
  }
}
