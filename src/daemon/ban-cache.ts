/**
 * What this node knows is banned, so events from an address already in the kernel set cost no Redis round trip.
 * A hint only: Redis stays the truth (a miss just asks the store). Bounded: past `max` entries the oldest go.
 */
export class BanCache {
  private readonly until = new Map<string, number>();

  constructor(private readonly max = 200_000) {}

  get size(): number {
    return this.until.size;
  }

  isBanned(address: string, now: number): boolean {
    const u = this.until.get(address);
    if (u === undefined) return false;
    if (u > now) return true;
    this.until.delete(address);
    return false;
  }

  set(address: string, until: number): void {
    this.until.delete(address); // re-insert so Map order stays oldest-first
    this.until.set(address, until);
    if (this.until.size > this.max) {
      const oldest = this.until.keys().next();
      if (!oldest.done) this.until.delete(oldest.value);
    }
  }

  delete(address: string): void {
    this.until.delete(address);
  }

  /** the bans in force, oldest first: what to re-assert when the store cannot be read */
  *active(now: number): IterableIterator<[address: string, until: number]> {
    for (const [a, u] of this.until) if (u > now) yield [a, u];
  }

  sweep(now: number): void {
    for (const [a, u] of this.until) if (u <= now) this.until.delete(a);
  }
}
