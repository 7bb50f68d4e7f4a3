// A map from ban targets to the time their ban ends, compact enough to hold every ban of a large attack: an IPv4
// address is a small-integer key with its end in whole seconds as a small-integer value, so 100k bans cost a hash
// table and no object per entry (with an object, a parsed address and a string each they cost ~300 bytes a piece, and
// the daemon and the firewall each keep one). Networks and IPv6 addresses, which are few, keep their parsed target.
// Ends are rounded up to the whole second, as the kernel's timeouts are.
import { ipv4, type IpTarget } from './ip.js';

export class TargetMap {
  /** (IPv4 address | 0) → end, seconds since the epoch */
  private readonly v4 = new Map<number, number>();
  private readonly other = new Map<string, { readonly target: IpTarget; readonly untilS: number }>();

  get size(): number {
    return this.v4.size + this.other.size;
  }

  /** `until` in ms since the epoch; a target set again moves to the end of the insertion order */
  set(target: IpTarget, until: number): void {
    const s = Math.ceil(until / 1000);
    if (isV4Address(target)) {
      const key = target.words[0]! | 0;
      this.v4.delete(key);
      this.v4.set(key, s);
    } else {
      this.other.delete(target.text);
      this.other.set(target.text, { target, untilS: s });
    }
  }

  /** the end in ms, or undefined */
  get(target: IpTarget): number | undefined {
    const s = isV4Address(target) ? this.v4.get(target.words[0]! | 0) : this.other.get(target.text)?.untilS;
    return s === undefined ? undefined : s * 1000;
  }

  has(target: IpTarget): boolean {
    return isV4Address(target) ? this.v4.has(target.words[0]! | 0) : this.other.has(target.text);
  }

  delete(target: IpTarget): void {
    if (isV4Address(target)) this.v4.delete(target.words[0]! | 0);
    else this.other.delete(target.text);
  }

  clear(): void {
    this.v4.clear();
    this.other.clear();
  }

  /** Every entry, as a target (rebuilt from its number for IPv4: nothing is parsed) and its end in ms. */
  *entries(): IterableIterator<[IpTarget, number]> {
    for (const [key, s] of this.v4) yield [ipv4(key >>> 0), s * 1000];
    for (const { target, untilS } of this.other.values()) yield [target, untilS * 1000];
  }

  /** Drops the oldest entry (IPv4 first, the many); false when empty. */
  dropOldest(): boolean {
    for (const key of this.v4.keys()) {
      this.v4.delete(key);
      return true;
    }
    for (const key of this.other.keys()) {
      this.other.delete(key);
      return true;
    }
    return false;
  }

  /** Drops every entry whose end is at or before `now` (ms). */
  sweep(now: number): void {
    const s = now / 1000;
    for (const [key, u] of this.v4) if (u <= s) this.v4.delete(key);
    for (const [key, e] of this.other) if (e.untilS <= s) this.other.delete(key);
  }
}

function isV4Address(t: IpTarget): boolean {
  return t.kind === 'address' && t.family === 4;
}
