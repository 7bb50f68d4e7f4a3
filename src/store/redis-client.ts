// The one place that opens a Redis connection. Callers get a client that fails fast while Redis is away (so the
// daemon can fall back to the in-process store) and reconnects on its own, and whose errors and logs never carry
// the password from the URL.
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { redactUrl, type Logger } from '../log.js';
import { redisCause } from './redis-errors.js';

export interface RedisClientOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS */
  readonly url: string;
  /** how long one connection attempt may take (default 5,000 ms) */
  readonly connectTimeoutMs?: number;
  /**
   * how long a command may wait for its reply, wherever it is queued (default 5,000 ms). A silent network
   * partition never closes the socket, so without this a caller could wait for TCP keepalive.
   */
  readonly commandTimeoutMs?: number;
  /** upper bound of the reconnect backoff (default 5,000 ms) */
  readonly maxReconnectDelayMs?: number;
  readonly logger?: Logger;
}

/** The delay before reconnect attempt `attempt` (1, 2, …): exponential from 100 ms, capped, with ±20 % jitter so a
 * fleet that lost Redis together does not come back in lockstep. Never gives up: the daemon outlives outages. */
export function reconnectDelay(attempt: number, maxDelayMs: number): number {
  const base = Math.min(100 * 2 ** Math.min(attempt - 1, 16), maxDelayMs);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export function createRedisClient(opts: RedisClientOptions): Redis {
  const where = redactUrl(opts.url);
  let protocol: string;
  try {
    protocol = new URL(opts.url).protocol;
  } catch {
    throw new Error(`invalid redis url ${where}`);
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new Error(`invalid redis url ${where}: use redis:// or rediss://`);
  }
  return watch(new Redis(opts.url, clientOptions(opts)), where, opts.logger);
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface RedisTopologyOptions extends Omit<RedisClientOptions, 'url'> {
  readonly username?: string;
  readonly password?: string;
  /** rediss: TLS to every node */
  readonly tls?: boolean;
}

/** A Sentinel-managed primary: ioredis asks the sentinels where the primary is and follows failovers. */
export function createSentinelClient(sentinels: readonly HostPort[], name: string, opts: RedisTopologyOptions): Redis {
  const where = `sentinel ${name} via ${sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  return watch(
    new Redis({
      ...clientOptions(opts),
      sentinels: sentinels.map((s) => ({ host: s.host, port: s.port })),
      name,
      ...(opts.username ? { username: opts.username } : {}),
      ...(opts.password ? { password: opts.password } : {}),
      ...(opts.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    }),
    where,
    opts.logger,
  );
}

/** Redis Cluster: every script touches one slot (keys share the address's hash tag), so they run unchanged. */
export function createClusterClient(nodes: readonly HostPort[], opts: RedisTopologyOptions): Cluster {
  const where = `cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
  const { maxRetriesPerRequest: _unused, ...redisOptions } = clientOptions(opts);
  return watch(
    new Cluster(
      nodes.map((n) => ({ host: n.host, port: n.port })),
      {
        enableAutoPipelining: true,
        clusterRetryStrategy: (attempt) => reconnectDelay(attempt, opts.maxReconnectDelayMs ?? 5_000),
        redisOptions: {
          ...redisOptions,
          ...(opts.username ? { username: opts.username } : {}),
          ...(opts.password ? { password: opts.password } : {}),
          ...(opts.tls ? { tls: {} } : {}),
        },
      },
    ),
    where,
    opts.logger,
  );
}

function clientOptions(opts: Omit<RedisClientOptions, 'url'>): RedisOptions {
  const maxDelay = opts.maxReconnectDelayMs ?? 5_000;
  return {
    // one round trip carries every command issued in the same tick: the failure scripts of a burst of events
    enableAutoPipelining: true,
    connectTimeout: opts.connectTimeoutMs ?? 5_000,
    commandTimeout: opts.commandTimeoutMs ?? 5_000,
    // Commands queued while disconnected fail after the second failed connection attempt instead of after the 20th
    // (the ioredis default; over a minute with this backoff): a dropped connection that comes straight back (restart,
    // failover) is ridden out, a real outage surfaces within seconds and the daemon can fall back to its own store.
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => reconnectDelay(attempt, maxDelay),
    // after a failover the old primary answers READONLY; reconnecting (and resending) reaches the new one
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
  };
}

const lastErrors = new WeakMap<Redis | Cluster, Error>();

/**
 * The error the client's connection last met (refused, a TLS refusal, a timeout), or undefined: what a command failed
 * with "max retries per request" really ran into (redis-errors.ts).
 */
export function lastConnectionError(client: Redis | Cluster): Error | undefined {
  return lastErrors.get(client);
}

/** Logs an outage once (not once per reconnect attempt) and its end, and scrubs AUTH arguments from errors. */
function watch<T extends Redis | Cluster>(client: T, where: string, logger: Logger | undefined): T {
  let down = false;
  client.on('error', (err: Error) => {
    scrubAuthArgs(err);
    lastErrors.set(client, err);
    if (down) return;
    down = true;
    logger?.warn({ redis: where, error: redisCause(err) }, 'redis unavailable');
  });
  client.on('ready', () => {
    lastErrors.delete(client);
    logger?.info({ redis: where }, down ? 'redis reachable again' : 'redis connected');
    down = false;
  });
  return client;
}

/**
 * ioredis attaches the failed command to a reply error, so an AUTH refusal carries `command.args = [password]` to
 * whoever logs the error (pino prints every property). The same error object rejects the queued commands after
 * the 'error' event has run, so scrubbing it here covers the callers too.
 */
function scrubAuthArgs(err: Error): void {
  const command = (err as { command?: { name?: unknown; args?: unknown } }).command;
  if (command && typeof command.name === 'string' && command.name.toLowerCase() === 'auth') {
    command.args = ['[redacted]'];
  }
}
