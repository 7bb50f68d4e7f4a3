// The flow of `ami-guard run`: AMI messages in, events normalised, decisions made, state in the store, bans out
// to the firewall. Nothing here blocks the event loop: each message costs a parse and at most one store call,
// whose reply is handled asynchronously.
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { RawMessage, SecurityEvent } from '../events/types.js';
import { normalise } from '../events/normalise.js';
import { Policy, type EventDecision } from '../policy/policy.js';
import { recordEvent } from '../policy/record.js';
import { StreamDecider } from '../policy/same-request.js';
import type { BanRecord, Store } from '../store/store.js';
import type { Firewall, FirewallBan } from '../firewall/firewall.js';
import { parseTarget, unbannableReason, type IpTarget } from '../net/ip.js';
import type { Metrics } from '../metrics.js';
import { BanCache } from './ban-cache.js';
import { formatDuration } from '../config/duration.js';

/** Where raw AMI messages come from: the live AMI supervisor, or a recording. */
export interface MessageSource extends EventEmitter {
  start(): void | Promise<void>;
  stop(): Promise<void>;
}

export interface DaemonOptions {
  readonly policy: Policy;
  readonly store: Store;
  readonly firewall: Firewall;
  readonly source: MessageSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly maxPending: number;
  /** the fleet's ban channel: where this node's bans go out and other nodes' bans and unbans come in */
  readonly fleet?: FleetLink;
  readonly now?: () => number;
}

/** What the fleet link may ask of the daemon. */
export interface FleetTarget {
  /** enforce a ban made elsewhere (idempotent) */
  applyBan(target: IpTarget, until: number): void;
  /** lift a ban everywhere it is enforced here (idempotent) */
  applyUnban(target: IpTarget): void;
  reconcile(why: string): Promise<void>;
}

export interface FleetLink {
  /** where to start reading: taken before the start-up reconciliation, so nothing said during it is missed */
  tail(): Promise<string>;
  start(from: string, target: FleetTarget): void;
  stop(): Promise<void>;
}

const STORE_ERROR_LOG_INTERVAL_MS = 5_000;

export interface DaemonEvents {
  /** a ban decided by this node (not one learnt from the store or another node) */
  ban: [BanRecord];
}

export class Daemon extends EventEmitter<DaemonEvents> implements FleetTarget {
  private readonly cache = new BanCache();
  private readonly decider: StreamDecider;
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  private lastStoreErrorLog = 0;
  private stopping = false;
  /** past the start-up reconciliation: from here a store that cannot be read is ridden out, not fatal */
  private intakeStarted = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private reconciling: Promise<void> | undefined;
  /**
   * Bans and unbans enforced while a reconciliation is in flight: its transaction replaces the sets with what the
   * store held when it was read, so these are replayed on top once it is done.
   */
  private journal: Array<{ target: IpTarget; until: number | null }> | undefined;

  constructor(private readonly o: DaemonOptions) {
    super();
    this.now = o.now ?? Date.now;
    this.decider = new StreamDecider(o.policy);
    this.onMessage = this.onMessage.bind(this);
  }

  async start(): Promise<void> {
    await this.o.firewall.init();
    const from = await this.o.fleet?.tail();
    await this.reconcile('start-up');
    if (this.o.fleet && from !== undefined) this.o.fleet.start(from, this);
    this.o.source.on('message', this.onMessage);
    this.intakeStarted = true;
    this.sweepTimer = setInterval(() => this.cache.sweep(this.now()), 60_000).unref();
    await this.o.source.start();
  }

  /** Makes the kernel sets equal the store's active bans, with their remaining time as timeouts. */
  async reconcile(why: string): Promise<void> {
    // one at a time: a second request while one runs is served by the one that runs
    if (this.reconciling) return this.reconciling;
    this.journal = [];
    this.reconciling = this.reconcileOnce(why).finally(() => {
      const journal = this.journal ?? [];
      this.journal = undefined;
      this.reconciling = undefined;
      for (const j of journal) {
        if (j.until === null) void this.removeFromFirewall(j.target);
        else void this.addToFirewall(j.target, j.until);
      }
    });
    return this.reconciling;
  }

  private async reconcileOnce(why: string): Promise<void> {
    const started = this.now();
    let bans: FirewallBan[];
    try {
      bans = await this.readActiveBans(started);
    } catch (err) {
      // at start-up there is nothing known here to fall back on: a daemon that cannot read the store does not start
      if (!this.intakeStarted) throw err;
      // The store cannot be read (Redis away): re-assert what this node knows, which never removes anything. A
      // restored table gets its bans back; the full reconciliation follows once the store answers.
      const known: FirewallBan[] = [];
      for (const [address, until] of this.cache.active(started)) {
        const target = parseTarget(address);
        if (target) known.push({ target, timeoutMs: until - started });
      }
      if (known.length > 0) await this.o.firewall.add(known);
      this.o.logger.warn(
        { why, bans: known.length, err: (err as Error).message },
        'store unreachable: re-applied the bans known here; full reconciliation once it answers',
      );
      return;
    }
    const r = await this.o.firewall.reconcile(bans);
    this.o.logger.info({ why, bans: r.total, added: r.added, removed: r.removed, ms: this.now() - started }, 'reconciled firewall with store');
  }

  private async readActiveBans(started: number): Promise<FirewallBan[]> {
    const bans: FirewallBan[] = [];
    for await (const page of this.o.store.activeBans(started)) {
      for (const b of page) {
        const target = parseTarget(b.address);
        if (!target || target.text !== b.address) {
          this.o.logger.warn({ address: b.address.slice(0, 80) }, 'store holds a ban for an invalid address; skipped');
          continue;
        }
        if (!this.mayBlock(target)) continue;
        bans.push({ target, timeoutMs: b.until - started });
        this.cache.set(target.text, b.until);
      }
    }
    return bans;
  }

  private onMessage(raw: RawMessage): void {
    const receivedAt = this.now();
    const result = normalise(raw, receivedAt);
    if (!result.ok) {
      if (result.reason !== 'not-event' && result.reason !== 'not-security') {
        this.o.metrics.invalidEvents.inc({ reason: result.reason });
        this.o.logger.debug({ reason: result.reason, kind: result.kind }, 'security event without a usable address ignored');
      }
      return;
    }
    const event = result.event;
    this.o.metrics.events.inc({ kind: event.kind, service: event.service });
    const decision = this.decider.decide(event);
    if (decision.action === 'skip') {
      if (decision.why !== 'not-a-failure') this.o.metrics.skipped.inc({ why: decision.why });
      return;
    }
    if (this.cache.isBanned(event.address.text, receivedAt)) {
      this.o.metrics.skipped.inc({ why: 'already-banned' });
      return;
    }
    if (this.stopping) return;
    if (this.pending >= this.o.maxPending) {
      // shedding an event loses one count, never a decided ban: bans are applied from the store's verdicts
      this.o.metrics.shed.inc();
      return;
    }
    if (decision.action === 'count') this.o.metrics.failures.inc({ kind: event.kind });
    this.record(event, decision);
  }

  private record(event: SecurityEvent, decision: Exclude<EventDecision, { action: 'skip' }>): void {
    this.pending++;
    this.o.metrics.pending.set(this.pending);
    recordEvent(this.o.store, event, decision, event.receivedAt)
      .then((verdict) => {
        if (!verdict) return;
        if (verdict.type === 'banned') {
          this.enforce(verdict.ban, true);
          this.emit('ban', verdict.ban);
        }
        else if (verdict.type === 'already-banned' && !this.cache.isBanned(event.address.text, this.now())) {
          // banned elsewhere (another node, or before a restart) and not yet known here: enforce it now
          this.enforce({ address: event.address.text, until: verdict.until }, false);
        }
      })
      .catch((err: unknown) => this.storeFailed(err))
      .finally(() => {
        this.pending--;
        this.o.metrics.pending.set(this.pending);
        if (this.pending === 0) this.wakeIdle();
      });
  }

  applyBan(target: IpTarget, until: number): void {
    if (until <= this.now() || !this.mayBlock(target)) return;
    this.cache.set(target.text, until);
    this.journal?.push({ target, until });
    void this.addToFirewall(target, until);
  }

  applyUnban(target: IpTarget): void {
    this.cache.delete(target.text);
    this.journal?.push({ target, until: null });
    void this.removeFromFirewall(target);
  }

  /** This node's ignore list holds for every ban, whoever made it; and no ban may cut the host off from itself. */
  private mayBlock(target: IpTarget): boolean {
    if (this.o.policy.ignore.covers(target) || unbannableReason(target)) {
      this.o.metrics.skipped.inc({ why: 'ignored' });
      this.o.logger.info({ address: target.text }, 'ban from the store or the fleet not applied here: address is ignore-listed');
      return false;
    }
    return true;
  }

  private async addToFirewall(target: IpTarget, until: number): Promise<void> {
    const timeoutMs = until - this.now();
    if (timeoutMs <= 0) return;
    try {
      await this.o.firewall.add([{ target, timeoutMs }]);
    } catch (err) {
      this.o.metrics.firewallErrors.inc();
      this.o.logger.error({ address: target.text, err: (err as Error).message }, 'could not apply ban to nftables');
    }
  }

  private async removeFromFirewall(target: IpTarget): Promise<void> {
    try {
      await this.o.firewall.delete([target]);
    } catch (err) {
      this.o.metrics.firewallErrors.inc();
      this.o.logger.error({ address: target.text, err: (err as Error).message }, 'could not lift ban in nftables');
    }
  }

  private enforce(ban: Pick<BanRecord, 'address' | 'until'> & Partial<BanRecord>, newBan: boolean): void {
    const target = parseTarget(ban.address);
    if (!target) return;
    const now = this.now();
    this.cache.set(target.text, ban.until);
    this.journal?.push({ target, until: ban.until });
    if (newBan) {
      this.o.metrics.bans.inc({ reason: ban.reason ?? 'failures' });
      this.o.logger.info(
        {
          event: 'ban',
          address: target.text,
          reason: ban.reason,
          count: ban.count,
          kinds: ban.kinds,
          duration: formatDuration(ban.until - (ban.bannedAt ?? now)),
          until: new Date(ban.until).toISOString(),
          previousBans: ban.previousBans,
        },
        `ban ${target.text}`,
      );
    }
    void this.addToFirewall(target, ban.until);
  }

  private storeFailed(err: unknown): void {
    this.o.metrics.storeErrors.inc();
    const now = this.now();
    if (now - this.lastStoreErrorLog >= STORE_ERROR_LOG_INTERVAL_MS) {
      this.lastStoreErrorLog = now;
      this.o.logger.warn({ err: (err as Error).message }, 'store operation failed; event not counted');
    }
  }

  /** Resolves once every event received so far has been decided and its bans handed to the firewall. */
  async idle(): Promise<void> {
    if (this.pending > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.o.firewall.commit();
  }

  private wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.o.source.stop();
    this.o.source.off('message', this.onMessage);
    await this.o.fleet?.stop();
    await this.idle();
    await this.o.firewall.shutdown();
    await this.o.store.close();
  }
}
