// Why Redis cannot be used, in the project's words. ioredis fails a command queued while it has no connection with
// "Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.",
// which names a setting of the library and not the cause; the cause is the error its last connection attempt met
// (ECONNREFUSED, a TLS refusal, a timeout), which the client watch keeps (redis-client.ts).

/** The library's ways of saying "no connection", which say nothing about why. */
const NO_CONNECTION = /max retries per request|^Connection is closed\.|Stream isn't writeable/i;

const BY_CODE: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  EPIPE: 'connection broken',
};

const BY_REPLY: ReadonlyArray<[RegExp, string]> = [
  [/^(WRONGPASS|NOAUTH)\b/, 'authentication refused (check the Redis user and password)'],
  [/^LOADING\b/, 'it is loading its data set'],
  [/^BUSY\b/, 'it is busy running a script'],
  [/^READONLY\b/, 'it is a read-only replica (a failover in progress?)'],
  [/^MASTERDOWN\b/, 'its primary is down'],
  [/^CLUSTERDOWN\b/, 'the cluster is down'],
  [/^TRYAGAIN\b/, 'the cluster is moving slots'],
  [/^NOREPLICAS\b/, 'not enough replicas'],
  [/^MISCONF\b/, 'it cannot persist its data (MISCONF)'],
  [/^OOM\b/, 'it is out of memory (maxmemory)'],
];

/** The cause of a Redis failure in a few words; `lastConnectionError` stands in when `err` only says "no connection". */
export function redisCause(err: unknown, lastConnectionError?: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (NO_CONNECTION.test(message)) {
    return lastConnectionError !== undefined && lastConnectionError !== err ? redisCause(lastConnectionError) : 'no connection';
  }
  if (typeof e?.code === 'string' && BY_CODE[e.code]) return BY_CODE[e.code]!;
  if (message === 'Command timed out') return 'no answer in time (a hung or paused server?)';
  for (const [pattern, words] of BY_REPLY) if (pattern.test(message)) return words;
  // anything else (a TLS refusal says it well: "self-signed certificate in certificate chain") as it is, one line
  const line = message.split('\n')[0]!;
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** The store cannot be reached; the message names Redis (without its password) and the cause. */
export class RedisUnreachableError extends Error {
  constructor(
    where: string,
    readonly why: string,
    options?: ErrorOptions,
  ) {
    super(`Redis at ${where} is unreachable: ${why}`, options);
    this.name = 'RedisUnreachableError';
  }
}
