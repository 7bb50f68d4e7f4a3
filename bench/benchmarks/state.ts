// What survives a restart, and what it costs (issue 14): the embedded store's state file written and read back at
// 100k and 200k bans (with their history and 10 % of them trusted), the event loop's longest stall while it is
// written; the real daemon on the embedded store starting with N bans in its state file into an empty table, into
// the full table (a restart), and into the full table with the state file gone (every element taken in from the
// kernel); and RedisStore.restoreBans re-seeding an emptied Redis with N bans, then again (every ban already there).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { SyntheticAmi } from '../lib/ami-server.js';
import { daemonConfig, daemonEnv, startDaemon } from '../lib/daemon.js';
import { createBenchNetns } from '../lib/netns.js';
import { startRedis } from '../lib/redis.js';
import { memoryStore, redisRestorer } from '../lib/src-api.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { fmtInt, ipv4, now, round } from '../lib/util.js';
import { listSet } from './throughput.js';

const HOUR = 3_600_000;
/** 10.0.0.0 upwards: 200,000 distinct hosts */
const host = (i: number): string => ipv4((10 << 24) + i);

interface FileFigures {
  readonly bans: number;
  readonly fillMs: number;
  readonly writeMs: number;
  readonly bytes: number;
  readonly maxStallMs: number;
  readonly readMs: number;
}

async function stateFile(ctx: BenchContext, n: number): Promise<FileFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'agbench-state-'));
  ctx.cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  const store = memoryStore('bench-node', Math.max(n, 200_000));
  ctx.cleanups.add(() => store.close());
  const at = Date.now();
  let t0 = now();
  for (let i = 0; i < n; i++) {
    await store.ban(host(i), HOUR, 'failures', at);
    if (i % 10 === 0) await store.trust(host(i), at);
  }
  const fillMs = now() - t0;
  const writer = await store.persist(join(dir, 'state'));
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  t0 = now();
  await writer.flush();
  const writeMs = now() - t0;
  loop.disable();
  await writer.close();
  const bytes = statSync(join(dir, 'state', 'store.json')).size;

  const again = memoryStore('bench-node', Math.max(n, 200_000));
  ctx.cleanups.add(() => again.close());
  t0 = now();
  const reader = await again.persist(join(dir, 'state'));
  const readMs = now() - t0;
  await reader.close();
  return { bans: n, fillMs, writeMs, bytes, maxStallMs: loop.max / 1e6, readMs };
}

interface StartFigures {
  readonly ms: number;
  readonly spawnToLog: number;
  readonly removed: number;
  readonly elements: number;
}

export const state: Benchmark = {
  name: 'state',
  title: "what survives a restart: the embedded store's state file, daemon starts on it, re-seeding an emptied Redis",
  timeoutMs: 600_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { cleanups, opts, log } = ctx;
    const n = opts.reconcileBans;
    const files: FileFigures[] = [];
    for (const size of [n, 2 * n]) {
      log(`state file of ${fmtInt(size)} bans`);
      files.push(await stateFile(ctx, size));
    }

    // the daemon on the embedded store, with n bans in its state file
    const dir = mkdtempSync(join(tmpdir(), 'agbench-daemon-state-'));
    cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
    const stateDir = join(dir, 'state');
    log(`a state file of ${fmtInt(n)} bans for the daemon`);
    const seed = memoryStore('bench-node', Math.max(n, 200_000));
    cleanups.add(() => seed.close());
    const at = Date.now();
    for (let i = 0; i < n; i++) await seed.ban(host(i), 2 * HOUR, 'failures', at);
    await (await seed.persist(stateDir)).close();

    const ns = await createBenchNetns(cleanups);
    const ami = await SyntheticAmi.start();
    cleanups.add(() => ami.stop());
    const config = {
      ...(daemonConfig({ amiPort: ami.port, redisUrl: '', netns: ns.name }) as Record<string, unknown>),
      store: { stateDir },
    };
    const start = async (what: string): Promise<StartFigures> => {
      log(`daemon start on the embedded store (${what})`);
      const daemon = startDaemon({ config, env: await daemonEnv() });
      cleanups.add(async () => {
        await daemon.stop();
      });
      const { line, at: loggedAt } = await daemon.waitForLog((l) => l.msg === 'reconciled firewall with store', 180_000);
      await daemon.waitForLog((l) => l.msg === 'AMI connected', 30_000);
      await daemon.stop();
      return {
        ms: Number(line['ms']),
        spawnToLog: Math.round(loggedAt - daemon.spawnedAt),
        removed: Number(line['removed']),
        elements: (await listSet(ns, 'banned_v4')).length,
      };
    };
    const cold = await start('empty table');
    const warm = await start('restart into the full table');
    rmSync(join(stateDir, 'store.json'));
    const lost = await start('state file gone: every element taken in from the kernel');

    log(`re-seeding an emptied Redis with ${fmtInt(n)} bans`);
    const redis = await startRedis(cleanups);
    const restorer = redisRestorer(redis.server.url, 'bench-node');
    cleanups.add(() => restorer.close());
    const addresses = Array.from({ length: n }, (_, i) => host(i));
    const until = Date.now() + HOUR;
    let t0 = now();
    const first = await restorer.restore(addresses, until, Date.now());
    const reseedMs = now() - t0;
    t0 = now();
    const second = await restorer.restore(addresses, until, Date.now());
    const againMs = now() - t0;
    if (first['written'] !== n || second['covered'] !== n) throw new Error(`restoreBans: ${JSON.stringify({ first, second })}`);

    const data = { files, cold, warm, lost, reseed: { bans: n, ms: Math.round(reseedMs), againMs: Math.round(againMs), first, second } };
    const mib = (b: number): number => round(b / 2 ** 20, 1);
    return {
      data,
      rows: [
        ...files.map((f) =>
          measured(`state file, ${fmtInt(f.bans)} bans (+ history, 10 % trusted): write`, `${fmtInt(f.writeMs)} ms`, {
            note: `${mib(f.bytes)} MiB; longest event-loop stall while writing ${round(f.maxStallMs, 1)} ms; read back at start ${fmtInt(f.readMs)} ms`,
          }),
        ),
        measured(`embedded store start, ${fmtInt(n)} bans in the state file, empty table`, `${fmtInt(cold.ms)} ms`, {
          note: `daemon's own ms (kernel listing, taking in, reconciliation); spawn → logged ${fmtInt(cold.spawnToLog)} ms; ${fmtInt(cold.elements)} elements after`,
        }),
        measured('  restart into the full table', `${fmtInt(warm.ms)} ms`, {
          note: `spawn → logged ${fmtInt(warm.spawnToLog)} ms; removed ${warm.removed}; ${fmtInt(warm.elements)} elements after`,
        }),
        measured('  restart into the full table, state file gone', `${fmtInt(lost.ms)} ms`, {
          note: `every element taken in from the kernel; removed ${lost.removed}; ${fmtInt(lost.elements)} elements after`,
        }),
        measured(`re-seeding an emptied Redis with ${fmtInt(n)} bans (restoreBans)`, `${fmtInt(reseedMs)} ms`, {
          note: `again, every ban already there: ${fmtInt(againMs)} ms`,
        }),
      ],
    };
  },
};
