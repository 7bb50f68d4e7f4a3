import { contains, type IpPrefix, type IpTarget } from '../net/ip.js';

/**
 * What this node knows is banned, so events from an address already in the kernel set cost no Redis round trip.
 * A hint only: Redis stays the truth (a miss just asks the store). Bounded: past `max` entries the oldest go.
 * Banned networks are also kept parsed, so `ami-guard show` can name the network that covers an address.
 */
export class BanCache {
  private readonly until = new Map<string, number>();
  /** the entries that are networks (few): what `covering` searches */
  private readonly networks = new Map<string, IpPrefix>();

  constructor(private readonly max = 200_000) {}

  get size(): number {
    return this.until.size;
  }

  isBanned(address: string, now: number): boolean {
    const u = this.until.get(address);
    if (u === undefined) return false;
    if (u > now) return true;
    this.delete(address);
    return false;
  }

  set(target: IpTarget, until: number): void {
    const address = target.text;
    this.until.delete(address); // re-insert so Map order stays oldest-first
    this.until.set(address, until);
    if (target.kind === 'prefix') this.networks.set(address, target);
    if (this.until.size > this.max) {
      const oldest = this.until.keys().next();
      if (!oldest.done) this.delete(oldest.value);
    }
  }

  delete(address: string): void {
    this.until.delete(address);
    this.networks.delete(address);
  }

  /** the bans in force, oldest first: what to re-assert when the store cannot be read */
  *active(now: number): IterableIterator<[address: string, until: number]> {
    for (const [a, u] of this.until) if (u > now) yield [a, u];
  }

  /** The bans in force that cover `target`: its own, and every banned network that contains it. */
  covering(target: IpTarget, now: number): Array<{ readonly target: IpTarget; readonly until: number }> {
    const out: Array<{ target: IpTarget; until: number }> = [];
    const own = this.until.get(target.text);
    if (own !== undefined && own > now) out.push({ target, until: own });
    for (const [text, network] of this.networks) {
      if (text === target.text || !contains(network, target)) continue;
      const u = this.until.get(text);
      if (u !== undefined && u > now) out.push({ target: network, until: u });
    }
    return out;
  }

  sweep(now: number): void {
    for (const [a, u] of this.until) if (u <= now) this.delete(a);
  }
}
