// The firewall of `run --detect-only` (like CrowdSec's simulation mode): every ban the daemon decides is kept here,
// in memory, and nothing reaches the kernel. The daemon logs each one as a ban it would have made; `list` and `show`
// through the control socket read them from the embedded store as usual.
import type { IpTarget } from '../net/ip.js';
import { TargetMap } from '../net/target-map.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from './firewall.js';

export class DetectOnlyFirewall implements Firewall {
  /** would-be elements → end (ms); a sweep when the map has doubled keeps a flood of addresses bounded by its bans */
  private readonly held = new TargetMap();
  private swept = 0;

  constructor(private readonly now: () => number = Date.now) {}

  init(): Promise<void> {
    return Promise.resolve();
  }

  add(bans: readonly FirewallBan[]): Promise<void> {
    const now = this.now();
    for (const b of bans) this.held.set(b.target, now + b.timeoutMs);
    if (this.held.size > 2 * this.swept + 1024) {
      this.held.sweep(now);
      this.swept = this.held.size;
    }
    return Promise.resolve();
  }

  delete(targets: readonly IpTarget[]): Promise<void> {
    for (const t of targets) this.held.delete(t);
    return Promise.resolve();
  }

  reconcile(bans: readonly FirewallBan[]): Promise<ReconcileResult> {
    const now = this.now();
    const before = [...this.held.entries()].filter(([, until]) => until > now).map(([t]) => t);
    this.held.clear();
    for (const b of bans) this.held.set(b.target, now + b.timeoutMs);
    const removedTargets = before.filter((t) => !this.held.has(t));
    return Promise.resolve({
      added: bans.length - (before.length - removedTargets.length),
      removed: removedTargets.length,
      total: this.held.size,
      removedTargets,
    });
  }

  commit(): Promise<void> {
    return Promise.resolve();
  }

  list(): Promise<FirewallElement[]> {
    const now = this.now();
    const out: FirewallElement[] = [];
    for (const [target, until] of this.held.entries()) {
      if (until > now) out.push({ address: target.text, target, family: target.family, expiresMs: until - now });
    }
    return Promise.resolve(out);
  }

  present(): Promise<boolean> {
    return Promise.resolve(true);
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
