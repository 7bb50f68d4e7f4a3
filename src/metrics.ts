// Prometheus metrics: the definitions, in one registry per daemon (not prom-client's global one) so tests and the
// CLI can build several without clashing.
//
// Rules every definition here keeps, so dashboards and alerts can rely on them:
// - names are stable once published (docs/ lists them); counters end in `_total`, nothing else does;
// - label values come from the fixed lists in LABEL_VALUES, anything else is counted as `other`, so no attacker or
//   misbehaving peer can grow the series (an event kind is Asterisk's word, but a forged frame may carry any);
// - every counter is present at 0 from the first scrape, with its known label values, so `rate()` and `increase()`
//   see the first event instead of a series that appears with it;
// - the process and Node.js metrics are prom-client's defaults under their usual names (`process_cpu_seconds_total`,
//   `nodejs_heap_size_used_bytes`, …), so stock dashboards find them.
//
// Counting may be batched: a caller can keep plain numbers on its hot path and add them per batch with
// `inc(labels, n)`, or register an onScrape hook that adds them just before each scrape.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { SECURITY_EVENT_KINDS } from './config/schema.js';

/** where a label value outside its list is counted */
export const OTHER = 'other';

/** The values each label may take. */
export const LABEL_VALUES = {
  /** Asterisk's security-event catalogue */
  kind: SECURITY_EVENT_KINDS,
  /** the services that report security events: res_pjsip, chan_sip, the manager */
  service: ['PJSIP', 'SIP', 'AMI'],
  invalidReason: ['bad-kind', 'bad-address', 'bad-value'],
  injectionSign: ['repeated-header', 'out-of-place', 'foreign-line', 'cut-short', 'control-characters', 'fragment'],
  skipWhy: ['ignored', 'unbannable', 'same-request', 'already-banned'],
  banReason: ['failures', 'scanner', 'recidive', 'injection', 'manual', 'subnet'],
  unbanSource: ['cli', 'fleet'],
  writeback: ['written', 'covered', 'expired', 'dropped'],
  notification: ['sent', 'failed', 'dropped'],
  nftOp: ['add', 'delete', 'reconcile'],
  family: ['ipv4', 'ipv6'],
  /** how a ban placed before the store answered ended (src/daemon/early-bans.ts) */
  earlyBan: ['confirmed', 'withdrawn'],
  /** how a ban reached the firewall: placed on the store's brink as its failure was read, or on the store's verdict */
  banPath: ['early', 'store'],
  /** why a feed's entries are not enforced as listed */
  feedSkip: ['garbage', 'too-wide', 'refused', 'split'],
} as const satisfies Record<string, readonly string[]>;

/**
 * prom-client's defaults include three gauges named like counters (`nodejs_active_handles_total`, …); their
 * by-type siblings (`nodejs_active_handles{type}`) carry the same numbers, summed.
 */
const DEFAULT_GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * A counter whose labels take values from fixed lists (anything else becomes `other`), present at 0 for every
 * combination of the listed values from the start.
 */
export class FixedLabelCounter<L extends string> {
  readonly counter: Counter<L>;
  private readonly allowed: ReadonlyArray<readonly [L, ReadonlySet<string>]>;

  constructor(
    registry: Registry,
    o: { name: string; help: string; labels: { readonly [K in L]: readonly string[] }; preDeclareOther?: boolean },
  ) {
    const names = Object.keys(o.labels) as L[];
    this.counter = new Counter({ name: o.name, help: o.help, labelNames: names, registers: [registry] });
    this.allowed = names.map((n) => [n, new Set(o.labels[n])] as const);
    const lists = names.map((n) => (o.preDeclareOther ? [...o.labels[n], OTHER] : [...o.labels[n]]));
    for (const combination of cartesian(lists)) {
      this.counter.inc(Object.fromEntries(names.map((n, i) => [n, combination[i]!])) as LabelValues<L>, 0);
    }
  }

  inc(labels: Readonly<Record<L, string>>, n = 1): void {
    this.counter.inc(this.fix(labels), n);
  }

  get(): ReturnType<Counter<L>['get']> {
    return this.counter.get();
  }

  private fix(labels: Readonly<Record<L, string>>): LabelValues<L> {
    // no copy on the common path: every value already known
    if (this.allowed.every(([n, ok]) => ok.has(labels[n]))) return labels as LabelValues<L>;
    const out = {} as Record<L, string>;
    for (const [n, ok] of this.allowed) out[n] = ok.has(labels[n]) ? labels[n] : OTHER;
    return out as LabelValues<L>;
  }
}

function cartesian(lists: readonly (readonly string[])[]): string[][] {
  return lists.reduce<string[][]>((acc, list) => acc.flatMap((prefix) => list.map((v) => [...prefix, v])), [[]]);
}

/** Bans in force per address family, as counted by whoever writes them (the measured firewall). */
export interface ActiveBanCount {
  readonly ipv4: number;
  readonly ipv6: number;
}

export interface MetricsOptions {
  /** prom-client's default process and Node.js metrics (the daemon; not the CLI) */
  readonly processMetrics?: boolean;
  /** for ami_guard_build_info: the package version and node.id */
  readonly build?: { readonly version: string; readonly node: string };
  /** the configured feeds (blocklists): the values of the feed label; none, no feed metrics */
  readonly feeds?: readonly string[];
}

/**
 * One set of series per configured feed. The feed label takes the names from the configuration (APIBAN's and each
 * list's), a list known at start, so nothing a feed answers can add series.
 */
export class FeedMetrics {
  readonly entries: Gauge<'feed'>;
  readonly lastSuccess: Gauge<'feed'>;
  readonly skipped: Gauge<'feed' | 'why'>;
  readonly pulls: FixedLabelCounter<'feed'>;
  readonly errors: FixedLabelCounter<'feed'>;

  constructor(registry: Registry, feeds: readonly string[]) {
    this.entries = new Gauge({
      name: 'ami_guard_feed_entries',
      help: 'Entries of each feed this node enforces (after its ignore list and never-ban rules; a network split around a protected address counts its pieces)',
      labelNames: ['feed'] as const,
      registers: [registry],
    });
    this.lastSuccess = new Gauge({
      name: 'ami_guard_feed_last_success_timestamp_seconds',
      help: 'When each feed was last pulled successfully, by any node of the fleet (Unix time; 0: never)',
      labelNames: ['feed'] as const,
      registers: [registry],
    });
    this.skipped = new Gauge({
      name: 'ami_guard_feed_skipped',
      help: 'Entries of the last pull not enforced as listed: garbage (not an address), too-wide (wider than policy.widest), refused (inside an ignore-listed or never-bannable range), split (networks enforced around one)',
      labelNames: ['feed', 'why'] as const,
      registers: [registry],
    });
    this.pulls = new FixedLabelCounter(registry, {
      name: 'ami_guard_feed_pulls_total',
      help: 'Successful pulls of each feed made by this node (one node of a fleet pulls per interval)',
      labels: { feed: feeds },
    });
    this.errors = new FixedLabelCounter(registry, {
      name: 'ami_guard_feed_errors_total',
      help: 'Failed pulls of each feed made by this node (unreachable, refused key, rate limit, garbage, too big); what is enforced stays',
      labels: { feed: feeds },
    });
    for (const feed of feeds) {
      this.entries.set({ feed }, 0);
      this.lastSuccess.set({ feed }, 0);
      for (const why of LABEL_VALUES.feedSkip) this.skipped.set({ feed, why }, 0);
    }
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly scrapeHooks: Array<() => void> = [];

  readonly events = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_security_events_total',
    help: 'Security events received, by kind and service (other: a kind or service outside the known lists)',
    labels: { kind: LABEL_VALUES.kind, service: LABEL_VALUES.service },
    preDeclareOther: true,
  });
  readonly invalidEvents = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_events_invalid_total',
    help: 'Security events dropped because their kind was malformed, their address not a valid IP, or a value unusable',
    labels: { reason: LABEL_VALUES.invalidReason },
  });
  readonly failures = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_failures_total',
    help: 'Failures counted against an address, by kind',
    labels: { kind: LABEL_VALUES.kind },
    preDeclareOther: true,
  });
  readonly skipped = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_events_skipped_total',
    help: 'Failure events not counted: ignore-listed or unbannable address, or already banned',
    labels: { why: LABEL_VALUES.skipWhy },
  });
  readonly injections = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_ami_injections_total',
    help: 'AMI events that carried lines Asterisk did not write (attacker text with CR LF), by how they showed and whether their genuine source was told',
    labels: { sign: LABEL_VALUES.injectionSign, attributed: ['yes', 'no'] },
  });
  readonly shed = new Counter({
    name: 'ami_guard_events_shed_total',
    help: 'Failure events dropped because too many distinct addresses were waiting for the store (pipeline.maxPending)',
    registers: [this.registry],
  });
  readonly logDropped = new Counter({
    name: 'ami_guard_log_lines_dropped_total',
    help: 'Log lines dropped because the log output (journald, docker, a pipe) could not keep up with a burst',
    registers: [this.registry],
  });
  readonly bans = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_bans_total',
    help: 'Bans made by this node, by reason',
    labels: { reason: LABEL_VALUES.banReason },
  });
  readonly earlyBans = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_early_bans_total',
    help: "Bans placed in the kernel on the store's brink before it answered for the failure that made them, by how its verdict settled them",
    labels: { outcome: LABEL_VALUES.earlyBan },
  });
  readonly storeErrors = new Counter({
    name: 'ami_guard_store_errors_total',
    help: 'Store operations that failed (e.g. Redis unreachable)',
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({
    name: 'ami_guard_store_up',
    help: '1 while the store answers its periodic PING within 1 s (with Redis down the local fallback may still ban: see ami_guard_store_fallback_active)',
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
  readonly storeWriteback = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_store_writeback_total',
    help: 'Bans decided during a Redis outage, by what became of them once Redis was back: written, covered (Redis already held a ban as long), expired, dropped (more than the fallback keeps)',
    labels: { result: LABEL_VALUES.writeback },
  });
  readonly storeReseeds = new Counter({
    name: 'ami_guard_store_reseeds_total',
    help: 'Times the store was found to have lost its data (its identity changed or vanished: Redis restarted empty, FLUSHALL, a failover to an empty replica, a lost state file) and was re-seeded from the kernel sets instead of emptying them',
    registers: [this.registry],
  });
  readonly storeReseededBans = new Counter({
    name: 'ami_guard_store_reseeded_bans_total',
    help: 'Bans written back into a store that had lost them, from the kernel sets (with their remaining time, reason restored)',
    registers: [this.registry],
  });
  readonly stateWriteFailures = new Counter({
    name: 'ami_guard_state_write_failures_total',
    help: "Writes of a file in store.stateDir (the embedded store's state, the store identity) that failed; retried",
    registers: [this.registry],
  });
  readonly firewallUp = new Gauge({
    name: 'ami_guard_firewall_up',
    help: '1 while our nft table, its sets and its drop rules are in place (checked every 5 s)',
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
  readonly unbans = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_unbans_total',
    help: 'Bans lifted before their time, by source (cli, fleet)',
    labels: { source: LABEL_VALUES.unbanSource },
  });
  readonly storePing = new Histogram({
    name: 'ami_guard_store_ping_seconds',
    help: 'Round-trip time of the periodic store PING',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  // the persistent writer adds a ban in ~0.3 ms: buckets from 0.25 ms, or every add would land in the first one
  readonly nftApply = new Histogram({
    name: 'ami_guard_nft_apply_seconds',
    help: 'Time from handing bans (add), unbans (delete) or the full set (reconcile) to nft until they are in the kernel, queueing included',
    labelNames: ['op'] as const,
    buckets: [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly banLatency = new Histogram({
    name: 'ami_guard_ban_latency_seconds',
    help:
      "Per ban, time from the AMI read that decided it (path early: banned on the store's brink) or from the store call " +
      'whose verdict made it (path store) until the firewall acknowledged its element (the writer, once the kernel had it)',
    labelNames: ['path'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly notifications = new FixedLabelCounter(this.registry, {
    name: 'ami_guard_webhook_notifications_total',
    help: 'Webhook notifications by result: sent, failed (every attempt failed or the webhook refused it) or dropped (queue full, or unsent at shutdown)',
    labels: { result: LABEL_VALUES.notification },
  });

  /** present when feeds are configured */
  readonly feeds: FeedMetrics | undefined;

  constructor(o: MetricsOptions = {}) {
    for (const op of LABEL_VALUES.nftOp) this.nftApply.zero({ op });
    for (const path of LABEL_VALUES.banPath) this.banLatency.zero({ path });
    this.feeds = o.feeds?.length ? new FeedMetrics(this.registry, o.feeds) : undefined;
    if (o.build) {
      new Gauge({
        name: 'ami_guard_build_info',
        help: "Always 1: the running version of ami-guard and this node's node.id",
        labelNames: ['version', 'node'] as const,
        registers: [this.registry],
      }).set({ version: o.build.version, node: o.build.node }, 1);
    }
    if (o.processMetrics) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of DEFAULT_GAUGES_NAMED_TOTAL) this.registry.removeSingleMetric(name);
    }
  }

  /** Runs before every scrape: where counts kept outside prom-client (a batched hot path) are added. */
  onScrape(hook: () => void): void {
    this.scrapeHooks.push(hook);
  }

  /** The Prometheus text of every metric, after the scrape hooks have run. */
  async scrape(): Promise<string> {
    for (const hook of this.scrapeHooks) hook();
    return this.registry.metrics();
  }
}

/** The sum of a counter over all its label values (for the status record, which has no labels). */
export async function counterTotal(counter: { get(): ReturnType<Counter<string>['get']> }): Promise<number> {
  const { values } = await counter.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
