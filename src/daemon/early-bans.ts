// Bans placed before the store has answered. The store reports a counted target on the brink (store.ts, Brink):
// failures weighing `remaining` more before `until` ban it, whatever else this node sees meanwhile. The daemon keeps
// those few targets here, and the failure that makes up the difference is banned in the kernel as it is read, while the
// store is asked about it: the ban waits for no Redis round trip (under load ~0.4 of the ~1 ms from AMI to the kernel,
// and one process less to wake up). The store's verdict on that failure settles the early ban: confirmed, its end
// replacing ours, or withdrawn when the store counted otherwise (an operator or another node changed the target
// meanwhile) or could not be asked.
//
// A brink is never too eager: events read after the verdict that reported it count down from it, and those read
// between the batch's leaving and its verdict are simply not counted down (they make the ban later, never earlier).
import type { IpTarget } from '../net/ip.js';
import type { Brink } from '../store/store.js';

/** a brink this close to the end of its findtime is not relied on: the store asked a little later might count less */
const END_MARGIN_MS = 1_000;
/** targets on the brink kept at most (a flood's round of counts puts every address there); the oldest go first */
const MAX_BRINKS = 4_096;

interface Held {
  remaining: number;
  readonly until: number;
  /** the batch whose verdict reported it (a verdict of an earlier batch knows less) */
  readonly take: number;
}

interface Placed {
  readonly until: number;
  /** batches taken from the fold when it was placed: the verdict of a later batch holding the target answers for it */
  readonly take: number;
}

export class EarlyBans {
  private readonly brinks = new Map<string, Held>();
  private readonly placed = new Map<string, Placed>();

  constructor(private readonly maxBrinks = MAX_BRINKS) {}

  /** The verdict of batch `take` on failures of `target`: on the brink, or (no brink) not any more. */
  counted(target: IpTarget, brink: Brink | undefined, take: number): void {
    // a flood's counts: nothing on the brink, nothing to look up
    if (!brink && this.brinks.size === 0) return;
    const key = target.text;
    const held = this.brinks.get(key);
    if (held && held.take > take) return;
    if (held) this.brinks.delete(key);
    if (!brink) return;
    if (this.brinks.size >= this.maxBrinks) {
      // the older half at once: one delete at a time from the front would have each eviction walk past the ones before
      let n = Math.max(1, this.maxBrinks >> 1);
      for (const k of this.brinks.keys()) {
        this.brinks.delete(k);
        if (--n === 0) break;
      }
    }
    this.brinks.set(key, { remaining: brink.remaining, until: brink.until, take });
  }

  /** A failure of `weight` from `target` read at `now`: whether it makes up the difference (the brink is then spent). */
  failure(target: IpTarget, weight: number, now: number): boolean {
    if (this.brinks.size === 0) return false;
    const key = target.text;
    const held = this.brinks.get(key);
    if (!held) return false;
    if (now >= held.until - END_MARGIN_MS) {
      this.brinks.delete(key);
      return false;
    }
    held.remaining -= weight;
    if (held.remaining > 0) return false;
    this.brinks.delete(key);
    return true;
  }

  /** A ban of `target` until `until`, placed when `take` batches had left the fold. */
  place(target: IpTarget, until: number, take: number): void {
    this.placed.set(target.text, { until, take });
  }

  isPlaced(target: IpTarget): boolean {
    return this.placed.size > 0 && this.placed.has(target.text);
  }

  /**
   * The end of the early ban of `target` that the verdict of batch `take` answers for (taking it out), or undefined:
   * none placed, or placed after that batch left (its verdict knows nothing of the failure that placed it).
   */
  settle(target: IpTarget, take: number): number | undefined {
    if (this.placed.size === 0) return undefined;
    const p = this.placed.get(target.text);
    if (!p || p.take >= take) return undefined;
    this.placed.delete(target.text);
    return p.until;
  }

  /** `target` is not on the brink any more, whatever was said: a login (its threshold may rise), a ban. */
  dropBrink(target: IpTarget): void {
    if (this.brinks.size > 0) this.brinks.delete(target.text);
  }

  /** An unban: nothing known of `target` holds, and a verdict on a ban placed early is a verdict like any other. */
  forget(target: IpTarget): void {
    this.brinks.delete(target.text);
    this.placed.delete(target.text);
  }

  /** A reload: thresholds and weights may have changed, so no brink holds; placed bans still await their verdict. */
  clearBrinks(): void {
    this.brinks.clear();
  }

  get size(): { brinks: number; placed: number } {
    return { brinks: this.brinks.size, placed: this.placed.size };
  }
}
