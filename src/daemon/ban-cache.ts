import { contains, type IpPrefix, type IpTarget } from '../net/ip.js';
import { TargetMap } from '../net/target-map.js';

/**
 * What this node knows is banned, so events from an address already in the kernel set cost no store round trip. A
 * hint only: the store stays the truth (a miss just asks it). Bounded: past `max` entries the oldest go.
 * Banned networks are also kept parsed, so `ami-guard show` can name the network that covers an address.
 */
export class BanCache {
  private readonly bans = new TargetMap();
  /** the networks ever set and not deleted or swept (few): what `covering` searches; `bans` says if still in force */
  private readonly networks = new Map<string, IpPrefix>();

  constructor(private readonly max = 200_000) {}

  get size(): number {
    return this.bans.size;
  }

  isBanned(target: IpTarget, now: number): boolean {
    const until = this.bans.get(target);
    if (until === undefined) return false;
    if (until > now) return true;
    this.delete(target);
    return false;
  }

  /** the end of the ban known for exactly `target` (not one covering it), over or not; undefined when none */
  until(target: IpTarget): number | undefined {
    return this.bans.get(target);
  }

  set(target: IpTarget, until: number): void {
    this.bans.set(target, until);
    if (target.kind === 'prefix') this.networks.set(target.text, target);
    if (this.bans.size > this.max) this.bans.dropOldest();
  }

  delete(target: IpTarget): void {
    this.bans.delete(target);
    if (target.kind === 'prefix') this.networks.delete(target.text);
  }

  /** the bans in force: what to re-assert when the store cannot be read */
  *active(now: number): IterableIterator<[target: IpTarget, until: number]> {
    for (const [target, until] of this.bans.entries()) if (until > now) yield [target, until];
  }

  /** The bans in force that cover `target`: its own, and every banned network that contains it. */
  covering(target: IpTarget, now: number): Array<{ readonly target: IpTarget; readonly until: number }> {
    const out: Array<{ target: IpTarget; until: number }> = [];
    const own = this.bans.get(target);
    if (own !== undefined && own > now) out.push({ target, until: own });
    for (const [text, network] of this.networks) {
      if (text === target.text || !contains(network, target)) continue;
      const until = this.bans.get(network);
      if (until !== undefined && until > now) out.push({ target: network, until });
    }
    return out;
  }

  sweep(now: number): void {
    this.bans.sweep(now);
    for (const [text, network] of this.networks) if (!this.bans.has(network)) this.networks.delete(text);
  }
}
