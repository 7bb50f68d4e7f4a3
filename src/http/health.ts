// What /healthz reports. The store and firewall checks run on timers and a request only reads their last result, so a
// burst of health requests never turns into a burst of nft work or store round trips. The firewall check is a terse
// listing of the inet ruleset through the daemon's persistent nft writer (~0.3 ms, no process started). The AMI state
// is read live (it costs nothing).
import type { Firewall } from '../firewall/firewall.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import type { FallbackState } from '../store/fallback-store.js';

export type HealthPart = 'ami' | 'store' | 'firewall';

export interface HealthReport {
  readonly status: 'ok' | 'down';
  /** the parts that are down; empty when status is ok */
  readonly down: readonly HealthPart[];
  readonly ami: { readonly connected: boolean };
  readonly store: {
    readonly kind: Store['kind'];
    readonly ok: boolean;
    readonly rttMs: number | null;
    /** why the store is down, in words (`Redis at redis://10.0.0.5:6379 is unreachable: connection refused`) */
    readonly error?: string;
    /** present when the store has a local fallback: a store that is down but whose fallback is active still bans */
    readonly fallback?: FallbackState;
  };
  readonly firewall: { readonly present: boolean };
}

export interface HealthMonitorOptions {
  readonly store: Store;
  readonly firewall: Firewall;
  readonly amiConnected: () => boolean;
  /** the local fallback's state, when the store has one */
  readonly fallback?: () => FallbackState;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** default 2 s; each ping also feeds the store latency histogram */
  readonly storeIntervalMs?: number;
  /** default 5 s */
  readonly firewallIntervalMs?: number;
  /** a ping unanswered this long marks the store down; default 1 s */
  readonly pingTimeoutMs?: number;
}

export class HealthMonitor {
  // undefined until the first check: reported as down, and its first result is only news when bad
  private storeOk: boolean | undefined;
  private rttMs: number | null = null;
  private storeError: string | undefined;
  private pinging = false;
  private firewallPresent: boolean | undefined;
  private checkingFirewall = false;
  private timers: NodeJS.Timeout[] = [];
  private readonly log: Logger;
  private readonly pingTimeoutMs: number;

  constructor(private readonly o: HealthMonitorOptions) {
    this.log = o.logger.child({ component: 'health' });
    this.pingTimeoutMs = o.pingTimeoutMs ?? 1_000;
  }

  /** checks at once, then on the intervals; until the first results are in, the parts count as down */
  start(): void {
    this.checkStore();
    void this.checkFirewall();
    this.timers = [
      setInterval(() => this.checkStore(), this.o.storeIntervalMs ?? 2_000).unref(),
      setInterval(() => void this.checkFirewall(), this.o.firewallIntervalMs ?? 5_000).unref(),
    ];
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  report(): HealthReport {
    const ami = { connected: this.o.amiConnected() };
    const store = {
      kind: this.o.store.kind,
      ok: this.storeOk === true,
      rttMs: this.rttMs,
      ...(this.storeOk === false && this.storeError ? { error: this.storeError } : {}),
      ...(this.o.fallback ? { fallback: this.o.fallback() } : {}),
    };
    const firewall = { present: this.firewallPresent === true };
    const down: HealthPart[] = [];
    if (!ami.connected) down.push('ami');
    if (!store.ok) down.push('store');
    if (!firewall.present) down.push('firewall');
    return { status: down.length === 0 ? 'ok' : 'down', down, ami, store, firewall };
  }

  private checkStore(): void {
    // a ping still out has either timed out (store already marked down) or will report soon: never stack them
    if (this.pinging) return;
    this.pinging = true;
    const timer = setTimeout(() => this.setStore(false, null, 'no answer to PING'), this.pingTimeoutMs);
    this.o.store
      .ping()
      .then(
        (ms) => {
          clearTimeout(timer);
          this.o.metrics.storePing.observe(ms / 1000);
          if (ms <= this.pingTimeoutMs) this.setStore(true, ms);
          else this.setStore(false, null, `PING answered after ${Math.round(ms)} ms`);
        },
        (err: unknown) => {
          clearTimeout(timer);
          this.setStore(false, null, (err as Error).message);
        },
      )
      .finally(() => {
        this.pinging = false;
      });
  }

  private setStore(ok: boolean, rttMs: number | null, why?: string): void {
    if (ok && this.storeOk === false) this.log.info({ rttMs: Math.round(rttMs ?? 0) }, 'health: store answers again');
    if (!ok && this.storeOk !== false) this.log.warn({ why }, 'health: store down');
    this.storeOk = ok;
    this.storeError = ok ? undefined : why;
    this.rttMs = rttMs === null ? null : Math.round(rttMs * 100) / 100;
  }

  private async checkFirewall(): Promise<void> {
    if (this.checkingFirewall) return;
    this.checkingFirewall = true;
    let present: boolean;
    let why: string | undefined;
    try {
      present = await this.o.firewall.present();
    } catch (err) {
      present = false;
      why = (err as Error).message;
    } finally {
      this.checkingFirewall = false;
    }
    if (present && this.firewallPresent === false) this.log.info('health: nft table in place again');
    if (!present && this.firewallPresent !== false) this.log.warn({ why }, 'health: nft table missing or incomplete');
    this.firewallPresent = present;
  }
}
