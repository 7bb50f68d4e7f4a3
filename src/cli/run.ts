// `ami-guard run`: builds the daemon from the configuration and keeps it running until SIGTERM/SIGINT.
import type { AppConfig } from '../config/schema.js';
import { createLogger, droppedLines, setLogLevel, type Logger } from '../log.js';
import { Metrics, counterTotal } from '../metrics.js';
import { Policy } from '../policy/policy.js';
import { learnHost } from '../policy/never-ban.js';
import { serviceHosts } from '../config/services.js';
import { rehearseBan } from '../daemon/rehearsal.js';
import { Daemon } from '../daemon/daemon.js';
import { AmiClient } from '../ami/client.js';
import { Intake } from '../events/intake.js';
import { NftFirewall } from '../firewall/nft.js';
import { MeasuredFirewall } from '../firewall/measured.js';
import { RetryingFirewall } from '../firewall/retry.js';
import { FirewallWatchdog } from '../firewall/watchdog.js';
import { DetectOnlyFirewall } from '../firewall/detect-only.js';
import { ServiceEdges } from '../daemon/edges.js';
import type { Store } from '../store/store.js';
import { RedisStore } from '../store/redis-store.js';
import { MemoryStore } from '../store/memory-store.js';
import { FallbackStore } from '../store/fallback-store.js';
import { lastConnectionError } from '../store/redis-client.js';
import { StateDir } from '../store/state-file.js';
import { IdentityFile } from '../store/identity-file.js';
import { persistEmbeddedStore } from '../store/embedded-state.js';
import { createBackends, describeRedis, originId, usesRedis, type Backends } from './backends.js';
import { FleetSync } from '../fleet/sync.js';
import { NodeStatusReporter, readNodeStatuses } from '../fleet/node-status.js';
import { version } from './version.js';
import { formatDuration } from '../config/duration.js';
import { Reloader } from './reloader.js';
import { daemonControl } from './run-control.js';
import { FeedEnforcer } from '../feeds/enforcer.js';
import { Feeds, apibanKey, feedNames } from '../feeds/feeds.js';
import { MemoryFeedState, RedisFeedState } from '../feeds/state.js';
import type { Firewall } from '../firewall/firewall.js';
import type { IpTarget } from '../net/ip.js';

const SHUTDOWN_DEADLINE_MS = 5_000;

const STATUS_INTERVAL_MS = 5_000;

/** how often this host's addresses and gateways are read again */
const HOST_REFRESH_MS = 60_000;

/** the watchdog looks for bans with at least this long left, so one the kernel has just expired is never a loss */
const WATCHDOG_MARGIN_MS = 2_000;

function openBackends(cfg: AppConfig, policy: Policy, logger: Logger): Backends {
  if (!usesRedis(cfg)) {
    logger.warn(
      { stateDir: cfg.store.stateDir },
      'redis.url is empty: using the embedded in-process store; nothing is shared with other PBXs (its bans, history and trust are kept in store.stateDir)',
    );
  } else {
    logger.info({ redis: describeRedis(cfg) }, 'using Redis');
  }
  return createBackends(cfg, policy, logger);
}

/** Redis with the bounded local fallback (redis.fallback.maxAddresses), or the store as it is. */
function withFallback(cfg: AppConfig, backends: Backends, policy: Policy, logger: Logger, metrics: Metrics): Store {
  const { redis, store } = backends;
  const max = cfg.redis.fallback.maxAddresses;
  if (!redis || !(store instanceof RedisStore) || max === 0) return store;
  return new FallbackStore({
    primary: store,
    local: new MemoryStore({ nodeId: cfg.node.id, policy: policy.params, maxAddresses: max }),
    primaryReady: () => redis.status === 'ready',
    logger,
    metrics,
    maxWriteback: max,
    where: describeRedis(cfg),
    lastConnectionError: () => lastConnectionError(redis),
  });
}

/**
 * A fault that escapes every guard is a bug whose damage cannot be known: log it and exit non-zero, so the service
 * manager starts a fresh process, rather than linger half-dead (reading nothing, banning nobody, looking alive).
 */
function exitOnEscapedFault(logger: Logger): void {
  const die =
    (kind: string) =>
    (err: unknown): void => {
      logger.fatal(
        { err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) },
        `${kind}: exiting so the service manager restarts ami-guard`,
      );
      logger.flush?.();
      process.exit(1);
    };
  process.on('uncaughtException', die('uncaught exception'));
  process.on('unhandledRejection', die('unhandled promise rejection'));
}

/** Where the daemon's configuration comes from, to read it again on SIGHUP. */
export interface ConfigSource {
  readonly file: string | undefined;
  /** reads and validates it again (the same file, the same environment); throws ConfigError */
  load(): AppConfig;
}

/**
 * `run --detect-only` (CrowdSec's simulation mode): detection as configured, every ban logged as one it would make,
 * nothing leaving the process: no kernel set, no Redis (so no fleet, no shared counters), no blocklists, no webhook,
 * no state file. The embedded store holds the would-be bans, so `list` and `show` work as usual.
 */
function detectOnlyWiring(cfg: AppConfig): AppConfig {
  return {
    ...cfg,
    redis: { ...cfg.redis, url: '', cluster: [], sentinels: [] },
    nft: { ...cfg.nft, checkInterval: 0 },
    blocklists: { ...cfg.blocklists, apiban: { ...cfg.blocklists.apiban, key: '', keyFile: '' }, lists: [] },
    notify: { webhook: { ...cfg.notify.webhook, url: '' } },
  };
}

export interface RunOptions {
  readonly detectOnly?: boolean;
}

export async function runDaemon(
  configured: AppConfig,
  from: ConfigSource = { file: undefined, load: () => configured },
  options: RunOptions = {},
): Promise<number> {
  const detectOnly = options.detectOnly === true;
  const cfg = detectOnly ? detectOnlyWiring(configured) : configured;
  // SIGHUP reloads (below); until the daemon runs, one is kept for then, and never kills the process
  let reloader: Reloader | undefined;
  let hupWaiting = false;
  process.on('SIGHUP', () => {
    if (reloader) void reloader.reload();
    else hupWaiting = true;
  });
  const logger = createLogger(cfg.log.level, undefined, { async: true });
  exitOnEscapedFault(logger);
  let key: string;
  try {
    key = apibanKey(cfg.blocklists.apiban);
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'ami-guard could not start');
    return 2;
  }
  const metrics = new Metrics({ processMetrics: true, build: { version: version(), node: cfg.node.id }, feeds: feedNames(cfg.blocklists) });
  let policy = new Policy(cfg.policy);
  // what no ban may cover: learnt before the first reconciliation, kept fresh (DHCP, a new gateway, DNS)
  const learn = (): Promise<void> =>
    learnHost(policy.neverBan, serviceHosts(cfg)).catch((err: unknown) => {
      logger.warn({ err: (err as Error).message }, "could not read this host's addresses; the last ones known stay protected");
    });
  await learn();
  const hostTimer = setInterval(() => void learn(), HOST_REFRESH_MS).unref();
  const nft = detectOnly
    ? undefined
    : new NftFirewall({
        table: cfg.nft.table,
        nftPath: cfg.nft.path,
        netns: cfg.nft.netns || undefined,
        logger,
        persistent: cfg.nft.writer === 'persistent',
        onWriterRestart: () => metrics.nftWriterRestarts.inc(),
      });
  if (nft) metrics.countActiveBans = () => nft.activeBans();
  const firewall: Firewall = nft
    ? new RetryingFirewall(new MeasuredFirewall(nft, metrics), { logger, onRetry: () => metrics.nftRetries.inc() })
    : new DetectOnlyFirewall();
  // the daemon exists before the source it reads, so the intake hands batches to it through this late binding
  let daemon!: Daemon;
  const intake = new Intake((batch) => daemon.onBatch(batch));
  const invalidSeen = new Map<string, number>();
  let droppedSeen = 0;
  metrics.onScrape(() => {
    const dropped = droppedLines();
    if (dropped > droppedSeen) metrics.logDropped.inc(dropped - droppedSeen);
    droppedSeen = dropped;
    // the intake keeps plain tallies on its hot path; the counter catches up just before each scrape
    for (const [reason, n] of Object.entries(intake.counters.invalid)) {
      const delta = n - (invalidSeen.get(reason) ?? 0);
      if (delta > 0) metrics.invalidEvents.inc({ reason }, delta);
      invalidSeen.set(reason, n);
    }
  });
  const source = new AmiClient({
    host: cfg.ami.host,
    port: cfg.ami.port,
    username: cfg.ami.username,
    secret: cfg.ami.secret,
    sink: intake,
    pingIntervalMs: cfg.ami.pingInterval,
    pingTimeoutMs: cfg.ami.pingTimeout,
    backoff: { maxMs: cfg.ami.reconnectMax },
    logger,
  });
  source.on('connected', () => metrics.amiConnected.set(1));
  source.on('disconnected', () => metrics.amiConnected.set(0));
  source.on('reconnected', (gapMs: number) => {
    metrics.amiReconnects.inc();
    metrics.amiGapSeconds.inc(gapMs / 1000);
  });

  let backends: Backends;
  try {
    backends = openBackends(cfg, policy, logger);
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'cannot set up the store');
    return 1;
  }
  const store: Store = withFallback(cfg, backends, policy, logger, metrics);
  // what outlives a restart (store.stateDir): the embedded store's state, and the identity of the store last seen
  const stateDir = new StateDir(cfg.store.stateDir, logger);
  const identity = detectOnly ? undefined : new IdentityFile(stateDir, logger, backends.redis ? describeRedis(cfg) : 'embedded');
  await identity?.load();
  // detect-only writes no state: its would-be bans must not become bans at the next enforcing start
  const stateWriter =
    backends.store instanceof MemoryStore && !detectOnly
      ? await persistEmbeddedStore({
          store: backends.store,
          dir: stateDir,
          nodeId: cfg.node.id,
          logger,
          onWriteFailure: () => metrics.stateWriteFailures.inc(),
        })
      : undefined;
  // community blocklists: their entries share the firewall with the daemon's bans, through the enforcer
  let feeds: Feeds | undefined;
  const enforcer =
    feedNames(cfg.blocklists).length > 0 ? new FeedEnforcer(firewall, { logger, beforeReconcile: () => feeds?.rebuild() }) : undefined;
  if (enforcer) {
    feeds = new Feeds({
      cfg: cfg.blocklists,
      widest: cfg.policy.widest,
      apibanKey: key,
      state: backends.redis ? new RedisFeedState(backends.redis, cfg.redis.keyPrefix, cfg.node.id) : new MemoryFeedState(cfg.node.id),
      enforcer,
      policy,
      nodeId: cfg.node.id,
      logger,
      ...(metrics.feeds ? { metrics: metrics.feeds } : {}),
    });
  }
  const enforced: Firewall = enforcer ?? firewall;
  const fleet = new FleetSync({
    channel: backends.channel,
    origin: originId('daemon'),
    nodeId: cfg.node.id,
    reconcileIntervalMs: cfg.fleet.reconcileInterval,
    logger,
  });
  daemon = new Daemon({
    policy,
    store,
    firewall: enforced,
    source,
    logger,
    metrics,
    fleet,
    detectOnly,
    ...(identity ? { identity } : {}),
    ...(store instanceof FallbackStore ? { fallback: store } : {}),
    // a feed's entry in the kernel sets is not a ban to take into the store
    ...(enforcer ? { heldElsewhere: (t: IpTarget) => enforcer.feedsHolding(t).length > 0 } : {}),
    maxPending: cfg.pipeline.maxPending,
    injectionBantimeMs: cfg.policy.injection.bantime,
  });
  const watchdog =
    nft && cfg.nft.checkInterval > 0
      ? new FirewallWatchdog({
          firewall: nft,
          expected: () => nft.inForce(WATCHDOG_MARGIN_MS),
          intervalMs: Math.max(cfg.nft.checkInterval, 1_000),
          logger,
          restore: async () => {
            await firewall.init();
            await daemon.reconcile('nft table restored');
            // a reconciliation that could not read the store re-applied only the daemon's bans
            if (enforcer && !enforcer.reconciled) await enforcer.reassert();
            metrics.nftRestores.inc();
          },
        })
      : undefined;
  const edges = new ServiceEdges({
    cfg,
    store,
    firewall,
    amiConnected: () => source.stats.connected,
    metrics,
    logger,
    ...(store instanceof FallbackStore ? { fallback: () => store.state } : {}),
  });
  daemon.on('ban', (ban) => edges.notifier?.notifyBan(ban));
  daemon.on('ban', (ban) => {
    // a ban decided during a Redis outage is published with the write-back, so the fleet hears of it once
    if (store instanceof FallbackStore && store.decidedLocally(ban)) return;
    fleet
      .publishBan(ban)
      .catch((err: unknown) => logger.warn({ address: ban.address, err: (err as Error).message }, 'ban not published to the fleet'));
  });
  if (store instanceof FallbackStore) {
    store.on('recovered', (r) => {
      // the fleet learns of the outage's bans and unbans now; the reconciliation also brings in what the others did meanwhile
      for (const ban of r.written) {
        fleet
          .publishBan(ban)
          .catch((err: unknown) => logger.warn({ address: ban.address, err: (err as Error).message }, 'ban not published to the fleet'));
      }
      for (const t of r.unbanned) {
        fleet
          .publishUnban(t.text)
          .catch((err: unknown) => logger.warn({ address: t.text, err: (err as Error).message }, 'unban not published to the fleet'));
      }
      daemon.reconcile('redis reachable again').catch((err: unknown) => {
        logger.warn({ err: (err as Error).message }, 'reconciliation after the Redis outage failed; the next periodic one retries');
      });
    });
  }
  // a Redis that comes back may be an empty one (restarted without persistence): the daemon checks at once
  backends.redis?.on('ready', () => {
    daemon.storeReconnected('redis reconnected').catch((err: unknown) => {
      logger.warn({ err: (err as Error).message }, 'could not check the store after Redis reconnected; the next reconciliation does');
    });
  });
  // the process that lifted a ban (the CLI) notifies the webhook; each node only counts it
  fleet.on('unban', () => metrics.unbans.inc({ source: 'fleet' }));
  const startedAt = Date.now();
  const status = backends.redis
    ? new NodeStatusReporter({
        client: backends.redis,
        keyPrefix: cfg.redis.keyPrefix,
        nodeId: cfg.node.id,
        intervalMs: STATUS_INTERVAL_MS,
        logger,
        collect: async () => {
          return {
            node: cfg.node.id,
            version: version(),
            pid: process.pid,
            startedAt,
            ami: { connected: source.stats.connected, reconnects: source.stats.reconnects },
            firewall: { present: edges.firewallPresent() },
            events: await counterTotal(metrics.events),
            failures: await counterTotal(metrics.failures),
            invalid: await counterTotal(metrics.invalidEvents),
            bans: await counterTotal(metrics.bans),
          };
        },
      })
    : undefined;

  reloader = new Reloader({
    running: configured,
    file: from.file,
    load: () => from.load(),
    logger,
    apply: async (next, applied) => {
      if (applied.some((f) => f.startsWith('policy.'))) {
        const fresh = new Policy(next.policy);
        // a policy that does not know this host yet would let a ban cut it off: no host facts, no reload
        await learnHost(fresh.neverBan, serviceHosts(next));
        store.setPolicy(fresh.params);
        daemon.setPolicy(fresh, { injectionBantimeMs: next.policy.injection.bantime });
        feeds?.setPolicy(fresh);
        policy = fresh;
      }
      if (applied.includes('log.level')) setLogLevel(logger, next.log.level);
    },
  });
  const control = cfg.control.socket
    ? daemonControl(cfg.control.socket, {
        daemon,
        store,
        logger,
        metrics,
        ...(store instanceof FallbackStore ? { fallback: store } : {}),
        commit: () => firewall.commit(),
        fleet,
        ...(edges.notifier ? { notifier: edges.notifier } : {}),
        settings: () => ({ policy, bantimeMs: reloader!.config.policy.bantime }),
        ...(backends.redis
          ? {
              storeUrl: describeRedis(cfg),
              nodes: (skipped) => readNodeStatuses(backends.redis!, cfg.redis.keyPrefix, Date.now(), skipped),
            }
          : {}),
        about: async () => {
          const counts = metrics.countActiveBans?.() ?? { ipv4: 0, ipv6: 0 };
          return {
            daemon: {
              node: cfg.node.id,
              pid: process.pid,
              version: version(),
              startedAt,
              configFile: from.file ?? null,
              mode: detectOnly ? 'detect-only' : 'enforcing',
              ami: { connected: source.stats.connected, reconnects: source.stats.reconnects },
              firewall: {
                table: `inet ${cfg.nft.table}`,
                present: edges.firewallPresent(),
                elements: { v4: counts.ipv4, v6: counts.ipv6 },
              },
              reload: reloader!.state,
            },
          };
        },
      })
    : undefined;

  logger.info(
    {
      node: cfg.node.id,
      ami: `${cfg.ami.host}:${cfg.ami.port}`,
      user: cfg.ami.username,
      store: store.kind,
      table: cfg.nft.table,
      maxretry: cfg.policy.maxretry,
      findtime: formatDuration(cfg.policy.findtime),
      bantime: formatDuration(cfg.policy.bantime),
      ignoreip: policy.ignore.entries,
      mode: detectOnly ? 'detect-only' : 'enforcing',
    },
    'ami-guard starting',
  );
  if (detectOnly) {
    logger.warn(
      'detect-only: bans are decided and logged ("would ban"), never enforced; no Redis, fleet, blocklists, webhook or state file',
    );
  }
  try {
    await edges.listen();
    await control?.listen();
    await feeds?.load();
    await rehearse(policy, cfg.nft.table, logger);
    await daemon.start();
    feeds?.start();
    edges.startChecks();
    watchdog?.start();
    status?.start();
    control?.ready();
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'ami-guard could not start');
    await edges.closeListener();
    await control?.close();
    await store.close().catch(() => undefined);
    await stateWriter?.close();
    return 1;
  }
  if (hupWaiting) void reloader.reload();

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info(
        { signal },
        detectOnly ? 'stopping (detect-only: nothing was enforced)' : 'stopping: bans stay in the kernel and in the store',
      );
      const deadline = setTimeout(() => {
        logger.warn('shutdown took too long; exiting anyway');
        resolve(0);
      }, SHUTDOWN_DEADLINE_MS);
      deadline.unref();
      clearInterval(hostTimer);
      Promise.all([edges.closeListener(), control?.close()])
        .then(() => watchdog?.stop())
        .then(() => (status ? status.stop() : undefined))
        .then(() => feeds?.stop())
        .then(() => daemon.stop())
        .finally(() => stateWriter?.close())
        .finally(() => edges.closeNotifier())
        .then(
          () => {
            clearTimeout(deadline);
            logger.info('stopped');
            resolve(0);
          },
          (err: unknown) => {
            clearTimeout(deadline);
            logger.error({ err: (err as Error).message }, 'error while stopping');
            resolve(1);
          },
        );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** The ban path compiled before the first attacker needs it (rehearsal.ts); a failed rehearsal only costs that. */
async function rehearse(policy: Policy, table: string, logger: Logger): Promise<void> {
  try {
    const r = await rehearseBan(policy, table);
    logger.debug({ address: r.address.text, banned: r.banned, ms: Math.round(r.ms) }, 'rehearsed a ban on throwaway parts');
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'could not rehearse a ban; the first real one compiles its path');
  }
}
