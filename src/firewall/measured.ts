// A Firewall decorator for the metrics: it times every write into the nft apply histogram. (The bans in force, for
// the active-bans gauge, are known by NftFirewall itself: see kernel-bans.ts.)
import { performance } from 'node:perf_hooks';
import type { IpTarget } from '../net/ip.js';
import type { Metrics } from '../metrics.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from './firewall.js';

export class MeasuredFirewall implements Firewall {
  constructor(
    private readonly inner: Firewall,
    private readonly metrics: Metrics,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  add(bans: readonly FirewallBan[]): Promise<void> {
    return this.timed('add', () => this.inner.add(bans));
  }

  delete(targets: readonly IpTarget[]): Promise<void> {
    return this.timed('delete', () => this.inner.delete(targets));
  }

  reconcile(bans: readonly FirewallBan[], at?: number): Promise<ReconcileResult> {
    return this.timed('reconcile', () => this.inner.reconcile(bans, at));
  }

  preload(bans: readonly FirewallBan[]): void {
    this.inner.preload?.(bans);
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

  private async timed<T>(op: 'add' | 'delete' | 'reconcile', fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      this.metrics.nftApply.observe({ op }, (performance.now() - started) / 1000);
    }
  }
}
