// `ami-guard run`: builds the daemon from the configuration and keeps it running until SIGTERM/SIGINT.
import type { AppConfig } from '../config/schema.js';
import { createLogger, redactUrl, type Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { Policy } from '../policy/policy.js';
import { Daemon } from '../daemon/daemon.js';
import { AmiSupervisor } from '../ami/supervisor.js';
import { NftFirewall } from '../firewall/nft.js';
import { createRedisClient } from '../store/redis-client.js';
import { RedisStore } from '../store/redis-store.js';
import { MemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';

const SHUTDOWN_DEADLINE_MS = 5_000;

export function createStore(cfg: AppConfig, policy: Policy, logger: Logger): Store {
  if (!cfg.redis.url) {
    logger.warn('redis.url is empty: using the embedded in-process store; nothing is shared with other PBXs and nothing survives a restart');
    return new MemoryStore({ nodeId: cfg.node.id, policy: policy.params });
  }
  logger.info({ redis: redactUrl(cfg.redis.url) }, 'using Redis');
  const client = createRedisClient({ url: cfg.redis.url, logger });
  return new RedisStore({ client, keyPrefix: cfg.redis.keyPrefix, nodeId: cfg.node.id, policy: policy.params });
}

export async function runDaemon(cfg: AppConfig): Promise<number> {
  const logger = createLogger(cfg.log.level);
  const metrics = new Metrics(true);
  const policy = new Policy(cfg.policy);
  const firewall = new NftFirewall({ table: cfg.nft.table, nftPath: cfg.nft.path, netns: cfg.nft.netns || undefined, logger });
  const source = new AmiSupervisor({
    host: cfg.ami.host,
    port: cfg.ami.port,
    username: cfg.ami.username,
    secret: cfg.ami.secret,
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

  let store: Store;
  try {
    store = createStore(cfg, policy, logger);
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'cannot set up the store');
    return 1;
  }
  const daemon = new Daemon({ policy, store, firewall, source, logger, metrics, maxPending: cfg.pipeline.maxPending });

  logger.info(
    {
      node: cfg.node.id,
      ami: `${cfg.ami.host}:${cfg.ami.port}`,
      user: cfg.ami.username,
      store: store.kind,
      table: cfg.nft.table,
      maxretry: cfg.policy.maxretry,
      findtime: cfg.policy.findtime / 1000,
      bantime: cfg.policy.bantime / 1000,
      ignoreip: policy.ignore.entries,
    },
    'ami-guard starting',
  );
  try {
    await daemon.start();
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'ami-guard could not start');
    await store.close().catch(() => undefined);
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping: bans stay in the kernel and in the store');
      const deadline = setTimeout(() => {
        logger.warn('shutdown took too long; exiting anyway');
        resolve(0);
      }, SHUTDOWN_DEADLINE_MS);
      deadline.unref();
      daemon.stop().then(
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
