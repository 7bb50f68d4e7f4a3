// Prometheus metrics. One registry per daemon (not prom-client's global one) so tests and the CLI can build
// several without clashing.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

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
  readonly firewallErrors = new Counter({
    name: 'ami_guard_firewall_errors_total',
    help: 'nft applies that failed',
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

  constructor(withProcessMetrics = false) {
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'ami_guard_' });
  }
}
