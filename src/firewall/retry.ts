// Tries failed nft writes again. A ban the daemon decided is safe in the store, but a failed `nft` run (netlink busy
// or out of memory, nft being upgraded, a run killed by its timeout) would otherwise leave the attacker free until
// the next reconciliation (fleet.reconcileInterval, 5 min), and a failed unban would keep blocking a customer as long.
// A write is retried only when nft itself failed (an NftError), never when it was refused before reaching nft (a
// non-canonical element, a shut-down firewall): that would fail again the same way.
import type { IpTarget } from '../net/ip.js';
import type { Logger } from '../log.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from './firewall.js';
import { NftError } from './nft-runner.js';

export interface RetryingFirewallOptions {
  readonly logger: Logger;
  /** tries per write, the first included; default 5 */
  readonly attempts?: number;
  /** wait before the first retry, doubling for each next one; default 500 ms (5 tries span 7.5 s) */
  readonly firstDelayMs?: number;
  /** counts each failed try that will be retried */
  readonly onRetry?: () => void;
  readonly now?: () => number;
}

/** a write's identity, so a later write of the same target can tell an earlier one's retries to give way */
type WriteId = object;

export class RetryingFirewall implements Firewall {
  private readonly attempts: number;
  private readonly firstDelayMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  /** the last write asked for, per target */
  private readonly latest = new Map<string, WriteId>();
  private readonly sleepers = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly inner: Firewall,
    private readonly o: RetryingFirewallOptions,
  ) {
    this.attempts = o.attempts ?? 5;
    this.firstDelayMs = o.firstDelayMs ?? 500;
    this.now = o.now ?? Date.now;
    this.log = o.logger.child({ component: 'firewall' });
  }

  init(): Promise<void> {
    return this.inner.init();
  }

  /** Resolves once the bans are in the kernel, after retries if need be; a retry keeps each ban's original end. */
  add(bans: readonly FirewallBan[]): Promise<void> {
    const id: WriteId = {};
    const started = this.now();
    const items = bans.map((b) => ({ target: b.target, until: started + b.timeoutMs }));
    return this.write(
      id,
      'ban',
      items.map((i) => i.target),
      () => {
        const now = this.now();
        const live = items.filter((i) => this.latest.get(i.target.text) === id && i.until > now);
        return live.length === 0 ? undefined : () => this.inner.add(live.map((i) => ({ target: i.target, timeoutMs: i.until - now })));
      },
    );
  }

  delete(targets: readonly IpTarget[]): Promise<void> {
    const id: WriteId = {};
    return this.write(id, 'unban', targets, () => {
      const live = targets.filter((t) => this.latest.get(t.text) === id);
      return live.length === 0 ? undefined : () => this.inner.delete(live);
    });
  }

  reconcile(bans: readonly FirewallBan[], at?: number): Promise<ReconcileResult> {
    return this.inner.reconcile(bans, at);
  }

  preload(bans: readonly FirewallBan[]): void {
    this.inner.preload?.(bans);
  }

  /** What the inner firewall holds queued; retries waiting for their next try are not waited for. */
  commit(): Promise<void> {
    return this.inner.commit();
  }

  list(): Promise<FirewallElement[]> {
    return this.inner.list();
  }

  present(): Promise<boolean> {
    return this.inner.present();
  }

  /** Writes still waiting for a retry fail now with their last error: the store keeps the bans for the next start. */
  async shutdown(): Promise<void> {
    this.closed = true;
    for (const wake of this.sleepers) wake();
    await this.inner.shutdown();
  }

  /**
   * Runs `next()`'s write until it succeeds, fails for good, or has nothing left to do: `next` drops the targets a
   * later write has taken over (and, for bans, those whose time is up), so a retried ban never undoes a later unban.
   * The first try starts synchronously, keeping the order of writes as the inner firewall queues them.
   */
  private async write(
    id: WriteId,
    verb: 'ban' | 'unban',
    targets: readonly IpTarget[],
    next: () => (() => Promise<void>) | undefined,
  ): Promise<void> {
    for (const t of targets) this.latest.set(t.text, id);
    try {
      for (let attempt = 1; ; attempt++) {
        const run = next();
        if (!run) return;
        try {
          await run();
          if (attempt > 1) this.log.info({ addresses: head(targets), attempts: attempt }, `nft ${verb} applied after retrying`);
          return;
        } catch (err) {
          if (!retryable(err) || attempt >= this.attempts || this.closed) throw err;
          const delayMs = this.firstDelayMs * 2 ** (attempt - 1);
          this.o.onRetry?.();
          this.log.warn(
            { addresses: head(targets), attempt, of: this.attempts, retryInMs: delayMs, err: (err as Error).message },
            `nft ${verb} failed; retrying`,
          );
          await this.sleep(delayMs);
          if (this.closed) throw err;
        }
      }
    } finally {
      for (const t of targets) if (this.latest.get(t.text) === id) this.latest.delete(t.text);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }
}

function retryable(err: unknown): boolean {
  return err instanceof NftError || (err instanceof Error && err.cause instanceof NftError);
}

/** a batch of thousands must not become a log line of thousands */
function head(targets: readonly IpTarget[]): string[] {
  const texts = targets.slice(0, 5).map((t) => t.text);
  return targets.length > 5 ? [...texts, `… ${targets.length - 5} more`] : texts;
}
