// The store alone, without AMI or nft: the ceiling of the Redis path and what each address costs in Redis.
//
// RedisStore.recordActivity from this process, as the daemon calls it: each call a batch of BATCH targets with one
// failure each (a socket chunk folded per target), up to IN_FLIGHT calls in flight, on the throughput stream's
// pattern: M addresses × 5 rounds (rounds 1–4 count, round 5 bans; later rounds are answered by the daemon's ban
// cache and never reach Redis). Gives events/s, CPU per event of both sides (from /proc) and Redis's own time in
// the script (INFO commandstats), memory per counting and per banned address (used_memory delta, MEMORY USAGE of the
// keys), the fleet stream's cost per ban, and whether every key expires. Then the counting rounds again at other
// batch sizes, and one event per call (the single-event methods) for comparison.
import type { Redis } from 'ioredis';
import { cpuTimes } from '../lib/proc.js';
import { commandStats, resetStats, startRedis, usedMemory, type CommandStat } from '../lib/redis.js';
import { KIND } from '../lib/stream.js';
import { fleetPublisher, layoutKeys, redisStore, type BenchStore } from '../lib/src-api.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { attacker, fmtInt, now, round } from '../lib/util.js';

const BATCH = 200;
const IN_FLIGHT = 16;
const OTHER_BATCHES = [100, 500];
const SINGLE_ADDRESSES = 10_000;
const STREAM_MESSAGE = 500;

interface Run {
  readonly events: number;
  readonly ms: number;
  readonly redisMs: number;
  readonly clientMs: number;
  /** µs Redis spent executing the scripts (evalsha + eval), from INFO commandstats */
  readonly scriptUsec: number;
}

function scriptUsec(stats: Record<string, CommandStat>): number {
  return (stats['evalsha']?.usec ?? 0) + (stats['eval']?.usec ?? 0);
}

function perEvent(r: Run): { eventsPerSecond: number; redisCpuUs: number; scriptUs: number; clientCpuUs: number } {
  return {
    eventsPerSecond: Math.round(r.events / (r.ms / 1000)),
    redisCpuUs: round((r.redisMs * 1000) / r.events, 2),
    scriptUs: round(r.scriptUsec / r.events, 2),
    clientCpuUs: round((r.clientMs * 1000) / r.events, 2),
  };
}

export const store: Benchmark = {
  name: 'store',
  title: 'Redis store: batched recordActivity, CPU per event and memory per address (no AMI, no nft)',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { cleanups, log } = ctx;
    const m = ctx.opts.addresses;
    const redis = await startRedis(cleanups);
    const addrs = Array.from({ length: m }, (_, i) => attacker(i));

    const open = (): BenchStore => {
      const st = redisStore(redis.server.url, 'bench-node');
      cleanups.add(() => st.close());
      return st;
    };
    const measure = async (what: string, events: number, fn: () => Promise<void>): Promise<Run> => {
      log(what);
      await resetStats(redis.client, 1000);
      const r0 = cpuTimes(redis.server.pid)!.self;
      const u0 = process.cpuUsage();
      const t0 = now();
      await fn();
      const ms = now() - t0;
      const u = process.cpuUsage(u0);
      const stats = await commandStats(redis.client);
      return {
        events,
        ms,
        redisMs: cpuTimes(redis.server.pid)!.self - r0,
        clientMs: (u.user + u.system) / 1000,
        scriptUsec: scriptUsec(stats),
      };
    };
    /** rounds `from`..`to` of one failure per address, `batch` targets per call */
    const rounds = async (
      st: BenchStore,
      targets: readonly unknown[],
      from: number,
      to: number,
      batch: number,
    ): Promise<Record<string, number>> => {
      const types: Record<string, number> = {};
      for (let r = from; r <= to; r++) {
        const inFlight: Array<Promise<void>> = [];
        for (let i = 0; i < targets.length; i += batch) {
          ctx.signal.throwIfAborted();
          inFlight.push(
            st.recordFailures(targets, i, Math.min(targets.length, i + batch), KIND, '6001', Date.now()).then((v) => {
              for (const t of v) types[t] = (types[t] ?? 0) + 1;
            }),
          );
          if (inFlight.length >= IN_FLIGHT) await Promise.all(inFlight.splice(0));
        }
        await Promise.all(inFlight);
      }
      return types;
    };

    // the main run: the throughput pattern at BATCH targets per call
    const st = open();
    const targets = st.targets(addrs);
    const mem0 = await usedMemory(redis.client);
    let seen: Record<string, number> = {};
    const counting = await measure(`store: rounds 1–4 (counting), ${BATCH} targets per call`, 4 * m, async () => {
      seen = await rounds(st, targets, 1, 4, BATCH);
    });
    if (seen['counted'] !== 4 * m) throw new Error(`store: ${JSON.stringify(seen)} in the counting rounds, expected ${4 * m} counted`);
    const mem1 = await usedMemory(redis.client);
    const sampleCounting = await usage(redis.client, attacker(0));
    const banning = await measure('store: round 5 (bans)', m, async () => {
      seen = await rounds(st, targets, 5, 5, BATCH);
    });
    if (seen['banned'] !== m) throw new Error(`store: ${JSON.stringify(seen)} in the ban round, expected ${m} banned`);
    const mem2 = await usedMemory(redis.client);
    const sampleBanned = await usage(redis.client, attacker(0));
    let indexed = 0;
    for await (const page of (st as unknown as { activeBans(n: number): AsyncIterable<unknown[]> }).activeBans(Date.now()))
      indexed += page.length;
    if (indexed !== m) throw new Error(`store: ${indexed} bans in the index, expected ${m}`);

    // the fleet stream: the same bans published as the daemon's FleetSync does, one message per batch
    log('store: the bans on the fleet stream');
    const fleet = fleetPublisher(redis.server.url);
    cleanups.add(async () => fleet.close());
    const until = Date.now() + 3_600_000;
    for (let i = 0; i < m; i += STREAM_MESSAGE) {
      await fleet.publish(addrs.slice(i, i + STREAM_MESSAGE).map((address) => ({ address, until })));
    }
    const mem3 = await usedMemory(redis.client);
    const noTtl = await keysWithoutTtl(redis.client);
    const keys = Number(/keys=(\d+)/.exec(await redis.client.info('keyspace'))?.[1] ?? 0);

    // other batch sizes, counting rounds only, each on a clean database
    const batches: Record<string, ReturnType<typeof perEvent>> = {};
    for (const b of OTHER_BATCHES) {
      await redis.client.flushall();
      const s = open();
      const t = s.targets(addrs);
      batches[String(b)] = perEvent(
        await measure(`store: rounds 1–4 at ${b} targets per call`, 4 * m, async () => {
          await rounds(s, t, 1, 4, b);
        }),
      );
    }
    batches[String(BATCH)] = perEvent(counting);

    // one event per call, as the daemon does until it batches (a tenth of the addresses)
    await redis.client.flushall();
    const single = open();
    const n1 = Math.min(SINGLE_ADDRESSES, m);
    const one = await measure(`store: one event per call (recordFailure), ${n1} addresses × 5 rounds`, 5 * n1, async () => {
      for (let r = 1; r <= 5; r++) {
        for (let i = 0; i < n1; i += 1000) {
          ctx.signal.throwIfAborted();
          await Promise.all(addrs.slice(i, i + 1000).map((a) => single.recordFailure(a, KIND, '6001', Date.now())));
        }
      }
    });

    const c = perEvent(counting);
    const b = perEvent(banning);
    const o = perEvent(one);
    const whole = perEvent({
      events: 5 * m,
      ms: counting.ms + banning.ms,
      redisMs: counting.redisMs + banning.redisMs,
      clientMs: counting.clientMs + banning.clientMs,
      scriptUsec: counting.scriptUsec + banning.scriptUsec,
    });
    const countingBytes = Math.round((mem1 - mem0) / m);
    const bannedBytes = Math.round((mem2 - mem0) / m);
    const streamBytes = Math.round((mem3 - mem2) / m);
    const data = {
      addresses: m,
      batch: BATCH,
      inFlight: IN_FLIGHT,
      counting: c,
      banning: b,
      whole,
      batches,
      singleEvent: { addresses: n1, ...o },
      memory: {
        countingBytesPerAddress: countingBytes,
        bannedBytesPerAddress: bannedBytes,
        streamBytesPerBan: streamBytes,
        keys,
        keysWithoutTtl: noTtl,
        sampleCounting,
        sampleBanned,
      },
    };
    return {
      data,
      rows: [
        measured(`store: recordActivity, ${BATCH} targets per call, one client`, `${fmtInt(whole.eventsPerSecond)} events/s`, {
          note: `counting ${fmtInt(c.eventsPerSecond)}/s, bans ${fmtInt(b.eventsPerSecond)}/s`,
        }),
        measured('  Redis CPU per counted event (rounds 1–4)', `${c.redisCpuUs} µs`, {
          goal: '≤ 10 µs',
          met: c.redisCpuUs <= 10,
          note:
            `${c.scriptUs} µs in the script (commandstats); per ban ${b.redisCpuUs} µs; ` +
            `at ${OTHER_BATCHES.map((x) => `${x}: ${batches[String(x)]!.redisCpuUs}`).join(', ')} µs`,
        }),
        measured('  client CPU per event (ioredis, packing, verdicts)', `${whole.clientCpuUs} µs`, {
          note: `counting ${c.clientCpuUs}, bans ${b.clientCpuUs}`,
        }),
        measured('  one event per call (recordFailure), for comparison', `${fmtInt(o.eventsPerSecond)} events/s`, {
          note: `Redis ${o.redisCpuUs} µs, client ${o.clientCpuUs} µs per event`,
        }),
        measured('  Redis memory per counting address (4 failures)', `${fmtInt(countingBytes)} B`, {
          goal: '≤ 200 B',
          met: countingBytes <= 200,
        }),
        measured('  Redis memory per banned address (record, index)', `${fmtInt(bannedBytes)} B`, {
          goal: '≤ 400 B',
          met: bannedBytes + streamBytes <= 400,
          note: `+ ${streamBytes} B on the fleet stream = ${fmtInt(bannedBytes + streamBytes)} B (the goal counts both)`,
        }),
        measured('  keys without a TTL', `${noTtl.length}`, {
          goal: '0',
          met: noTtl.length === 0,
          note: `of ${fmtInt(keys)} keys`,
        }),
      ],
    };
  },
};

/** MEMORY USAGE of what one address occupies: its record, and its share of its bucket's window and index keys. */
async function usage(client: Redis, address: string): Promise<Record<string, number | null>> {
  const k = layoutKeys('ami-guard:', address);
  const mem = async (key: string): Promise<number | null> => (await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) as number | null;
  const out: Record<string, number | null> = { record: await mem(k.record) };
  const windows = await client.keys(k.windows);
  for (const w of windows) {
    const fields = await client.hlen(w);
    out[`window bucket (${fields} targets, ${(await client.object('ENCODING', w)) as string})`] = await mem(w);
    out['window per target'] = fields > 0 ? Math.round((await mem(w))! / fields) : null;
  }
  const members = await client.zcard(k.index);
  if (members > 0) {
    out[`index part (${members} bans, ${(await client.object('ENCODING', k.index)) as string})`] = await mem(k.index);
    out['index per ban'] = Math.round((await mem(k.index))! / members);
  }
  return out;
}

async function keysWithoutTtl(client: Redis): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'COUNT', 10_000);
    cursor = next;
    const pipe = client.pipeline();
    for (const key of keys) pipe.pttl(key);
    const ttls = (await pipe.exec()) ?? [];
    keys.forEach((key, i) => {
      if (!((ttls[i]?.[1] as number) > 0)) out.push(key);
    });
  } while (cursor !== '0');
  return out;
}
