// Community blocklists at scale: a plain list of N entries (100,000 by default) served over HTTP on loopback, pulled
// by the real daemon (node A, Redis) and written to its kernel set; then a second daemon (node B) on the same Redis
// starting into it (its start-up reconciliation reads the feed from Redis); then a pull that drops a tenth of the
// list. Figures from the daemon's own log lines (read times here): the pull (fetch, parse, pack, commit to Redis),
// enforcement (this node's view, the diff, the nft transaction), and the total from the pull's start to the entries
// in the kernel; the Redis bytes of the feed's record, and the daemon's memory.
import { SyntheticAmi } from '../lib/ami-server.js';
import { daemonConfig, daemonEnv, scrapeMetrics, startDaemon, type Daemon } from '../lib/daemon.js';
import { createBenchNetns } from '../lib/netns.js';
import { memory } from '../lib/proc.js';
import { startRedis } from '../lib/redis.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { fmtInt, round, withTimeout } from '../lib/util.js';
import { listSet } from './throughput.js';
import { startFeedServer } from '../../test/support/feed-server.js';

const GOAL_MS = 1000;
const N = 100_000;

/** N distinct hosts from 100.64.0.0 on (shared address space, RFC 6598) */
function host(i: number): string {
  const n = 0x64400000 + i;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

interface Timing {
  readonly pullMs: number;
  /** the daemon's own: from the pulled entries to the firewall's writes done, and the firewall's writes alone */
  readonly adoptMs: number;
  readonly firewallMs: number;
  readonly enforceMs: number;
  readonly totalMs: number;
  readonly added: number;
  readonly removed: number;
}

export const feeds: Benchmark = {
  name: 'feeds',
  title: 'blocklists: a 100k-entry list pulled and written to the kernel',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { cleanups, log } = ctx;
    const redis = await startRedis(cleanups);
    const server = await startFeedServer();
    cleanups.add(() => server.stop());
    const all = Array.from({ length: N }, (_, i) => host(i));
    const body = `# ${N} entries\n${all.join('\n')}\n`;
    server.setList('big', body);

    const node = async (
      id: string,
      interval: string,
    ): Promise<{ daemon: Daemon; ns: Awaited<ReturnType<typeof createBenchNetns>>; port: string | undefined }> => {
      const ns = await createBenchNetns(cleanups);
      const ami = await SyntheticAmi.start();
      cleanups.add(() => ami.stop());
      const config = daemonConfig({ amiPort: ami.port, redisUrl: redis.server.url, netns: ns.name }) as Record<string, unknown>;
      config['node'] = { id };
      config['blocklists'] = { lists: [{ name: 'big', url: server.listUrl('big'), interval }] };
      const env = await daemonEnv();
      const daemon = startDaemon({ config, env });
      cleanups.add(async () => {
        await daemon.stop();
      });
      return { daemon, ns, port: env['AMI_GUARD_HTTP_PORT'] };
    };

    /** the pull that ends in a `feed enforced` line with `entries`, after the `feed pulled` line it follows */
    const timing = async (d: Daemon, entries: number): Promise<Timing> => {
      const enforced = await d.waitForLog((l) => l.msg === 'feed enforced' && l['entries'] === entries && l['applied'] === true, 120_000);
      const pulled = [...d.logs].reverse().find((l) => l.msg === 'feed pulled' && l['entries'] === entries);
      if (!pulled) throw new Error('no feed pulled line before the enforcement');
      const pulledAt = pulled['__readAt'] as number;
      const pullMs = Number(pulled['ms']);
      return {
        pullMs,
        adoptMs: Number(enforced.line['ms']),
        firewallMs: Number(enforced.line['firewallMs']),
        enforceMs: Math.round(enforced.at - pulledAt),
        totalMs: Math.round(enforced.at - pulledAt + pullMs),
        added: Number(enforced.line['added']),
        removed: Number(enforced.line['removed']),
      };
    };

    log(`node A pulls the ${fmtInt(N)}-entry list (${round(body.length / 2 ** 20, 1)} MiB)`);
    const a = await node('bench-a', '1h');
    const rssBefore = memory(a.daemon.pid);
    const first = await timing(a.daemon, N);
    // the firewall's share: the nft add (the daemon's firewall JS, the nft run, queueing) as the apply histogram has it
    const metrics = await scrapeMetrics(a.port);
    const nftAddMs = Math.round((metrics?.get('ami_guard_nft_apply_seconds_sum{op="add"}') ?? NaN) * 1000);
    const heapUsed = metrics?.get('nodejs_heap_size_used_bytes');
    const inSet = (await listSet(a.ns, 'banned_v4')).length;
    if (inSet !== N) throw new Error(`node A's set holds ${inSet} elements, expected ${N}`);
    const rssAfter = memory(a.daemon.pid);
    const recordBytes = Number(await redis.client.call('MEMORY', 'USAGE', 'ami-guard:{feed:big}', 'SAMPLES', '0'));

    log('node B starts into the feed (read from Redis by its start-up reconciliation)');
    const b = await node('bench-b', '1h');
    const rec = await withTimeout(
      b.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store', 120_000),
      120_000,
      'node B reconciling',
    );
    const bSet = (await listSet(b.ns, 'banned_v4')).length;
    if (bSet !== N) throw new Error(`node B's set holds ${bSet} elements, expected ${N}`);

    log('a tenth of the list dropped; node A pulls again');
    await Promise.all([a.daemon.stop(), b.daemon.stop()]);
    const kept = all.filter((_, i) => i % 10 !== 0);
    server.setList('big', `${kept.join('\n')}\n`);
    // the next pull is due (the lock A left lasts its interval, an hour): a restarted node pulls at once, and
    // enforces the diff against what the record held
    await redis.client.del('ami-guard:{feed:big}:lock');
    const a2 = await node('bench-a2', '1h');
    const second = await timing(a2.daemon, kept.length);

    const data = {
      entries: N,
      listBytes: body.length,
      first,
      nftAddMs,
      inSet,
      recordBytes,
      bytesPerEntry: round(recordBytes / N, 1),
      heapUsed,
      rss: { before: rssBefore?.rss ?? null, after: rssAfter?.rss ?? null, hwm: rssAfter?.hwm ?? null },
      nodeB: { reconcileMs: Number(rec.line['ms']), bans: Number(rec.line['bans']), inSet: bSet },
      second,
    };
    const mb = (v: number | undefined): string => (v === undefined ? '?' : `${fmtInt(v / 2 ** 20)} MB`);
    return {
      data,
      rows: [
        measured(`list of ${fmtInt(N)} → kernel set: pull start → all in the set`, `${fmtInt(first.totalMs)} ms`, {
          goal: `≈ ${fmtInt(GOAL_MS)} ms`,
          met: first.totalMs <= 1.5 * GOAL_MS,
          note: `pull (HTTP, parse, pack, Redis) ${fmtInt(first.pullMs)} ms + enforce ${fmtInt(first.enforceMs)} ms; ${fmtInt(inSet)} elements`,
        }),
        measured(
          "  enforce: view and diff / the firewall's add (its JS, the nft run)",
          `${fmtInt(first.adoptMs - first.firewallMs)} / ${fmtInt(first.firewallMs)} ms`,
          {
            note: `the daemon's own figures (feed enforced: ms, firewallMs); the apply histogram says ${fmtInt(nftAddMs)} ms for the add`,
          },
        ),
        measured('  a pull dropping a tenth: pull start → all gone', `${fmtInt(second.totalMs)} ms`, {
          note: `${fmtInt(second.removed)} removed; pull ${fmtInt(second.pullMs)} ms + enforce ${fmtInt(second.enforceMs)} ms`,
        }),
        measured('  node B starting into the feed (its reconciliation)', `${fmtInt(data.nodeB.reconcileMs)} ms`, {
          note: `${fmtInt(data.nodeB.bans)} elements written from the feed's record in Redis`,
        }),
        measured('  Redis bytes of the feed (one record)', `${fmtInt(recordBytes)} B`, {
          note: `${data.bytesPerEntry} B per entry (MEMORY USAGE)`,
        }),
        measured('  daemon RSS before → after the list', `${mb(rssBefore?.rss)} → ${mb(rssAfter?.rss)}`, {
          note: `peak ${mb(rssAfter?.hwm)}; V8 heap in use ${mb(heapUsed)} (not collected yet)`,
        }),
      ],
    };
  },
};
