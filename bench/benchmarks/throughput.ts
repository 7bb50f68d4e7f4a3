// Pipeline throughput: the synthetic AMI server blasts N events from M addresses (round-robin interleaved, each
// address gets N/M events) at the real `ami-guard run`, with a real Redis and nft in a throwaway namespace, and the
// clock runs from the first byte written until everything is decided and applied.
//
// "Done" is detected with a marker: after the stream, maxretry events from an IPv6 address. The daemon handles
// messages in order, Redis answers one connection in order and the nft queue applies in order, so once the marker
// is in the kernel set everything before it has been counted and every ban before it applied. The marker goes to
// the otherwise empty IPv6 network set (the marker's /64), which nft lists in a few ms even with 100k addresses in the IPv4 set; it is
// polled only once the daemon has logged the marker's ban. Afterwards the counts are checked: bans in the kernel
// set, bans in Redis's ban index, EVALSHA calls.
//
// The same run gives the memory figures (daemon RSS at the end, Redis used_memory per tracked address) and the CPU
// split (daemon, its nft children, redis-server, the bench itself, everything else on the machine).
import { readdirSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Netns } from '../../test/support/netns.js';
import { createBenchNetns } from '../lib/netns.js';
import { SyntheticAmi } from '../lib/ami-server.js';
import { analyseProfile, type ProfileSummary } from '../lib/cpuprofile.js';
import { daemonConfig, daemonEnv, metricSum, scrapeMetrics, startDaemon } from '../lib/daemon.js';
import { cpuTimes, memory, systemCpu, type CpuTimes } from '../lib/proc.js';
import { commandStats, info, resetStats, slowlog, startRedis, usedMemory } from '../lib/redis.js';
import { buildAmiStream, eventsFrom } from '../lib/stream.js';
import { measured, type BenchContext, type BenchResult, type Benchmark, type Row } from '../lib/types.js';
import { fmtInt, now, poll, round, sleep, summarise, withTimeout } from '../lib/util.js';
import { banIndexSize, layoutKeys } from '../lib/src-api.js';

const MAXRETRY = 5;
/** documentation prefix (RFC 3849): bannable, and far from the attackers */
export const MARKER = '2001:db8:ffff::250';
/** what the marker's guesses ban: its /64 (policy.ipv6prefix, default 64), in the IPv6 interval set */
export const MARKER_BAN = '2001:db8:ffff::/64';
const GOAL_EVENTS_PER_S = 50_000;
const GOAL_RSS_MB = 120;
/** issue 12: ≤ 200 B per counting address (the store bench) and ≤ 400 B per banned one, as every address is here */
const GOAL_BYTES_PER_BANNED_ADDRESS = 400;

export interface Sample {
  /** s since the blast started */
  readonly t: number;
  /** events handed to the socket so far (the daemon reads them off the socket as fast as it goes) */
  readonly written: number;
  /** EVALSHA calls Redis has executed so far */
  readonly evalsha: number;
  /** CPU cores used since the previous sample */
  readonly daemonCores: number;
  readonly redisCores: number;
  /** daemon VmRSS, MB */
  readonly daemonRssMB: number;
}

export interface ThroughputData {
  readonly events: number;
  readonly addresses: number;
  readonly streamBytes: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** the last byte of the stream accepted by the socket, s after the first */
  readonly writtenSeconds: number;
  readonly markerResends: number;
  readonly verify: {
    readonly nftBannedV4: number;
    readonly redisBanIndex: number;
    readonly expectedBans: number;
    readonly evalshaCalls: number;
    readonly banLogLines: number;
    readonly shed: number | null;
  };
  readonly cpu: Record<string, number>;
  readonly memory: {
    readonly daemonRssMB: number;
    readonly daemonPeakRssMB: number;
    readonly daemonRssBeforeMB: number;
    readonly redisUsedBefore: number;
    readonly redisUsedAfter: number;
    readonly redisBytesPerAddress: number;
    readonly keys: Record<string, number>;
    /** from the daemon's /metrics when it has one: when the stream was written (largest backlog) and at the end */
    readonly daemonMetrics: { atStreamWritten: Record<string, number> | null; atEnd: Record<string, number> | null };
  };
  /** events handed to the socket per second (the daemon reads as fast as it processes): min / p10 / median */
  readonly perSecond: { min: number; p10: number; median: number };
  /** the rate in each round of the stream (round r: every address's r-th event; the maxretry-th round bans) */
  readonly rounds: Array<{ round: number; seconds: number; eventsPerSecond: number }>;
  /** NODE_OPTIONS given to the daemon, if any */
  readonly daemonNodeOptions: string | null;
  readonly redis: {
    readonly commandstats: Record<string, { calls: number; usecPerCall: number; usec: number }>;
    readonly usecPerEvent: number;
    readonly slowlog: { count: number; top: Array<{ usec: number; command: string }> };
  };
  readonly samples: Sample[];
  readonly profile?: ProfileSummary;
  readonly profileFile?: string;
}

export const throughput: Benchmark = {
  name: 'throughput',
  title: 'pipeline throughput, memory at the end of it',
  timeoutMs: 420_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const d = await runThroughput(ctx, false);
    return { data: d as unknown as Record<string, unknown>, rows: throughputRows(d) };
  },
};

/** rounds before the ban round (mean), the ban round, rounds after it (mean) */
function roundSummaryText(d: ThroughputData): string {
  const r = d.rounds;
  const mean = (xs: typeof r): number => (xs.length ? xs.reduce((a, x) => a + x.seconds, 0) : NaN);
  const rate = (xs: typeof r): string => (xs.length ? fmtInt((xs.length * d.addresses) / mean(xs)) : '–');
  return `${rate(r.filter((x) => x.round < MAXRETRY))} / ${rate(r.filter((x) => x.round === MAXRETRY))} / ${rate(r.filter((x) => x.round > MAXRETRY))}`;
}

/** other processes used at least this many cores during the run: the figure is depressed and says so */
const CONTENDED_CORES = 0.3;

export function throughputRows(d: ThroughputData): Row[] {
  const v = d.verify;
  const contended = (d.cpu['other'] ?? 0) > CONTENDED_CORES ? `; WARNING: other processes used ${d.cpu['other']} cores during the run` : '';
  const complete = v.nftBannedV4 === v.expectedBans && v.redisBanIndex === v.expectedBans;
  const cpu = d.cpu;
  return [
    measured('pipeline throughput', `${fmtInt(d.eventsPerSecond)} events/s`, {
      goal: `≥ ${fmtInt(GOAL_EVENTS_PER_S)} events/s`,
      met: d.eventsPerSecond >= GOAL_EVENTS_PER_S && complete,
      note:
        `${fmtInt(d.events)} events from ${fmtInt(d.addresses)} addresses in ${round(d.seconds, 2)} s; ` +
        `${fmtInt(v.nftBannedV4)}/${fmtInt(v.expectedBans)} bans in the set, ${fmtInt(v.redisBanIndex)} in Redis` +
        (v.shed ? `, ${fmtInt(v.shed)} events shed` : '') +
        (d.markerResends ? `, marker re-sent ${d.markerResends}×` : '') +
        `; intake per second min ${fmtInt(d.perSecond.min)}, median ${fmtInt(d.perSecond.median)}${contended}`,
    }),
    measured('  by round: counting / ban round / already banned', roundSummaryText(d), {
      note: 'events/s; the ban round decides and applies one ban per event, later rounds are answered by the ban cache',
    }),
    measured(
      '  CPU during the run (cores)',
      `daemon ${cpu['daemon']}, nft ${cpu['nftChildren']}, redis ${cpu['redis']}, ` + `bench ${cpu['bench']}, other ${cpu['other']}`,
      { note: `of ${cpu['machineCores']} cores` },
    ),
    measured(
      '  ceiling with a whole core each',
      `daemon ${fmtInt(cpu['daemonCeiling']!)}, redis ${fmtInt(cpu['redisCeiling']!)} events/s`,
      {
        note: `daemon ${cpu['daemonCpuUsPerEvent']} µs CPU/event, redis ${cpu['redisCpuUsPerEvent']} µs CPU/event`,
      },
    ),
    measured('  Redis time per EVALSHA', `${d.redis.usecPerEvent} µs`, {
      note: `${fmtInt(v.evalshaCalls)} EVALSHA; slowlog ≥1 ms: ${d.redis.slowlog.count}`,
    }),
    measured('daemon RSS at the end of the run', `${d.memory.daemonRssMB} MB`, {
      goal: `≤ ${GOAL_RSS_MB} MB`,
      met: d.memory.daemonRssMB <= GOAL_RSS_MB,
      note: `peak ${d.memory.daemonPeakRssMB} MB; ${d.memory.daemonRssBeforeMB} MB before the stream`,
    }),
    measured('Redis used_memory per banned address', `${fmtInt(d.memory.redisBytesPerAddress)} B`, {
      goal: `≤ ${GOAL_BYTES_PER_BANNED_ADDRESS} B`,
      met: d.memory.redisBytesPerAddress <= GOAL_BYTES_PER_BANNED_ADDRESS,
      note: `${fmtInt(d.addresses)} addresses, each banned (ban record, history, index entry)`,
    }),
  ];
}

export async function runThroughput(ctx: BenchContext, profile: boolean): Promise<ThroughputData> {
  const { cleanups, opts, log, signal } = ctx;
  const shape = { events: opts.events, addresses: opts.addresses };
  log(`building the stream: ${fmtInt(shape.events)} events from ${fmtInt(shape.addresses)} addresses`);
  const stream = buildAmiStream(shape);
  const marker = eventsFrom(MARKER, MAXRETRY);

  const redis = await startRedis(cleanups);
  const ns = await createBenchNetns(cleanups);
  const ami = await SyntheticAmi.start();
  cleanups.add(() => ami.stop());
  const env = await daemonEnv();
  // for experiments with V8 flags without touching the bench: AGBENCH_DAEMON_NODE_OPTIONS='--max-semi-space-size=32'
  const nodeOptions = process.env['AGBENCH_DAEMON_NODE_OPTIONS'];
  if (nodeOptions) env['NODE_OPTIONS'] = nodeOptions;
  const profileDir = profile ? mkdtempSync(join(tmpdir(), 'agbench-prof-')) : undefined;
  const daemon = startDaemon({
    config: daemonConfig({ amiPort: ami.port, redisUrl: redis.server.url, netns: ns.name }),
    env,
    nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  });
  cleanups.add(async () => {
    await daemon.stop();
  });
  await daemon.waitForLog((l) => l.msg === 'reconciled firewall with store', 30_000);
  await withTimeout(ami.ready, 30_000, 'the daemon logging in to the synthetic AMI');
  await sleep(200);

  let markerBanAt: number | null = null;
  daemon.onBan = (address, at) => {
    if (address === MARKER_BAN) markerBanAt = at;
  };
  await resetStats(redis.client, 1000);
  const memBefore = await usedMemory(redis.client);
  const rssBefore = memory(daemon.pid)?.rss ?? NaN;
  const cpu0 = snapshot(daemon.pid, redis.server.pid);

  // one sample a second, for the shape of the run
  const samples: Sample[] = [];
  const eventBytes = stream.bytes / shape.events;
  let last = cpu0;
  let blastStart = now();
  const sampler = setInterval(() => {
    void (async () => {
      const s = snapshot(daemon.pid, redis.server.pid);
      const dt = s.at - last.at;
      const evalsha = ((await commandStats(redis.client).catch(() => ({}))) as Record<string, { calls: number }>)['evalsha']?.calls ?? 0;
      samples.push({
        t: round((s.at - blastStart) / 1000, 2),
        written: Math.round(ami.blastBytes / eventBytes),
        evalsha,
        daemonCores: round((s.daemon.self - last.daemon.self) / dt, 2),
        redisCores: round((s.redis.self - last.redis.self) / dt, 2),
        daemonRssMB: round((memory(daemon.pid)?.rss ?? NaN) / 2 ** 20, 1),
      });
      last = s;
    })();
  }, 1000);
  cleanups.add(() => clearInterval(sampler));

  log('blasting');
  blastStart = now();
  const blast = await ami.blast(stream.chunks, signal).catch((err: unknown) => {
    // say why the daemon let go: its warnings and errors
    const said = daemon.logs
      .filter((l) => l.level >= 40)
      .slice(-5)
      .map((l) => `${l.msg} ${JSON.stringify(l['reason'] ?? l['err'] ?? '')}`);
    throw new Error(`${(err as Error).message}; daemon said: ${said.join(' | ') || '(nothing)'}`);
  });
  ami.write(marker);
  // the backlog is largest now: what the daemon holds (if this version serves /metrics)
  const atWritten = heapFigures(await scrapeMetrics(env['AMI_GUARD_HTTP_PORT']));
  log(`stream written in ${round((blast.writtenAt - blast.startedAt) / 1000, 2)} s; waiting for the marker ban`);

  // the marker's ban log line; if Redis has gone quiet without it (its events were shed), send it again
  let markerResends = 0;
  let lastEvalsha = -1;
  await poll(
    'the marker ban in the daemon log',
    async () => {
      if (markerBanAt !== null) return true;
      const calls = (await commandStats(redis.client))['evalsha']?.calls ?? 0;
      if (calls === lastEvalsha) {
        markerResends++;
        ami.write(marker);
      }
      lastEvalsha = calls;
      return undefined;
    },
    300_000,
    1000,
    signal,
  );
  // then the marker in the kernel set, polled in the small IPv6 network set
  await poll(
    'the marker in the kernel set',
    async () => ((await listSet(ns, 'banned_v6_net')).includes(MARKER_BAN) ? true : undefined),
    30_000,
    0,
    signal,
  );
  const end = now();
  clearInterval(sampler);
  const cpu1 = snapshot(daemon.pid, redis.server.pid);
  const seconds = (end - blast.startedAt) / 1000;
  log(`done in ${round(seconds, 2)} s`);

  // figures at the end of the run
  const mem = memory(daemon.pid);
  const memAfter = await usedMemory(redis.client);
  const stats = await commandStats(redis.client);
  const slow = await slowlog(redis.client);
  const keys = await keyMemory(redis.client);
  const metrics = await scrapeMetrics(env['AMI_GUARD_HTTP_PORT']);
  const shed = metricSum(metrics, 'ami_guard_events_shed_total');
  const atEnd = heapFigures(metrics);
  log('verifying the kernel set and the store');
  const v4 = (await listSet(ns, 'banned_v4')).length;
  const index = await banIndexSize(redis.client);
  const expectedBans = expectedBanCount(shape.events, shape.addresses);

  let profileSummary: ProfileSummary | undefined;
  let profileFile: string | undefined;
  if (profileDir) {
    await daemon.stop();
    const f = readdirSync(profileDir).find((n) => n.endsWith('.cpuprofile'));
    if (!f) throw new Error(`no .cpuprofile written in ${profileDir}`);
    profileFile = join(process.cwd(), 'bench/results', `daemon-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
    copyFileSync(join(profileDir, f), profileFile);
    profileSummary = analyseProfile(join(profileDir, f));
  }

  const wall = cpu1.at - cpu0.at;
  const cores = (a: number, b: number): number => round((b - a) / wall, 2);
  const machineCores = round((cpu1.system.total - cpu0.system.total) / wall, 2);
  const daemonC = cores(cpu0.daemon.self, cpu1.daemon.self);
  const nftC = cores(cpu0.daemon.children, cpu1.daemon.children);
  const redisC = cores(cpu0.redis.self, cpu1.redis.self);
  const benchC = cores(cpu0.bench, cpu1.bench);
  const busy = cores(cpu0.system.busy, cpu1.system.busy);
  const evalsha = stats['evalsha'] ?? { calls: 0, usec: 0, usecPerCall: 0 };
  return {
    events: shape.events,
    addresses: shape.addresses,
    streamBytes: stream.bytes,
    seconds: round(seconds, 3),
    eventsPerSecond: Math.round(shape.events / seconds),
    writtenSeconds: round((blast.writtenAt - blast.startedAt) / 1000, 3),
    markerResends,
    verify: {
      nftBannedV4: v4,
      redisBanIndex: index - 1, // the marker
      expectedBans,
      evalshaCalls: evalsha.calls,
      banLogLines: daemon.bans,
      shed,
    },
    cpu: {
      machineCores,
      busy,
      daemon: daemonC,
      nftChildren: nftC,
      redis: redisC,
      bench: benchC,
      other: round(Math.max(0, busy - daemonC - nftC - redisC - benchC), 2),
      daemonCpuUsPerEvent: round(((cpu1.daemon.self - cpu0.daemon.self) * 1000) / shape.events, 2),
      redisCpuUsPerEvalsha: round(((cpu1.redis.self - cpu0.redis.self) * 1000) / Math.max(1, evalsha.calls), 2),
      redisCpuUsPerEvent: round(((cpu1.redis.self - cpu0.redis.self) * 1000) / shape.events, 2),
      // events/s each side could reach with a whole core to itself at today's cost per event
      daemonCeiling: Math.round((shape.events * 1000) / (cpu1.daemon.self - cpu0.daemon.self)),
      redisCeiling: Math.round((shape.events * 1000) / (cpu1.redis.self - cpu0.redis.self)),
    },
    memory: {
      daemonRssMB: mem ? round(mem.rss / 2 ** 20, 1) : NaN,
      daemonPeakRssMB: mem ? round(mem.hwm / 2 ** 20, 1) : NaN,
      daemonRssBeforeMB: round(rssBefore / 2 ** 20, 1),
      redisUsedBefore: memBefore,
      redisUsedAfter: memAfter,
      redisBytesPerAddress: Math.round((memAfter - memBefore) / shape.addresses),
      keys,
      daemonMetrics: { atStreamWritten: atWritten, atEnd },
    },
    perSecond: perSecondIntake(samples, (blast.writtenAt - blast.startedAt) / 1000),
    rounds: roundRates(samples, shape, seconds),
    daemonNodeOptions: nodeOptions ?? null,
    redis: {
      commandstats: Object.fromEntries(
        Object.entries(stats).map(([k, s]) => [k, { calls: s.calls, usecPerCall: s.usecPerCall, usec: s.usec }]),
      ),
      usecPerEvent: round(evalsha.usecPerCall, 2),
      slowlog: { count: slow.length, top: slow.slice(0, 5) },
    },
    samples,
    ...(profileSummary ? { profile: profileSummary, profileFile } : {}),
  };
}

/** The daemon's memory and backlog figures from its /metrics (MB, events); null without an HTTP listener. */
function heapFigures(m: Map<string, number> | null): Record<string, number> | null {
  if (!m) return null;
  const mb = (name: string): number => round((metricSum(m, name) ?? NaN) / 2 ** 20, 1);
  return {
    rssMB: mb('process_resident_memory_bytes'),
    heapTotalMB: mb('nodejs_heap_size_total_bytes'),
    heapUsedMB: mb('nodejs_heap_size_used_bytes'),
    externalMB: mb('nodejs_external_memory_bytes'),
    pendingEvents: metricSum(m, 'ami_guard_pending_events') ?? NaN,
  };
}

/**
 * When the intake crossed each round boundary (every address's r-th event written), by linear interpolation between
 * samples; the last round ends when the run does. Intake leads processing by what the socket buffers hold (a few
 * thousand events), which blurs the boundaries by well under a second.
 */
function roundRates(
  samples: readonly Sample[],
  shape: { events: number; addresses: number },
  endSeconds: number,
): Array<{ round: number; seconds: number; eventsPerSecond: number }> {
  const at = (events: number): number => {
    let prev = { t: 0, written: 0 };
    for (const s of samples) {
      if (s.written >= events) return prev.t + ((events - prev.written) / Math.max(1, s.written - prev.written)) * (s.t - prev.t);
      prev = s;
    }
    return endSeconds;
  };
  const out: Array<{ round: number; seconds: number; eventsPerSecond: number }> = [];
  let start = 0;
  for (let r = 1; r * shape.addresses <= shape.events; r++) {
    const end = r * shape.addresses >= shape.events ? endSeconds : at(r * shape.addresses);
    out.push({ round: r, seconds: round(end - start, 2), eventsPerSecond: Math.round(shape.addresses / Math.max(0.001, end - start)) });
    start = end;
  }
  return out;
}

/** Per-second intake from the samples while the stream was being written (the second it ended in left out). */
function perSecondIntake(samples: readonly Sample[], writtenSeconds: number): { min: number; p10: number; median: number } {
  const rates: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.t > a.t && b.t <= writtenSeconds) rates.push((b.written - a.written) / (b.t - a.t));
  }
  const s = summarise(rates);
  const p10 = [...rates].sort((x, y) => x - y)[Math.floor(rates.length * 0.1)] ?? NaN;
  return { min: Math.round(s.min), p10: Math.round(p10), median: Math.round(s.p50) };
}

/** Addresses that receive at least maxretry events when event k comes from address k % addresses. */
export function expectedBanCount(events: number, addresses: number): number {
  const base = Math.floor(events / addresses);
  const extra = events % addresses;
  return (base >= MAXRETRY ? addresses : 0) + (base + 1 === MAXRETRY ? extra : 0);
}

interface Snapshot {
  readonly at: number;
  readonly daemon: CpuTimes;
  readonly redis: CpuTimes;
  readonly bench: number;
  readonly system: { busy: number; total: number };
}

function snapshot(daemonPid: number, redisPid: number): Snapshot {
  const u = process.cpuUsage();
  return {
    at: now(),
    daemon: cpuTimes(daemonPid) ?? { self: NaN, children: NaN },
    redis: cpuTimes(redisPid) ?? { self: NaN, children: NaN },
    bench: (u.user + u.system) / 1000,
    system: systemCpu(),
  };
}

/** Elements of one of the daemon's sets, by `nft -j list set` inside the namespace. */
export async function listSet(ns: Netns, set: string): Promise<string[]> {
  const r = await ns.exec('nft', ['-j', 'list', 'set', 'inet', 'ami_guard', set]);
  if (r.code !== 0) return [];
  const json = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  const elems = json.nftables.find((o) => o.set)?.set?.elem ?? [];
  return elems.map((e) => {
    const x = e as { elem?: { val?: unknown } } | string;
    if (typeof x === 'string') return x;
    const val = x.elem?.val as string | { prefix?: { addr?: string; len?: number } } | undefined;
    if (typeof val === 'string') return val;
    // a network of an interval set: {"prefix":{"addr":…,"len":…}}
    if (val?.prefix?.addr !== undefined) return `${val.prefix.addr}/${String(val.prefix.len)}`;
    return JSON.stringify(val);
  });
}

/**
 * MEMORY USAGE of the keys of one banned address and of the shared keys (ban index, fleet stream, …), for the
 * breakdown of used_memory per address.
 */
async function keyMemory(client: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const sample = layoutKeys('ami-guard:', '198.18.1.0');
  const usage = async (key: string): Promise<number | null> => (await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) as number | null;
  const record = await usage(sample.record);
  if (record !== null) out['per address: record (ban, history)'] = record;
  const index = await usage(sample.index);
  const members = await client.zcard(sample.index);
  if (index !== null && members > 0) out['per address: its share of an index part'] = Math.round(index / members);
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', 'ami-guard:*', 'COUNT', 10_000);
    cursor = next;
    for (const key of found) {
      if (key.includes('{')) continue;
      const v = (await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) as number | null;
      out[`shared: ${key} (${await client.type(key)})`] = v ?? 0;
    }
  } while (cursor !== '0');
  const ks = await info(client, 'keyspace');
  out['keys in db0'] = Number(/keys=(\d+)/.exec(ks.get('db0') ?? '')?.[1] ?? 0);
  return out;
}
