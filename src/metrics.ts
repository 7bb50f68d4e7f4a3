// Prometheus metrics. One registry per daemon (not prom-client's global one) so tests and the CLI can build
// several without clashing.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Bans in force per address family, as counted by whoever writes them (the measured firewall). */
export interface ActiveBanCount {
  readonly ipv4: number;
  readonly ipv6: number;
}

export class Metrics {
  readonly registry = new Registry();

  readonly events = new Counter({
    name: 'ami_guard_security_events_total',
    help: 'Security events received, by kind and service',
    labelNames: ['kind', 'service'] as const,
    registers: [this.registry],
  });
  readonly invalidEvents = new Counter({
    name: 'ami_guard_events_invalid_total',
    help: 'Security events dropped because their address was missing or not a valid IP, or their kind malformed',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly failures = new Counter({
    name: 'ami_guard_failures_total',
    help: 'Failures counted against an address',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly skipped = new Counter({
    name: 'ami_guard_events_skipped_total',
    help: 'Failure events not counted: ignore-listed or unbannable address, or already banned',
    labelNames: ['why'] as const,
    registers: [this.registry],
  });
  readonly shed = new Counter({
    name: 'ami_guard_events_shed_total',
    help: 'Failure events dropped because too many were waiting for the store',
    registers: [this.registry],
  });
  readonly bans = new Counter({
    name: 'ami_guard_bans_total',
    help: 'Bans made by this node, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'ami_guard_store_errors_total',
    help: 'Store operations that failed (e.g. Redis unreachable)',
    registers: [this.registry],
  });
  readonly storeFallbackActive = new Gauge({
    name: 'ami_guard_store_fallback_active',
    help: '1 while Redis is unreachable and events are counted and banned in the local fallback store',
    registers: [this.registry],
  });
  readonly storeFallbacks = new Counter({
    name: 'ami_guard_store_fallbacks_total',
    help: 'Times Redis became unreachable and the local fallback store took over',
    registers: [this.registry],
  });
  readonly storeFallbackEvents = new Counter({
    name: 'ami_guard_store_fallback_events_total',
    help: 'Events counted in the local fallback store while Redis was unreachable',
    registers: [this.registry],
  });
  readonly storeWriteback = new Counter({
    name: 'ami_guard_store_writeback_total',
    help: 'Bans decided during a Redis outage, by what became of them once Redis was back: written, covered (Redis already held a ban as long), expired, dropped (more than the fallback keeps)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly firewallErrors = new Counter({
    name: 'ami_guard_firewall_errors_total',
    help: 'nft writes given up on: still failing after the retries (the next reconciliation writes them)',
    registers: [this.registry],
  });
  readonly nftRetries = new Counter({
    name: 'ami_guard_nft_retries_total',
    help: 'nft writes (bans, unbans) that failed and were tried again',
    registers: [this.registry],
  });
  readonly nftWriterRestarts = new Counter({
    name: 'ami_guard_nft_writer_restarts_total',
    help: 'Times the persistent nft writer child died or was killed and was started again (the batch it held is sent again)',
    registers: [this.registry],
  });
  readonly nftRestores = new Counter({
    name: 'ami_guard_nft_restores_total',
    help: 'Times our nft table or its bans were found removed by someone else and put back',
    registers: [this.registry],
  });
  readonly amiConnected = new Gauge({
    name: 'ami_guard_ami_connected',
    help: '1 while logged in to AMI',
    registers: [this.registry],
  });
  readonly amiReconnects = new Counter({
    name: 'ami_guard_ami_reconnects_total',
    help: 'AMI connections re-established after a loss',
    registers: [this.registry],
  });
  readonly amiGapSeconds = new Counter({
    name: 'ami_guard_ami_gap_seconds_total',
    help: 'Time spent without an AMI connection after the first login',
    registers: [this.registry],
  });
  readonly pending = new Gauge({
    name: 'ami_guard_pending_events',
    help: 'Failure events waiting for the store',
    registers: [this.registry],
  });
  /** read at scrape time, so bans that lapsed since the last write are not counted */
  countActiveBans: (() => ActiveBanCount) | undefined;
  readonly activeBans = new Gauge({
    name: 'ami_guard_active_bans',
    help: 'Bans in force in the kernel sets, by address family (what ami-guard wrote, with the kernel timeouts it set)',
    labelNames: ['family'] as const,
    registers: [this.registry],
    collect: () => {
      const count = this.countActiveBans?.() ?? { ipv4: 0, ipv6: 0 };
      this.activeBans.set({ family: 'ipv4' }, count.ipv4);
      this.activeBans.set({ family: 'ipv6' }, count.ipv6);
    },
  });
  readonly unbans = new Counter({
    name: 'ami_guard_unbans_total',
    help: 'Bans lifted before their time, by source (a fixed word such as cli or fleet, never free text)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly storePing = new Histogram({
    name: 'ami_guard_store_ping_seconds',
    help: 'Round-trip time of the periodic store PING',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly nftApply = new Histogram({
    name: 'ami_guard_nft_apply_seconds',
    help: 'Time from handing bans (add), unbans (delete) or the full set (reconcile) to nft until they are in the kernel, queueing included',
    labelNames: ['op'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly notifications = new Counter({
    name: 'ami_guard_webhook_notifications_total',
    help: 'Webhook notifications by result: sent, failed (every attempt failed or the webhook refused it) or dropped (queue full, or unsent at shutdown)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor(withProcessMetrics = false) {
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'ami_guard_' });
  }
}

/** The sum of a counter over all its label values (for the status record, which has no labels). */
export async function counterTotal(counter: Counter<string>): Promise<number> {
  const { values } = await counter.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
