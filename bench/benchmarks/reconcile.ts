// Start-up reconciliation: B active bans written to Redis through the store's own API (RedisStore.ban, i.e. the Lua
// `ban` path plus the ban index, pipelined), an empty namespace (no nft table), then the real daemon starts and
// loads them. Figures: the daemon's own `ms` from its `reconciled firewall with store` line (store read → nft
// transaction committed), and spawn → that line as the bench reads it (node start-up, nft init and probe included).
// Then a restart into the full set, the common case after a crash or upgrade, where the daemon does not know what a
// previous run left in the sets: its writer lists them once, addresses only, while the daemon reads the store.
import { readdirSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Netns } from '../../test/support/netns.js';
import { createBenchNetns } from '../lib/netns.js';
import { banIndexSize, nftScripts, nftWriter, parseTargetText, redisStore } from '../lib/src-api.js';
import { SyntheticAmi } from '../lib/ami-server.js';
import { analyseProfile, type ProfileSummary } from '../lib/cpuprofile.js';
import { daemonConfig, daemonEnv, startDaemon } from '../lib/daemon.js';
import { startRedis } from '../lib/redis.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { attacker, fmtInt, now, round } from '../lib/util.js';
import { listSet } from './throughput.js';

const GOAL_MS = 1000;
const GOAL_FULL_MS = 1500;
const HOUR = 3_600_000;

export const reconcile: Benchmark = {
  name: 'reconcile',
  title: 'start-up reconciliation of 100k bans',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { cleanups, opts, log } = ctx;
    const n = opts.reconcileBans;
    const redis = await startRedis(cleanups);

    log(`writing ${fmtInt(n)} bans through RedisStore.ban`);
    const store = redisStore(redis.server.url, 'bench-seed');
    cleanups.add(() => store.close());
    const t0 = now();
    const WINDOW = 2000;
    for (let i = 0; i < n; i += WINDOW) {
      ctx.signal.throwIfAborted();
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(n, i + WINDOW); j++) {
        batch.push(store.ban(attacker(j), HOUR, 'bench', Date.now()));
      }
      await Promise.all(batch);
    }
    const writeMs = now() - t0;
    await store.close();
    const index = await banIndexSize(redis.client);
    if (index !== n) throw new Error(`ban index holds ${index}, expected ${n}`);

    const ns = await createBenchNetns(cleanups);
    const ami = await SyntheticAmi.start();
    cleanups.add(() => ami.stop());
    const config = daemonConfig({ amiPort: ami.port, redisUrl: redis.server.url, netns: ns.name });

    const start = async (
      what: string,
      profileDir?: string,
    ): Promise<{ ms: number; spawnToLog: number; bans: number; added: number; removed: number }> => {
      log(`daemon start (${what})`);
      const daemon = startDaemon({
        config,
        env: await daemonEnv(),
        nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      });
      cleanups.add(async () => {
        await daemon.stop();
      });
      const { line, at } = await daemon.waitForLog((l) => l.msg === 'reconciled firewall with store', 120_000);
      // fully started (its signal handlers installed, so SIGTERM stops it cleanly and a profile gets written)
      await daemon.waitForLog((l) => l.msg === 'AMI connected', 30_000);
      await daemon.stop();
      return {
        ms: Number(line['ms']),
        spawnToLog: Math.round(at - daemon.spawnedAt),
        bans: Number(line['bans']),
        added: Number(line['added']),
        removed: Number(line['removed']),
      };
    };

    const cold = await start('empty nft table');
    const elements = (await listSet(ns, 'banned_v4')).length;
    const warm = await start(`${fmtInt(n)} elements already in the set`);

    // the cold start again under --cpu-prof (table dropped first), for where the daemon's time goes
    await ns.nft('delete table inet ami_guard\n');
    const profileDir = mkdtempSync(join(tmpdir(), 'agbench-prof-'));
    const profiled = await start('empty nft table, under --cpu-prof', profileDir);
    const pf = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
    let profile: ProfileSummary | null = null;
    let profileFile: string | null = null;
    if (pf) {
      profile = analyseProfile(join(profileDir, pf), 12);
      profileFile = join(process.cwd(), 'bench/results', `reconcile-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
      copyFileSync(join(profileDir, pf), profileFile);
    }

    log('breakdown: store read, parsing, script, nft load');
    const parts = await breakdown(ctx, redis.server.url, n);

    const data = {
      bans: n,
      writeMs: Math.round(writeMs),
      cold,
      warm,
      elementsAfterCold: elements,
      breakdown: parts,
      profiled,
      profile,
      profileFile,
    };
    return {
      data,
      rows: [
        measured('start-up reconciliation, empty table', `${fmtInt(cold.ms)} ms`, {
          goal: `≤ ${fmtInt(GOAL_MS)} ms`,
          met: cold.ms <= GOAL_MS && elements === n,
          note:
            `daemon's own ms for ${fmtInt(cold.bans)} bans; ${fmtInt(elements)} elements in the set after; ` +
            `spawn → logged ${fmtInt(cold.spawnToLog)} ms`,
        }),
        measured('start-up reconciliation, restart into a full set (same bans)', `${fmtInt(warm.ms)} ms`, {
          goal: `≤ ${fmtInt(GOAL_FULL_MS)} ms`,
          met: warm.ms <= GOAL_FULL_MS && warm.removed === 0 && warm.added === 0,
          note: `spawn → logged ${fmtInt(warm.spawnToLog)} ms; added ${warm.added}, removed ${warm.removed}`,
        }),
        measured('  part: read the active bans from Redis (activeBans)', `${fmtInt(parts.readMs)} ms`),
        measured('  part: parseTarget + NftScript.replaceAll (daemon JS)', `${fmtInt(parts.parseMs + parts.scriptMs)} ms`, {
          note: `parse ${fmtInt(parts.parseMs)} ms, script ${fmtInt(parts.scriptMs)} ms (${round(parts.scriptBytes / 2 ** 20, 1)} MiB)`,
        }),
        measured('  part: that script through the persistent writer, empty set', `${fmtInt(parts.nftEmptyMs)} ms`),
        measured('  part: that script through the persistent writer, full set', `${fmtInt(parts.nftFullMs)} ms`),
        measured(
          `  part: addresses-only listing of ${fmtInt(n)} (restart only, beside the store read)`,
          `${fmtInt(parts.listStatelessMs)} ms`,
          {
            note: `the JSON listing reconciliation used before: ${fmtInt(parts.listJsonMs)} ms`,
          },
        ),
        ...(profile
          ? profile.byOwner.slice(0, 5).map((o) => measured(`  cold start CPU: ${o.owner}`, `${o.pct} %`, { note: `${fmtInt(o.ms)} ms` }))
          : []),
        measured('  writing the bans (RedisStore.ban, 2,000 in flight)', `${fmtInt(n / (writeMs / 1000))} bans/s`, {
          note: `${round(writeMs / 1000, 2)} s`,
        }),
      ],
    };
  },
};

export interface Breakdown {
  readMs: number;
  parseMs: number;
  scriptMs: number;
  scriptBytes: number;
  nftEmptyMs: number;
  nftFullMs: number;
  listStatelessMs: number;
  listJsonMs: number;
}

/**
 * The reconciliation's steps one by one, outside the daemon: the store read (RedisStore.activeBans), the parse of
 * every address, the daemon's own script (NftScript.replaceAll, which checks every element), the persistent writer
 * loading that script into an empty and into a full set in a scratch namespace, and listing the full set.
 */
async function breakdown(ctx: BenchContext, url: string, n: number): Promise<Breakdown> {
  const st = redisStore(url, 'bench-seed');
  ctx.cleanups.add(() => st.close());
  let t = now();
  const raw: Array<{ address: string; until: number }> = [];
  const started = Date.now();
  for await (const page of st.activeBans(started)) raw.push(...page);
  const readMs = now() - t;
  await st.close();
  if (raw.length !== n) throw new Error(`activeBans returned ${raw.length}, expected ${n}`);

  t = now();
  const bans = raw.map((b) => ({ target: parseTargetText(b.address), timeoutMs: b.until - started }));
  const parseMs = now() - t;
  const script = nftScripts();
  t = now();
  const text = script.replaceAll(bans);
  const scriptMs = now() - t;

  const ns2: Netns = await createBenchNetns(ctx.cleanups);
  const writer = nftWriter(ns2.name);
  ctx.cleanups.add(() => writer.close());
  await writer.apply(script.init());
  const timed = async (fn: () => Promise<unknown>): Promise<number> => {
    const t0 = now();
    await fn();
    return now() - t0;
  };
  const nftEmptyMs = await timed(() => writer.apply(text));
  const nftFullMs = await timed(() => writer.apply(text));
  const listStatelessMs = await timed(() => writer.list(['list', 'set', 'inet', 'ami_guard', 'banned_v4'], { stateless: true }));
  const listJsonMs = await timed(() => ns2.execOk('nft', ['-j', 'list', 'table', 'inet', 'ami_guard']));
  await writer.close();
  const r = (v: number): number => Math.round(v);
  return {
    readMs: r(readMs),
    parseMs: r(parseMs),
    scriptMs: r(scriptMs),
    scriptBytes: text.length,
    nftEmptyMs: r(nftEmptyMs),
    nftFullMs: r(nftFullMs),
    listStatelessMs: r(listStatelessMs),
    listJsonMs: r(listJsonMs),
  };
}
