// Fleet propagation: two real daemons (node A, node B) share one Redis, each with its own synthetic AMI server and
// its own namespace. A's AMI server writes the threshold-crossing event of one address (maxretry-1 failures sent
// first, seen counted in Redis); the clock stops when `nft monitor` in B's namespace reports the element. A's own
// set is watched too, so the table shows A's local latency beside B's. One address at a time, each address new.
//
// Where the daemon has no fleet channel (a version before it was built), B never sees A's bans: the first one is
// waited for 10 s and the row then says "not measured: fleet propagation not built".
import { SyntheticAmi } from '../lib/ami-server.js';
import { daemonConfig, daemonEnv, startDaemon, type Daemon } from '../lib/daemon.js';
import { createBenchNetns } from '../lib/netns.js';
import { NftMonitor } from '../lib/nft-monitor.js';
import { startRedis } from '../lib/redis.js';
import { amiTemplate, nextSeq, render } from '../lib/stream.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { attacker, poll, roundSummary, sleep, summarise, withTimeout } from '../lib/util.js';
import { countedFailures } from '../lib/src-api.js';

const MAXRETRY = 5;
const GOAL_P99_MS = 20;
const NOT_BUILT = 'not measured: fleet propagation not built';

export const fleet: Benchmark = {
  name: 'fleet',
  title: "fleet propagation (ban on node A → element in node B's set)",
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { cleanups, opts, log, signal } = ctx;
    const redis = await startRedis(cleanups);
    const node = async (name: string): Promise<{ ami: SyntheticAmi; daemon: Daemon; mon: NftMonitor }> => {
      const ns = await createBenchNetns(cleanups);
      const ami = await SyntheticAmi.start();
      cleanups.add(() => ami.stop());
      const config = daemonConfig({ amiPort: ami.port, redisUrl: redis.server.url, netns: ns.name }) as Record<
        string,
        Record<string, unknown>
      >;
      config['node'] = { id: name };
      const daemon = startDaemon({ config, env: await daemonEnv() });
      cleanups.add(async () => {
        await daemon.stop();
      });
      await daemon.waitForLog((l) => l.msg === 'reconciled firewall with store', 30_000);
      await withTimeout(ami.ready, 30_000, `node ${name} logging in to its AMI`);
      const mon = await NftMonitor.start(ns);
      cleanups.add(() => mon.stop());
      return { ami, daemon, mon };
    };
    const a = await node('bench-a');
    const b = await node('bench-b');
    await sleep(500); // B's channel reader is running once it has started; give its first XREAD a moment

    const tpl = amiTemplate();
    const toB: number[] = [];
    const toA: number[] = [];
    let missed = 0;
    const n = opts.fleetBans;
    log(`timing ${n} bans on A, seen in B's set`);
    for (let i = 0; i < n; i++) {
      signal.throwIfAborted();
      const address = attacker(i);
      let first = '';
      for (let k = 0; k < MAXRETRY - 1; k++) first += render(tpl, address, nextSeq());
      const event = render(tpl, address, nextSeq());
      a.ami.write(first);
      await poll(
        'failures counted',
        async () => ((await countedFailures(redis.client, address)) >= MAXRETRY - 1 ? true : undefined),
        2000,
        0,
        signal,
      ).catch(() => sleep(50));
      const seenA = a.mon.waitFor(address, 5000);
      const seenB = b.mon.waitFor(address, i === 0 ? 10_000 : 5000);
      const t0 = a.ami.write(event);
      const [ta, tb] = await Promise.all([seenA, seenB]);
      if (tb === null) {
        if (i === 0) {
          return {
            data: { status: NOT_BUILT, firstBanOnA: ta === null ? null : ta - t0 },
            rows: [
              {
                figure: 'fleet propagation A → B',
                value: 'not measured',
                status: 'not-measured',
                note: `${NOT_BUILT} (no ban of A reached B within 10 s)`,
              },
            ],
          };
        }
        missed++;
        continue;
      }
      toB.push(tb - t0);
      if (ta !== null) toA.push(ta - t0);
    }
    const sb = roundSummary(summarise(toB));
    const sa = roundSummary(summarise(toA));
    return {
      data: { bans: n, missed, toBMs: sb, toAMs: sa },
      rows: [
        measured('fleet propagation A → B p50 / p99', `${sb.p50} / ${sb.p99} ms`, {
          goal: `p99 ≤ ${GOAL_P99_MS} ms`,
          met: sb.p99 <= GOAL_P99_MS,
          note: `AMI write on A → element in B's set; ${toB.length} bans${missed ? `, ${missed} not seen within 5 s` : ''}; max ${sb.max} ms`,
        }),
        measured("  same bans in A's own set p50 / p99", `${sa.p50} / ${sa.p99} ms`),
      ],
    };
  },
};
