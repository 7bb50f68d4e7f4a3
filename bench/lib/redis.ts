// A throwaway redis-server per benchmark (test/support/redis-server.ts) and the figures read from it: INFO sections,
// per-command statistics, the slow log, and the server process's CPU time.
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from '../../test/support/redis-server.js';
import type { Cleanups } from './util.js';

export interface BenchRedis {
  readonly server: RedisServer;
  /** a plain client for the bench's own reads (not the daemon's) */
  readonly client: Redis;
}

export async function startRedis(cleanups: Cleanups): Promise<BenchRedis> {
  const server = await startRedisServer();
  cleanups.add(() => server.stop());
  const client = new Redis(server.url, { maxRetriesPerRequest: 1, lazyConnect: false });
  cleanups.add(async () => {
    client.disconnect();
  });
  return { server, client };
}

export async function info(client: Redis, section: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const line of (await client.info(section)).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

export async function usedMemory(client: Redis): Promise<number> {
  return Number((await info(client, 'memory')).get('used_memory'));
}

export interface CommandStat {
  readonly calls: number;
  /** total µs the server spent executing these calls */
  readonly usec: number;
  readonly usecPerCall: number;
}

/** `INFO commandstats` as { evalsha: {calls, usec, usecPerCall}, … } */
export async function commandStats(client: Redis): Promise<Record<string, CommandStat>> {
  const out: Record<string, CommandStat> = {};
  for (const [k, v] of await info(client, 'commandstats')) {
    if (!k.startsWith('cmdstat_')) continue;
    const f = Object.fromEntries(v.split(',').map((p) => p.split('=') as [string, string]));
    out[k.slice('cmdstat_'.length)] = {
      calls: Number(f['calls']),
      usec: Number(f['usec']),
      usecPerCall: Number(f['usec_per_call']),
    };
  }
  return out;
}

export interface SlowEntry {
  readonly usec: number;
  readonly command: string;
}

/** The slow log (entries slower than `slowlog-log-slower-than`), commands cut to their name and first key. */
export async function slowlog(client: Redis, count = 128): Promise<SlowEntry[]> {
  const raw = (await client.call('SLOWLOG', 'GET', String(count))) as unknown[];
  return raw.map((e) => {
    const [, , usec, args] = e as [number, number, number, string[]];
    return { usec, command: (args ?? []).slice(0, 2).join(' ').slice(0, 80) };
  });
}

export async function resetStats(client: Redis, slowerThanUsec: number): Promise<void> {
  await client.config('SET', 'slowlog-log-slower-than', String(slowerThanUsec));
  await client.call('SLOWLOG', 'RESET');
  await client.config('RESETSTAT');
}
