// An IPv6 attacker rotating addresses (issue 15): --events (1,000,000) events, each from a distinct address of one
// /48 (2001:db8:ab::/48), spread round-robin over its 65,536 /64s (event k from /64 number k % 65,536, host k / 65,536 + 1:
// the worst case for per-prefix counting, every /64 of the /48 in use), blasted at the real `ami-guard run` with a real
// Redis and nft in a throwaway namespace. Three configurations, each on a fresh Redis, namespace and daemon:
//   per /64       the default (policy.ipv6prefix 64): each /64 is counted and banned at its 5th guess;
//   per address   policy.ipv6prefix 128 (before issue 15): every address one window, nothing ever banned;
//   escalation    per /64 with policy.subnet.maxbans 3: the /48 is banned at the third /64 ban.
// Reported per configuration: the time to drain the stream (an IPv4 marker banned after it), Redis used_memory added
// and its keys, the daemon's RSS at the end and its peak, the bans in the kernel's sets and in Redis's index.
import type { Netns } from '../../test/support/netns.js';
import { createBenchNetns } from '../lib/netns.js';
import { SyntheticAmi } from '../lib/ami-server.js';
import { daemonConfig, daemonEnv, metricSum, scrapeMetrics, startDaemon } from '../lib/daemon.js';
import { cpuTimes, memory } from '../lib/proc.js';
import { info, startRedis, usedMemory } from '../lib/redis.js';
import { amiTemplate, eventsFrom, render } from '../lib/stream.js';
import { measured, type BenchContext, type BenchResult, type Benchmark, type Row } from '../lib/types.js';
import { Cleanups, fmtInt, now, poll, round, sleep, withTimeout } from '../lib/util.js';
import { banIndexSize } from '../lib/src-api.js';
import { listSet } from './throughput.js';

const PREFIXES = 65_536;
const MARKER = '192.0.2.250';

interface Configuration {
  readonly name: string;
  readonly policy: Record<string, unknown>;
}

const CONFIGURATIONS: readonly Configuration[] = [
  { name: 'per /64', policy: {} },
  { name: 'per address', policy: { ipv6prefix: 128 } },
  { name: 'escalation', policy: { subnet: { maxbans: 3 } } },
];

export interface RotationRun {
  readonly name: string;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly redisBytes: number;
  readonly redisKeys: number;
  readonly daemonRssMB: number;
  readonly daemonPeakRssMB: number;
  readonly daemonRssBeforeMB: number;
  readonly daemonCpuUsPerEvent: number;
  readonly kernel: { readonly v6Networks: number; readonly v6Hosts: number };
  readonly redisBanIndex: number;
  readonly skippedAlreadyBanned: number | null;
  readonly shed: number | null;
}

/** the address of event k: /64 number k % 65,536 of 2001:db8:ab::/48, host k / 65,536 + 1 */
function rotatingAddress(k: number): string {
  return `2001:db8:ab:${(k % PREFIXES).toString(16)}::${(Math.floor(k / PREFIXES) + 1).toString(16)}`;
}

function buildStream(events: number, chunkBytes = 256 * 1024): { chunks: Buffer[]; bytes: number } {
  const t = amiTemplate();
  const chunks: Buffer[] = [];
  let parts: string[] = [];
  let partBytes = 0;
  let bytes = 0;
  for (let k = 0; k < events; k++) {
    const ev = render(t, rotatingAddress(k), k);
    parts.push(ev);
    partBytes += ev.length;
    if (partBytes >= chunkBytes || k === events - 1) {
      const b = Buffer.from(parts.join(''), 'latin1');
      chunks.push(b);
      bytes += b.length;
      parts = [];
      partBytes = 0;
    }
  }
  return { chunks, bytes };
}

async function runOne(
  ctx: BenchContext,
  c: Configuration,
  stream: { chunks: Buffer[]; bytes: number },
  events: number,
): Promise<RotationRun> {
  // its own, run when it ends; and the suite's, should the benchmark be abandoned midway
  const cleanups = new Cleanups();
  ctx.cleanups.add(() => cleanups.run(ctx.log));
  try {
    const redis = await startRedis(cleanups);
    const ns: Netns = await createBenchNetns(cleanups);
    const ami = await SyntheticAmi.start();
    cleanups.add(() => ami.stop());
    const env = await daemonEnv();
    const config = daemonConfig({ amiPort: ami.port, redisUrl: redis.server.url, netns: ns.name }) as Record<string, unknown>;
    const daemon = startDaemon({ config: { ...config, policy: c.policy }, env });
    cleanups.add(async () => {
      await daemon.stop();
    });
    await daemon.waitForLog((l) => l.msg === 'reconciled firewall with store', 30_000);
    await withTimeout(ami.ready, 30_000, 'the daemon logging in to the synthetic AMI');
    await sleep(200);
    let markerBanned = false;
    daemon.onBan = (address) => {
      if (address === MARKER) markerBanned = true;
    };
    const memBefore = await usedMemory(redis.client);
    const rssBefore = memory(daemon.pid)?.rss ?? NaN;
    const cpu0 = cpuTimes(daemon.pid);
    let peak = rssBefore;
    const sampler = setInterval(() => {
      peak = Math.max(peak, memory(daemon.pid)?.rss ?? 0);
    }, 250);
    cleanups.add(async () => clearInterval(sampler));

    ctx.log(`${c.name}: blasting ${fmtInt(events)} events`);
    const started = now();
    await ami.blast(stream.chunks, ctx.signal);
    ami.write(eventsFrom(MARKER, 5));
    // while more distinct targets wait than pipeline.maxPending the marker's events may be shed: sent again now and then
    let resent = 0;
    await poll(
      'the marker ban in the daemon log',
      async () => {
        if (markerBanned) return true;
        if (++resent % 20 === 0) ami.write(eventsFrom(MARKER, 5));
        return undefined;
      },
      300_000,
      250,
      ctx.signal,
    );
    try {
      await poll(
        'the marker in the kernel set',
        async () => ((await listSet(ns, 'banned_v4')).includes(MARKER) ? true : undefined),
        30_000,
        0,
        ctx.signal,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; the daemon's last output:\n${daemon.tail()}`);
    }
    const seconds = (now() - started) / 1000;
    clearInterval(sampler);
    const cpu1 = cpuTimes(daemon.pid);
    const mem = memory(daemon.pid);
    const memAfter = await usedMemory(redis.client);
    const keys = Number(/keys=(\d+)/.exec((await info(redis.client, 'keyspace')).get('db0') ?? '')?.[1] ?? 0);
    const metrics = await scrapeMetrics(env['AMI_GUARD_HTTP_PORT']);
    const skipped = metrics
      ? [...metrics]
          .filter(([k]) => k.startsWith('ami_guard_events_skipped_total{') && k.includes('already-banned'))
          .reduce((a, [, v]) => a + v, 0)
      : null;
    const run: RotationRun = {
      name: c.name,
      seconds: round(seconds, 2),
      eventsPerSecond: Math.round(events / seconds),
      redisBytes: memAfter - memBefore,
      redisKeys: keys,
      daemonRssMB: round((mem?.rss ?? NaN) / 2 ** 20, 1),
      daemonPeakRssMB: round(Math.max(peak, mem?.hwm ?? 0) / 2 ** 20, 1),
      daemonRssBeforeMB: round(rssBefore / 2 ** 20, 1),
      daemonCpuUsPerEvent: cpu0 && cpu1 ? round(((cpu1.self - cpu0.self) * 1000) / events, 1) : NaN,
      kernel: { v6Networks: (await listSet(ns, 'banned_v6_net')).length, v6Hosts: (await listSet(ns, 'banned_v6')).length },
      redisBanIndex: (await banIndexSize(redis.client)) - 1, // the marker
      skippedAlreadyBanned: skipped,
      shed: metricSum(metrics, 'ami_guard_events_shed_total'),
    };
    ctx.log(`${c.name}: ${JSON.stringify(run)}`);
    return run;
  } finally {
    await cleanups.run(ctx.log);
  }
}

export const rotation: Benchmark = {
  name: 'rotation',
  title: 'an IPv6 attacker rotating through 1M addresses of one /48: Redis and daemon memory per /64, per address, with escalation',
  timeoutMs: 1_200_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const events = ctx.opts.events;
    ctx.log(`building the stream: ${fmtInt(events)} events, each from its own address of 2001:db8:ab::/48`);
    const stream = buildStream(events);
    const runs: RotationRun[] = [];
    // AGBENCH_ROTATION=escalation,…: only these configurations (by name)
    const only = process.env['AGBENCH_ROTATION']?.split(',');
    for (const c of CONFIGURATIONS) if (!only || only.includes(c.name)) runs.push(await runOne(ctx, c, stream, events));
    const rows: Row[] = runs.map((r) =>
      measured(
        `rotation, ${r.name}: Redis added / daemon RSS end (peak)`,
        `${round(r.redisBytes / 2 ** 20, 1)} MiB in ${fmtInt(r.redisKeys)} keys / ${r.daemonRssMB} MB (${r.daemonPeakRssMB} MB)`,
        {
          note:
            `${fmtInt(events)} events in ${r.seconds} s (${fmtInt(r.eventsPerSecond)}/s, ${r.daemonCpuUsPerEvent} µs daemon CPU/event); ` +
            `kernel: ${fmtInt(r.kernel.v6Networks)} IPv6 networks, ${fmtInt(r.kernel.v6Hosts)} hosts; ${fmtInt(r.redisBanIndex)} bans in Redis; ` +
            `${fmtInt(r.skippedAlreadyBanned ?? 0)} events skipped as already banned; RSS before ${r.daemonRssBeforeMB} MB`,
        },
      ),
    );
    return { data: { events, prefixes: PREFIXES, runs } as unknown as Record<string, unknown>, rows };
  },
};
