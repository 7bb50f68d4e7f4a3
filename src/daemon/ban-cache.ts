import type { IpTarget } from '../net/ip.js';
import { TargetMap } from '../net/target-map.js';

/**
 * What this node knows is banned, so events from an address already in the kernel set cost no store round trip. A
 * hint only: the store stays the truth (a miss just asks it). Bounded: past `max` entries the oldest go.
 */
export class BanCache {
  private readonly bans = new TargetMap();

  constructor(private readonly max = 200_000) {}

  get size(): number {
    return this.bans.size;
  }

  isBanned(target: IpTarget, now: number): boolean {
    const until = this.bans.get(target);
    if (until === undefined) return false;
    if (until > now) return true;
    this.bans.delete(target);
    return false;
  }

  /** the end of the ban known for exactly `target` (not one covering it), over or not; undefined when none */
  until(target: IpTarget): number | undefined {
    return this.bans.get(target);
  }

  set(target: IpTarget, until: number): void {
    this.bans.set(target, until);
    if (this.bans.size > this.max) this.bans.dropOldest();
  }

  delete(target: IpTarget): void {
    this.bans.delete(target);
  }

  /** the bans in force: what to re-assert when the store cannot be read */
  *active(now: number): IterableIterator<[target: IpTarget, until: number]> {
    for (const [target, until] of this.bans.entries()) if (until > now) yield [target, until];
  }

  sweep(now: number): void {
    this.bans.sweep(now);
  }
}
