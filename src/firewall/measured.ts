// A Firewall decorator for the metrics: it times every write into the nft apply histogram and keeps the bans in force
// per family for the active-bans gauge. Counting here rather than reading the kernel because a listing of the sets
// costs over a second at 100k elements, while every write passes through here anyway and the kernel expires each
// element on exactly the timeout handed to it, so a ban's end is known without asking.
import { performance } from 'node:perf_hooks';
import { parseTarget, type IpFamily, type IpTarget } from '../net/ip.js';
import type { ActiveBanCount, Metrics } from '../metrics.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from './firewall.js';

export class MeasuredFirewall implements Firewall {
  private readonly active: ActiveBans;

  constructor(
    private readonly inner: Firewall,
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
  ) {
    this.active = new ActiveBans(now);
    metrics.countActiveBans = () => this.active.count();
  }

  init(): Promise<void> {
    return this.inner.init();
  }

  async add(bans: readonly FirewallBan[]): Promise<void> {
    await this.timed('add', () => this.inner.add(bans));
    // the kernel starts an element's timeout when the transaction lands, which is now
    const now = this.now();
    for (const b of bans) this.active.set(b.target, now + b.timeoutMs);
  }

  async delete(targets: readonly IpTarget[]): Promise<void> {
    await this.timed('delete', () => this.inner.delete(targets));
    for (const t of targets) this.active.delete(t);
  }

  async reconcile(bans: readonly FirewallBan[]): Promise<ReconcileResult> {
    const result = await this.timed('reconcile', () => this.inner.reconcile(bans));
    const now = this.now();
    this.active.replace(bans.map((b) => [b.target, now + b.timeoutMs]));
    return result;
  }

  commit(): Promise<void> {
    return this.inner.commit();
  }

  list(): Promise<FirewallElement[]> {
    return this.inner.list();
  }

  present(): Promise<boolean> {
    return this.inner.present();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  /**
   * One ban per set (IPv4 and IPv6, hosts and networks) that was written here and has at least `marginMs` left, for a
   * watchdog to look up in the kernel. The oldest of each, so the same ones come back until they end or are lifted.
   */
  inForce(marginMs: number): IpTarget[] {
    return this.active.oldest(marginMs);
  }

  private async timed<T>(op: 'add' | 'delete' | 'reconcile', fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      this.metrics.nftApply.observe({ op }, (performance.now() - started) / 1000);
    }
  }
}

/**
 * Bans in force by target, with the time each lapses. Lapsed entries go at every count and, so that nothing grows
 * while nobody scrapes, whenever the table has doubled since the last sweep.
 */
class ActiveBans {
  private readonly until = new Map<string, { readonly family: IpFamily; readonly at: number }>();
  private sweptSize = 0;

  constructor(private readonly now: () => number) {}

  set(target: IpTarget, at: number): void {
    this.until.set(target.text, { family: target.family, at });
    if (this.until.size > 2 * this.sweptSize + 1024) this.sweep();
  }

  delete(target: IpTarget): void {
    this.until.delete(target.text);
  }

  replace(entries: ReadonlyArray<readonly [IpTarget, number]>): void {
    this.until.clear();
    for (const [target, at] of entries) this.until.set(target.text, { family: target.family, at });
    this.sweptSize = this.until.size;
  }

  count(): ActiveBanCount {
    this.sweep();
    let ipv4 = 0;
    for (const e of this.until.values()) if (e.family === 4) ipv4++;
    return { ipv4, ipv6: this.until.size - ipv4 };
  }

  oldest(marginMs: number): IpTarget[] {
    const after = this.now() + marginMs;
    const found = new Map<string, string>();
    for (const [text, { family, at }] of this.until) {
      const set = `${family}${text.includes('/') ? 'net' : 'host'}`;
      if (at >= after && !found.has(set)) found.set(set, text);
      if (found.size === 4) break;
    }
    return [...found.values()].map((text) => parseTarget(text)).filter((t): t is IpTarget => t !== null);
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, e] of this.until) if (e.at <= now) this.until.delete(key);
    this.sweptSize = this.until.size;
  }
}
