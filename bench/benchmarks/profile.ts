// The throughput run again, with the daemon under `node --cpu-prof`: where the daemon's CPU goes (by package and by
// function) while Redis's share is read from INFO commandstats and /proc. Profiling slows the daemon by a few per
// cent, so the throughput figure of record is the unprofiled one; the profile is kept in bench/results/ for
// chrome://inspect or speedscope.
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { fmtInt } from '../lib/util.js';
import { runThroughput } from './throughput.js';

export const profile: Benchmark = {
  name: 'profile',
  title: 'where the daemon spends its CPU (throughput run under --cpu-prof)',
  timeoutMs: 420_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const d = await runThroughput(ctx, true);
    const p = d.profile!;
    const rows = [
      measured('profiled throughput', `${fmtInt(d.eventsPerSecond)} events/s`, {
        note: `daemon busy ${fmtInt(p.busyMs)} ms of ${fmtInt(p.wallMs)} ms profiled; profile: ${d.profileFile ?? ''}`,
      }),
      ...p.byOwner.slice(0, 8).map((o) => measured(`  daemon CPU: ${o.owner}`, `${o.pct} %`, { note: `${fmtInt(o.ms)} ms` })),
      ...p.topFunctions.slice(0, 8).map((f) => measured(`  hot: ${f.fn} (${f.where || f.owner})`, `${f.pct} % self`)),
      measured('  Redis per EVALSHA (server time)', `${d.redis.usecPerEvent} µs`, {
        note: `redis-server ${d.cpu['redis']} cores, daemon ${d.cpu['daemon']} cores, nft ${d.cpu['nftChildren']} cores`,
      }),
    ];
    return { data: d as unknown as Record<string, unknown>, rows };
  },
};
