// Feeds' entries reach the kernel through the same Firewall seam, and share its sets with the daemon's own bans. This
// decorator sits between the daemon and the firewall and keeps the two from undoing each other: an element has one
// kernel timeout, so every write carries the longest end any source wants for it (a feed's entry is not cut short by
// a 1 h ban of the same address, nor the other way round); lifting one source's hold on an element re-asserts the
// others' instead of deleting it; and each reconciliation makes the sets hold the daemon's bans and every feed's
// entries together, in one transaction.
//
// The daemon's bans are remembered here as they pass (what it asked for and until when); the feeds hand over their
// enforced entries with setView(), which applies the difference from the previous ones in one add and one delete.
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { contains, type IpTarget } from '../net/ip.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from '../firewall/firewall.js';
import { countOf, diffEntries, FeedEntries } from './entries.js';
import { TargetMap } from '../net/target-map.js';

/** A feed's entries as this node enforces them, and how long each is held. */
export interface FeedView {
  readonly entries: FeedEntries;
  /** when an entry seen at `seen` (s since the epoch; 0 for a plain list) leaves the kernel unless asserted again */
  untilOf(seen: number, now: number): number;
}

export interface FeedEnforcerOptions {
  readonly logger: Logger;
  /** called as a reconciliation starts, so the feeds can rebuild their views (setView with apply false) */
  readonly beforeReconcile?: () => void;
  readonly now?: () => number;
}

interface Held {
  readonly target: IpTarget;
  readonly until: number;
}

export class FeedEnforcer implements Firewall {
  private readonly views = new Map<string, FeedView>();
  /** the daemon's bans as it asked for them: target → end (compact: one for each ban of an attack) */
  private readonly own = new TargetMap();
  /** the networks among them: what a feed's network may have stood for in the interval set */
  private readonly ownNets = new Map<string, Held>();
  private sweptSize = 0;
  private reconciledSinceInit = false;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(
    private readonly inner: Firewall,
    private readonly o: FeedEnforcerOptions,
  ) {
    this.now = o.now ?? Date.now;
    this.log = o.logger.child({ component: 'feeds' });
  }

  init(): Promise<void> {
    this.reconciledSinceInit = false;
    return this.inner.init();
  }

  /** whether a reconciliation (which writes the feeds' entries too) ran since the last init */
  get reconciled(): boolean {
    return this.reconciledSinceInit;
  }

  add(bans: readonly FirewallBan[]): Promise<void> {
    const now = this.now();
    const out: FirewallBan[] = [];
    for (const ban of bans) {
      const until = now + ban.timeoutMs;
      this.remember(ban.target, until);
      const feeds = this.feedUntil(ban.target, now);
      out.push(feeds > until ? { target: ban.target, timeoutMs: feeds - now } : ban);
    }
    return this.inner.add(out);
  }

  async delete(targets: readonly IpTarget[]): Promise<void> {
    const now = this.now();
    const gone: IpTarget[] = [];
    const kept: FirewallBan[] = [];
    for (const t of targets) {
      this.own.delete(t);
      this.ownNets.delete(t.text);
      const feeds = this.feedUntil(t, now);
      if (feeds > now) kept.push({ target: t, timeoutMs: feeds - now });
      else {
        gone.push(t);
        if (t.kind === 'prefix') kept.push(...this.inside(t, now));
      }
    }
    // a target a feed still lists stays, with the feed's timeout; what a deleted network stood for comes back
    if (gone.length > 0) await this.inner.delete(gone);
    if (kept.length > 0) await this.inner.add(kept);
  }

  reconcile(bans: readonly FirewallBan[], at?: number): Promise<ReconcileResult> {
    this.o.beforeReconcile?.();
    const now = this.now();
    // the daemon's timeouts count from `at`; the feeds' are made to count from it too
    const base = at ?? now;
    this.own.clear();
    this.ownNets.clear();
    const merged = new Map<string, FirewallBan>();
    for (const ban of bans) {
      this.remember(ban.target, base + ban.timeoutMs);
      merged.set(ban.target.text, ban);
    }
    for (const view of this.views.values()) {
      for (const ref of view.entries.refs()) {
        const until = view.untilOf(view.entries.seen(ref.family, ref.index), now);
        if (until <= now) continue;
        const timeoutMs = until - base;
        const target = view.entries.target(ref.family, ref.index);
        const there = merged.get(target.text);
        if (!there || there.timeoutMs < timeoutMs) merged.set(target.text, { target, timeoutMs });
      }
    }
    this.reconciledSinceInit = true;
    return this.inner.reconcile([...merged.values()], at);
  }

  /** the daemon's bans as the store is read; the feeds' entries join them at the reconciliation */
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

  /** the names of the feeds whose view holds exactly this target */
  feedsHolding(target: IpTarget): string[] {
    return [...this.views].filter(([, v]) => v.entries.indexOf(target) >= 0).map(([name]) => name);
  }

  /**
   * Replaces a feed's view. With `apply`, writes the difference from the previous one: new and refreshed entries in
   * one add, dropped ones in one delete (or kept with another holder's timeout). Without, only remembers it (before
   * the start-up reconciliation, which writes everything, and when views are rebuilt for one).
   */
  async setView(feed: string, view: FeedView, apply: boolean): Promise<{ added: number; removed: number; applyMs: number }> {
    const prev = this.views.get(feed);
    this.views.set(feed, view);
    if (!apply) return { added: 0, removed: 0, applyMs: 0 };
    const now = this.now();
    const before = prev?.entries ?? FeedEntries.empty(view.entries.withSeen);
    const diff = diffEntries(before, view.entries);
    const adds: FirewallBan[] = [];
    const gone: IpTarget[] = [];
    const back: FirewallBan[] = [];
    const others = [...this.views].filter(([name]) => name !== feed).map(([, v]) => v);
    const hold = (family: 4 | 6, index: number): void => {
      const target = view.entries.target(family, index);
      // this feed's own end comes from the entry itself; only the other feeds (often none) are searched
      let until = view.untilOf(view.entries.seen(family, index), now);
      until = Math.max(until, this.own.get(target) ?? 0);
      for (const other of others) {
        const i = other.entries.indexOf(target);
        if (i >= 0) until = Math.max(until, other.untilOf(other.entries.seen(target.family, i), now));
      }
      if (until > now) adds.push({ target, timeoutMs: until - now });
    };
    for (const family of [4, 6] as const) {
      for (const i of diff.added[family]) hold(family, i);
      for (const i of diff.refreshed[family]) hold(family, i);
      for (const i of diff.removed[family]) {
        const target = before.target(family, i);
        const until = this.holderUntil(target, now);
        if (until > now) back.push({ target, timeoutMs: until - now });
        else {
          gone.push(target);
          if (target.kind === 'prefix') back.push(...this.inside(target, now));
        }
      }
    }
    const started = performance.now();
    try {
      if (gone.length > 0) await this.inner.delete(gone);
      if (adds.length + back.length > 0) await this.inner.add([...adds, ...back]);
    } catch (err) {
      this.log.error(
        { feed, err: (err as Error).message },
        'feed entries not fully applied to nftables; the next reconciliation writes them',
      );
    }
    return { added: countOf(diff.added), removed: countOf(diff.removed), applyMs: Math.round(performance.now() - started) };
  }

  /**
   * Every entry of one feed (or of all) written again with its holders' end: after the table was restored while the
   * store could not be read, and for a plain list's entries before their kernel timeout runs out.
   */
  async reassert(feed?: string): Promise<void> {
    const now = this.now();
    const all: FirewallBan[] = [];
    const views = feed === undefined ? [...this.views.values()] : [this.views.get(feed)].filter((v): v is FeedView => v !== undefined);
    for (const view of views) {
      for (const ref of view.entries.refs()) {
        const target = view.entries.target(ref.family, ref.index);
        const until = this.holderUntil(target, now);
        if (until > now) all.push({ target, timeoutMs: until - now });
      }
    }
    if (all.length > 0) await this.inner.add(all);
  }

  /** the latest end any feed wants for exactly this target (0 when none lists it) */
  private feedUntil(target: IpTarget, now: number): number {
    let until = 0;
    for (const view of this.views.values()) {
      const i = view.entries.indexOf(target);
      if (i >= 0) until = Math.max(until, view.untilOf(view.entries.seen(target.family, i), now));
    }
    return until;
  }

  /** the latest end any source (a feed, the daemon) wants for exactly this target */
  private holderUntil(target: IpTarget, now: number): number {
    const own = this.own.get(target) ?? 0;
    return Math.max(own, this.feedUntil(target, now));
  }

  /**
   * What a network element may have stood for in the interval set (nft folds nested networks into the widest):
   * the feeds' and the daemon's networks inside it, each with its holders' longest end.
   */
  private inside(network: IpTarget, now: number): FirewallBan[] {
    const out = new Map<string, FirewallBan>();
    for (const view of this.views.values()) {
      for (const i of view.entries.within(network)) {
        const target = view.entries.target(network.family, i);
        if (target.kind !== 'prefix' || target.text === network.text) continue;
        const until = this.holderUntil(target, now);
        if (until > now) out.set(target.text, { target, timeoutMs: until - now });
      }
    }
    for (const held of this.ownNets.values()) {
      const t = held.target;
      if (t.family !== network.family || t.bits <= network.bits || t.text === network.text || held.until <= now) continue;
      if (!contains(network, t)) continue;
      const until = this.holderUntil(t, now);
      out.set(t.text, { target: t, timeoutMs: until - now });
    }
    return [...out.values()];
  }

  private remember(target: IpTarget, until: number): void {
    this.own.set(target, until);
    if (target.kind === 'prefix') this.ownNets.set(target.text, { target, until });
    // bans lapse on their own: forget them in sweeps, whenever the table has doubled since the last one
    if (this.own.size > 2 * this.sweptSize + 1024) {
      const now = this.now();
      this.own.sweep(now);
      for (const [k, h] of this.ownNets) if (h.until <= now) this.ownNets.delete(k);
      this.sweptSize = this.own.size;
    }
  }
}
