// The flow of `ami-guard run`: AMI messages in, events normalised, decisions made, state in the store, bans out
// to the firewall. Nothing here blocks the event loop: each message costs a parse and at most one store call,
// whose reply is handled asynchronously.
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { RawMessage, SecurityEvent } from '../events/types.js';
import { normalise } from '../events/normalise.js';
import { Policy } from '../policy/policy.js';
import type { BanRecord, Store } from '../store/store.js';
import type { Firewall, FirewallBan } from '../firewall/firewall.js';
import { parseTarget } from '../net/ip.js';
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
  readonly now?: () => number;
}

const STORE_ERROR_LOG_INTERVAL_MS = 5_000;

export interface DaemonEvents {
  /** a ban decided by this node (not one learnt from the store or another node) */
  ban: [BanRecord];
}

export class Daemon extends EventEmitter<DaemonEvents> {
  private readonly cache = new BanCache();
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  private lastStoreErrorLog = 0;
  private stopping = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly o: DaemonOptions) {
    super();
    this.now = o.now ?? Date.now;
    this.onMessage = this.onMessage.bind(this);
  }

  async start(): Promise<void> {
    await this.o.firewall.init();
    await this.reconcile('start-up');
    this.o.source.on('message', this.onMessage);
    this.sweepTimer = setInterval(() => this.cache.sweep(this.now()), 60_000).unref();
    await this.o.source.start();
  }

  /** Makes the kernel sets equal the store's active bans, with their remaining time as timeouts. */
  async reconcile(why: string): Promise<void> {
    const started = this.now();
    const bans: FirewallBan[] = [];
    for await (const page of this.o.store.activeBans(started)) {
      for (const b of page) {
        const target = parseTarget(b.address);
        if (!target || target.text !== b.address) {
          this.o.logger.warn({ address: b.address.slice(0, 80) }, 'store holds a ban for an invalid address; skipped');
          continue;
        }
        bans.push({ target, timeoutMs: b.until - started });
        this.cache.set(target.text, b.until);
      }
    }
    const r = await this.o.firewall.reconcile(bans);
    this.o.logger.info({ why, bans: r.total, added: r.added, removed: r.removed, ms: this.now() - started }, 'reconciled firewall with store');
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
    const decision = this.o.policy.decide(event);
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
      // shedding a failure loses one count, never a decided ban: bans are applied from the store's verdicts
      this.o.metrics.shed.inc();
      return;
    }
    this.o.metrics.failures.inc({ kind: event.kind });
    this.count(event, decision.weight);
  }

  private count(event: SecurityEvent, weight: number): void {
    this.pending++;
    this.o.metrics.pending.set(this.pending);
    this.o.store
      .recordFailure({ address: event.address, kind: event.kind, account: event.accountId, weight, now: event.receivedAt })
      .then((verdict) => {
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

  private enforce(ban: Pick<BanRecord, 'address' | 'until'> & Partial<BanRecord>, newBan: boolean): void {
    const target = parseTarget(ban.address);
    if (!target) return;
    const now = this.now();
    this.cache.set(target.text, ban.until);
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
    this.o.firewall.add([{ target, timeoutMs: ban.until - now }]).catch((err: unknown) => {
      this.o.metrics.firewallErrors.inc();
      this.o.logger.error({ address: target.text, err: (err as Error).message }, 'could not apply ban to nftables');
    });
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
    await this.idle();
    await this.o.firewall.shutdown();
    await this.o.store.close();
  }
}
