// The store alone, without AMI or nft: the ceiling of the Redis path and what each address costs in memory.
//
// 1. RedisStore.recordFailure from this process, as the daemon calls it (ioredis, auto-pipelining, up to 5,000 in
//    flight), on the throughput stream's pattern: M addresses × 5 rounds (rounds 1–4 count, round 5 bans; later
//    rounds are answered by the daemon's ban cache and never reach Redis). Gives calls/s, Redis µs per EVALSHA, CPU
//    of both sides, and used_memory per address while counting (4 failures) and once banned.
// 2. PROTOTYPE bench/prototypes/record-failures-batch.lua: the same events, 100 per EVALSHA, ban index written in
//    the script. Same end state (checked: M bans in the index); shows what batching would lift.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { createRedisClient } from '../../src/store/redis-client.js';
import { cpuTimes } from '../lib/proc.js';
import { commandStats, resetStats, startRedis, usedMemory } from '../lib/redis.js';
import { KIND } from '../lib/stream.js';
import { defaultPolicy, redisStore } from '../lib/src-api.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { attacker, fmtInt, now, round } from '../lib/util.js';

const IN_FLIGHT = 5000;
const BATCH = 100;

export const store: Benchmark = {
  name: 'store',
  title: 'Redis store ceiling and memory per address (no AMI, no nft)',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { cleanups, log } = ctx;
    const m = ctx.opts.addresses;
    const redis = await startRedis(cleanups);
    const pid = redis.server.pid;
    const POLICY = defaultPolicy().params;
    const st = redisStore(redis.server.url, 'bench-node');
    cleanups.add(() => st.close());
    const addrs = Array.from({ length: m }, (_, i) => attacker(i));

    const measure = async (what: string, fn: () => Promise<void>): Promise<{ ms: number; redisMs: number; clientMs: number }> => {
      log(what);
      const r0 = cpuTimes(pid)!.self;
      const u0 = process.cpuUsage();
      const t0 = now();
      await fn();
      const ms = now() - t0;
      const u = process.cpuUsage(u0);
      return { ms, redisMs: cpuTimes(pid)!.self - r0, clientMs: (u.user + u.system) / 1000 };
    };
    const rounds = async (from: number, to: number): Promise<void> => {
      for (let r = from; r <= to; r++) {
        for (let i = 0; i < m; i += IN_FLIGHT) {
          ctx.signal.throwIfAborted();
          const batch: Promise<unknown>[] = [];
          for (let j = i; j < Math.min(m, i + IN_FLIGHT); j++) {
            batch.push(st.recordFailure(addrs[j]!, KIND, '6001', Date.now()));
          }
          await Promise.all(batch);
        }
      }
    };

    await resetStats(redis.client, 1000);
    const mem0 = await usedMemory(redis.client);
    const counting = await measure('store: rounds 1–4 (counting)', () => rounds(1, 4));
    const mem1 = await usedMemory(redis.client);
    const banning = await measure('store: round 5 (bans)', () => rounds(5, 5));
    const mem2 = await usedMemory(redis.client);
    const stats = await commandStats(redis.client);
    const bans = await redis.client.zcard('ami-guard:bans');
    if (bans !== m) throw new Error(`store: ${bans} bans in the index, expected ${m}`);
    const calls = 5 * m;
    const storeMs = counting.ms + banning.ms;
    const storeRedisMs = counting.redisMs + banning.redisMs;
    const storeClientMs = counting.clientMs + banning.clientMs;
    const evalsha = stats['evalsha']!;

    // the batched prototype, on a clean database
    await redis.client.flushall();
    await resetStats(redis.client, 1000);
    const lua = readFileSync(join(process.cwd(), 'bench/prototypes/record-failures-batch.lua'), 'utf8');
    const sha = (await redis.client.script('LOAD', lua)) as string;
    const batchClient = createRedisClient({ url: redis.server.url });
    cleanups.add(async () => {
      batchClient.disconnect();
    });
    const batched = await measure(`prototype: ${BATCH} events per EVALSHA`, async () => {
      for (let r = 1; r <= 5; r++) {
        const inFlight: Promise<unknown>[] = [];
        for (let i = 0; i < m; i += BATCH) {
          ctx.signal.throwIfAborted();
          const keys: string[] = ['ami-guard:bans'];
          const args: (string | number)[] = [POLICY.maxretry, POLICY.findtimeMs, POLICY.bantimeMs, POLICY.historyTtlMs, 50, 'bench-node'];
          const t = Date.now();
          for (let j = i; j < Math.min(m, i + BATCH); j++) {
            const base = `ami-guard:{${addrs[j]!}}:`;
            keys.push(`${base}fail`, `${base}ban`, `${base}hist`);
            args.push(t, KIND, '6001', 1);
          }
          inFlight.push(batchClient.evalsha(sha, keys.length, ...keys, ...args));
          if (inFlight.length >= IN_FLIGHT / BATCH) await Promise.all(inFlight.splice(0));
        }
        await Promise.all(inFlight);
      }
    });
    const bStats = await commandStats(redis.client);
    const bBans = await redis.client.zcard('ami-guard:bans');
    if (bBans !== m) throw new Error(`prototype: ${bBans} bans in the index, expected ${m}`);
    const mem3 = await usedMemory(redis.client);
    const bEval = bStats['evalsha']!;

    const sample = await sampleKeys(redis.client);

    // PROTOTYPE: the counting state in a compact layout (short prefix, ms in base 36, one-letter kind code)
    log('prototype: compact failure window');
    await redis.client.flushall();
    const memC0 = await usedMemory(redis.client);
    const entry = `${Date.now().toString(36)}|C|6001`;
    for (let i = 0; i < m; i += 5000) {
      const pipe = redis.client.pipeline();
      for (let j = i; j < Math.min(m, i + 5000); j++) {
        const k = `ag:{${addrs[j]!}}:f`;
        pipe.lpush(k, entry, entry, entry, entry);
        pipe.pexpire(k, POLICY.findtimeMs);
      }
      await pipe.exec();
    }
    const compactCounting = Math.round(((await usedMemory(redis.client)) - memC0) / m);
    const data = {
      addresses: m,
      store: {
        calls,
        callsPerSecond: Math.round(calls / (storeMs / 1000)),
        countingPerSecond: Math.round((4 * m) / (counting.ms / 1000)),
        banningPerSecond: Math.round(m / (banning.ms / 1000)),
        redisCores: round(storeRedisMs / storeMs, 2),
        clientCores: round(storeClientMs / storeMs, 2),
        redisCpuUsPerCall: round((storeRedisMs * 1000) / calls, 2),
        clientCpuUsPerCall: round((storeClientMs * 1000) / calls, 2),
        evalshaUsecPerCall: evalsha.usecPerCall,
        otherCommands: Object.fromEntries(Object.entries(stats).filter(([k]) => k !== 'evalsha').map(([k, s]) => [k, s.calls])),
      },
      memory: {
        countingBytesPerAddress: Math.round((mem1 - mem0) / m),
        bannedBytesPerAddress: Math.round((mem2 - mem0) / m),
        prototypeBannedBytesPerAddress: Math.round((mem3 - mem0) / m),
        compactCountingBytesPerAddress: compactCounting,
        compactEntry: entry,
        sampleKeys: sample,
      },
      prototype: {
        batch: BATCH,
        eventsPerSecond: Math.round(calls / (batched.ms / 1000)),
        redisCores: round(batched.redisMs / batched.ms, 2),
        clientCores: round(batched.clientMs / batched.ms, 2),
        redisCpuUsPerEvent: round((batched.redisMs * 1000) / calls, 2),
        clientCpuUsPerEvent: round((batched.clientMs * 1000) / calls, 2),
        evalshaUsecPerEvent: round(bEval.usec / calls, 2),
      },
    };
    const s = data.store;
    const p = data.prototype;
    return {
      data,
      rows: [
        measured('store: RedisStore.recordFailure from one client', `${fmtInt(s.callsPerSecond)} calls/s`, {
          note: `Redis ${s.redisCores} cores (${s.redisCpuUsPerCall} µs CPU/call, ${s.evalshaUsecPerCall} µs in EVALSHA), ` +
            `client ${s.clientCores} cores (${s.clientCpuUsPerCall} µs/call)`,
        }),
        measured('  PROTOTYPE: 100 events per EVALSHA', `${fmtInt(p.eventsPerSecond)} events/s`, {
          note: `Redis ${p.redisCpuUsPerEvent} µs CPU/event, client ${p.clientCpuUsPerEvent} µs/event (${round(p.eventsPerSecond / s.callsPerSecond, 1)}×)`,
        }),
        measured('  Redis memory per address while counting (4 failures)', `${fmtInt(data.memory.countingBytesPerAddress)} B`, {
          goal: '≤ 200 B', met: data.memory.countingBytesPerAddress <= 200,
        }),
        measured('  PROTOTYPE: compact window (ag:{a}:f, `ms36|C|acct`)', `${fmtInt(compactCounting)} B`, {
          note: 'per address while counting, same 4 entries',
        }),
        measured('  Redis memory per banned address', `${fmtInt(data.memory.bannedBytesPerAddress)} B`, {
          note: 'ban hash + history list + index entry, no fleet stream',
        }),
      ],
    };
  },
};

/** MEMORY USAGE of one address's keys in each state, to show what the bytes are. */
async function sampleKeys(client: Redis): Promise<Record<string, number | null>> {
  const a = '203.0.113.7';
  const base = `ami-guard:{${a}}:`;
  await client.del(`${base}fail`);
  await client.lpush(`${base}fail`, ...Array.from({ length: 4 }, () => `${Date.now()}|${KIND}|6001`));
  await client.pexpire(`${base}fail`, 600_000);
  const usage = async (k: string): Promise<number | null> => (await client.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) as number | null;
  const out: Record<string, number | null> = {
    'fail LIST, 4 entries': await usage(`${base}fail`),
    'ban HASH (sample banned address)': await usage(`ami-guard:{${attacker(0)}}:ban`),
    'hist LIST, 1 entry (sample banned address)': await usage(`ami-guard:{${attacker(0)}}:hist`),
  };
  const index = await usage('ami-guard:bans');
  const members = await client.zcard('ami-guard:bans');
  out['ban index ZSET per member'] = index === null || members === 0 ? null : Math.round(index / members);
  await client.del(`${base}fail`);
  return out;
}
