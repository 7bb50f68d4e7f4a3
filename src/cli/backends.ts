// Builds the store and the fleet channel from the configuration: Redis when redis.url is set, the embedded store
// (and no fleet) otherwise. Shared by the daemon and the CLI verbs so both read the same keys the same way.
import type { Cluster, Redis } from 'ioredis';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AppConfig } from '../config/schema.js';
import { redactUrl, type Logger } from '../log.js';
import type { Policy } from '../policy/policy.js';
import { createClusterClient, createRedisClient, createSentinelClient } from '../store/redis-client.js';
import { parseHostPort } from '../config/formats.js';
import { RedisStore } from '../store/redis-store.js';
import { MemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';
import { LocalChannel, type BanChannel } from '../fleet/channel.js';
import { RedisChannel } from '../fleet/redis-channel.js';

export interface Backends {
  readonly store: Store;
  readonly channel: BanChannel;
  /** the shared client, when the store is Redis */
  readonly redis: Redis | Cluster | undefined;
}

/** Identifies one process in the fleet channel, so a daemon can tell its own messages from everyone else's. */
export function originId(role: 'daemon' | 'cli'): string {
  return `${role}:${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

/** Which Redis the configuration names, in words safe to print. */
export function describeRedis(cfg: AppConfig): string {
  if (cfg.redis.cluster.length) return `cluster ${cfg.redis.cluster.join(',')}`;
  if (cfg.redis.sentinels.length) return `sentinel ${cfg.redis.name} via ${cfg.redis.sentinels.join(',')}`;
  return redactUrl(cfg.redis.url);
}

export function usesRedis(cfg: AppConfig): boolean {
  return Boolean(cfg.redis.url || cfg.redis.cluster.length || cfg.redis.sentinels.length);
}

function openRedis(cfg: AppConfig, logger: Logger, failFast: boolean): Redis | Cluster {
  const timeouts = failFast ? { connectTimeoutMs: 3_000, commandTimeoutMs: 5_000 } : {};
  const topology = {
    ...timeouts,
    logger,
    ...(cfg.redis.username ? { username: cfg.redis.username } : {}),
    ...(cfg.redis.password ? { password: cfg.redis.password } : {}),
    tls: cfg.redis.tls,
  };
  const hostPorts = (list: string[]) => list.map((x) => parseHostPort(x)!);
  if (cfg.redis.cluster.length) return createClusterClient(hostPorts(cfg.redis.cluster), topology);
  if (cfg.redis.sentinels.length) return createSentinelClient(hostPorts(cfg.redis.sentinels), cfg.redis.name, topology);
  return createRedisClient({ url: withCredentials(cfg.redis.url, cfg.redis.username, cfg.redis.password), logger, ...timeouts });
}

/**
 * redis.url completed with redis.username / redis.password (the loader refuses a credential given twice), escaped
 * whole: the URL setters leave `%` as it is, and ioredis decodes what it finds, so `p%41ss` would arrive as `pAss`.
 */
export function withCredentials(url: string, username: string, password: string): string {
  if (!username && !password) return url;
  const u = new URL(url);
  if (username) u.username = encodeURIComponent(username);
  if (password) u.password = encodeURIComponent(password);
  return u.toString();
}

export function createBackends(cfg: AppConfig, policy: Policy, logger: Logger, clientOptions: { failFast?: boolean } = {}): Backends {
  if (!usesRedis(cfg)) {
    return { store: new MemoryStore({ nodeId: cfg.node.id, policy: policy.params }), channel: new LocalChannel(), redis: undefined };
  }
  const redis = openRedis(cfg, logger, clientOptions.failFast ?? false);
  return {
    store: new RedisStore({ client: redis, keyPrefix: cfg.redis.keyPrefix, nodeId: cfg.node.id, policy: policy.params, logger }),
    channel: new RedisChannel({ client: redis, keyPrefix: cfg.redis.keyPrefix, maxlen: cfg.fleet.streamMaxlen, logger }),
    redis,
  };
}
