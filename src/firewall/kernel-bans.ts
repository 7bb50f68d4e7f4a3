// What this process knows to be in our kernel sets: every element it wrote, with the time the kernel expires it.
// Kept from the writes themselves, never by listing the sets (over half a second at 100k elements): the kernel
// removes each element on exactly the timeout handed to it, so an element's end is known without asking. It feeds the
// active-bans gauge, the watchdog's sample of bans that must be in the kernel, and a reconciliation's list of what it
// removed. `complete` says whether it covers the whole sets: not at start-up when our table was already there (a
// previous run's elements are unknown until one listing), and again after that listing or a table we created.
import type { IpTarget } from '../net/ip.js';
import { TargetMap } from '../net/target-map.js';
import type { ActiveBanCount } from '../metrics.js';
import type { FirewallBan } from './firewall.js';

export class KernelBans {
  private readonly bans = new TargetMap();
  private sweptSize = 0;
  complete = false;

  constructor(private readonly now: () => number = Date.now) {}

  /** entries kept, lapsed ones included until the next sweep */
  get size(): number {
    return this.bans.size;
  }

  set(target: IpTarget, until: number): void {
    this.bans.set(target, until);
    // lapsed entries also go whenever the map has doubled since the last sweep, so nothing grows while nobody counts
    if (this.bans.size > 2 * this.sweptSize + 1024) this.sweep();
  }

  delete(target: IpTarget): void {
    this.bans.delete(target);
  }

  /**
   * The sets now hold exactly these bans, each from `at` for its timeout (a reconciliation, a migration, a table
   * created empty). Returns the elements that were in force before.
   */
  replace(bans: readonly FirewallBan[], at: number): TargetMap {
    const before = new TargetMap();
    for (const [target, until] of this.bans.entries()) if (until > at) before.set(target, until);
    this.bans.clear();
    for (const b of bans) this.bans.set(b.target, at + b.timeoutMs);
    this.sweptSize = this.bans.size;
    this.complete = true;
    return before;
  }

  /** whether an element for this target was written (and not deleted since) */
  has(target: IpTarget): boolean {
    return this.bans.has(target);
  }

  count(): ActiveBanCount {
    this.sweep();
    let ipv4 = 0;
    for (const [target] of this.bans.entries()) if (target.family === 4) ipv4++;
    return { ipv4, ipv6: this.bans.size - ipv4 };
  }

  /**
   * One element per set (IPv4 and IPv6, hosts and networks) with at least `marginMs` left, for a watchdog to look
   * up in the kernel. The oldest written of each, so the same ones come back until they end or are lifted.
   */
  oldest(marginMs: number): IpTarget[] {
    const after = this.now() + marginMs;
    const found = new Map<string, IpTarget>();
    for (const [target, until] of this.bans.entries()) {
      const set = `${target.family}${target.kind}`;
      if (until >= after && !found.has(set)) found.set(set, target);
      if (found.size === 4) break;
    }
    return [...found.values()];
  }

  private sweep(): void {
    this.bans.sweep(this.now());
    this.sweptSize = this.bans.size;
  }
}
