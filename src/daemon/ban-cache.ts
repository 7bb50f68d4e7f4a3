import type { IpTarget } from '../net/ip.js';

/**
 * What this node knows is banned, so events from an address already in the kernel set cost no store round trip. A
 * hint only: the store stays the truth (a miss just asks it). Bounded: past `max` entries the oldest go. Keeps the
 * parsed target, so what it knows can be re-asserted without parsing text again.
 */
export class BanCache {
  private readonly bans = new Map<string, { readonly target: IpTarget; readonly until: number }>();

  constructor(private readonly max = 200_000) {}

  get size(): number {
    return this.bans.size;
  }

  isBanned(text: string, now: number): boolean {
    const b = this.bans.get(text);
    if (b === undefined) return false;
    if (b.until > now) return true;
    this.bans.delete(text);
    return false;
  }

  set(target: IpTarget, until: number): void {
    this.bans.delete(target.text); // re-insert so Map order stays oldest-first
    this.bans.set(target.text, { target, until });
    if (this.bans.size > this.max) {
      const oldest = this.bans.keys().next();
      if (!oldest.done) this.bans.delete(oldest.value);
    }
  }

  delete(target: IpTarget): void {
    this.bans.delete(target.text);
  }

  /** the bans in force, oldest first: what to re-assert when the store cannot be read */
  *active(now: number): IterableIterator<[target: IpTarget, until: number]> {
    for (const b of this.bans.values()) if (b.until > now) yield [b.target, b.until];
  }

  sweep(now: number): void {
    for (const [text, b] of this.bans) if (b.until <= now) this.bans.delete(text);
  }
}
