// The throughput benchmark's stream through bench/prototypes/lean-pipeline.ts (AmiFrameReader, batched store, async
// ban log) in this process, against a real Redis and real nft (NftFirewall) in a throwaway namespace, with the AMI
// server in a worker thread. Same stream, same verification as the daemon's run: every ban in the kernel set and in
// the ban index. Backs the proposals with a measured number; it is not the daemon.
import { createWriteStream } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { banIndexSize, defaultPolicy, nftFirewall, redisStore } from '../lib/src-api.js';
import { AMI_SECRET, AMI_USER } from '../lib/ami-server.js';
import { createBenchNetns } from '../lib/netns.js';
import { cpuTimes, systemCpu } from '../lib/proc.js';
import { startRedis } from '../lib/redis.js';
import { measured, type BenchContext, type BenchResult, type Benchmark, type Row } from '../lib/types.js';
import { fmtInt, now, poll, round, withTimeout } from '../lib/util.js';
import { LeanPipeline, BATCH } from '../prototypes/lean-pipeline.js';
import { expectedBanCount, listSet } from './throughput.js';

export const prototype: Benchmark = {
  name: 'prototype',
  title: 'PROTOTYPE lean pipeline (frame reader, batched Lua, async log, IPv4 fast path), same stream',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const daemon = ctx.earlier['throughput']?.data as { eventsPerSecond?: number } | undefined;
    const lean = await runLean(ctx, false);
    const fast = await runLean(ctx, true);
    const row = (title: string, d: LeanData): Row => measured(title, `${fmtInt(d.eventsPerSecond)} events/s`, {
      note: `${fmtInt(d.verify.nftBannedV4)}/${fmtInt(d.verify.expected)} bans in the set, ${fmtInt(d.verify.redisBanIndex)} in Redis; ` +
        `main thread busy ${round(d.eventLoopUtilization * 100, 0)} %, process ${d.cpu.processCpuUsPerEvent} µs CPU/event (incl. the AMI server thread), redis ${d.cpu.redisCpuUsPerEvent} µs/event` +
        (daemon?.eventsPerSecond ? `; ×${round(d.eventsPerSecond / daemon.eventsPerSecond, 1)} the daemon` : ''),
    });
    return {
      data: { lean, fast },
      rows: [
        row('PROTOTYPE lean pipeline (changes 1–3)', lean),
        row('PROTOTYPE lean + IPv4 fast path (changes 1–4)', fast),
      ],
    };
  },
};

type LeanData = Awaited<ReturnType<typeof runLean>>;

/** One run of the lean pipeline on fresh Redis and namespace; `fastPath` adds change 4. */
async function runLean(ctx: BenchContext, fastPath: boolean) {
  const { cleanups, opts, log } = ctx;
  const shape = { events: opts.events, addresses: opts.addresses };
  const redis = await startRedis(cleanups);
  const ns = await createBenchNetns(cleanups);
  const firewall = nftFirewall(ns.name);
  await firewall.init();
  cleanups.add(() => firewall.shutdown().catch(() => undefined));
  const store = redisStore(redis.server.url, 'bench-node');
  cleanups.add(() => store.close());
  const policy = defaultPolicy();
  const logFile = join(tmpdir(), `agbench-lean-${process.pid}.log`);
  const logger = pino({ level: 'info', base: { name: 'ami-guard' }, timestamp: pino.stdTimeFunctions.isoTime }, createWriteStream(logFile));

  const worker = new Worker(new URL('../lib/ami-worker.js', import.meta.url), { workerData: shape });
  cleanups.add(async () => {
    await worker.terminate();
  });
  const port = await withTimeout(new Promise<number>((resolve, reject) => {
    worker.on('message', (m: { type: string; port?: number }) => {
      if (m.type === 'listening') resolve(m.port!);
    });
    worker.on('error', reject);
  }), 60_000, 'the AMI worker to listen');

  let sock: ReturnType<typeof connect> | undefined;
  const pipeline = new LeanPipeline({
    store, policy, firewall, logger, nodeId: 'bench-node',
    pause: () => sock?.pause(),
    resume: () => sock?.resume(),
    fast: fastPath,
  });
  const sys0 = systemCpu();
  const r0 = cpuTimes(redis.server.pid)!;
  const me0 = cpuTimes(process.pid)!;
  let t0 = 0;
  let tSeen = 0;
  let elu0 = performance.eventLoopUtilization();
  log(`streaming through the lean pipeline${fastPath ? ' with the IPv4 fast path' : ''}`);
  await new Promise<void>((resolve, reject) => {
    sock = connect(port, '127.0.0.1', () => {
      sock!.write(`Action: Login\r\nUsername: ${AMI_USER}\r\nSecret: ${AMI_SECRET}\r\nActionID: 1\r\n\r\n`);
    });
    sock.on('error', reject);
    sock.on('data', (chunk: Buffer) => {
      if (t0 === 0) {
        t0 = now();
        elu0 = performance.eventLoopUtilization();
      }
      pipeline.push(chunk);
      if (pipeline.seen >= shape.events) {
        tSeen = now();
        resolve();
      }
    });
  });
  await poll('the pipeline to go idle', async () => {
    await pipeline.idle();
    return true;
  }, 120_000, 0, ctx.signal);
  const seconds = (now() - t0) / 1000;
  const elu = performance.eventLoopUtilization(elu0);
  const sys1 = systemCpu();
  const r1 = cpuTimes(redis.server.pid)!;
  const me1 = cpuTimes(process.pid)!;
  sock?.destroy();
  logger.flush();

  const v4 = (await listSet(ns, 'banned_v4')).length;
  const index = await banIndexSize(redis.client);
  const expected = expectedBanCount(shape.events, shape.addresses);
  const eps = Math.round(shape.events / seconds);
  const selfMs = me1.self - me0.self;
  const data = {
    events: shape.events,
    batch: BATCH,
    seconds: round(seconds, 2),
    /** until the last event was parsed; the rest is waiting for Redis replies and nft */
    secondsToLastEvent: round((tSeen - t0) / 1000, 2),
    /** share of the run the main thread was busy (1 = saturated) */
    eventLoopUtilization: round(elu.utilization, 2),
    eventsPerSecond: eps,
    bans: pipeline.bans,
    fastPathEvents: pipeline.fastHits,
    redisCalls: pipeline.redisCalls,
    verify: { nftBannedV4: v4, redisBanIndex: index, expected },
    cpu: {
      // process-wide: the pipeline's main thread plus the AMI server's worker thread
      processCores: round(selfMs / (seconds * 1000), 2),
      processCpuUsPerEvent: round((selfMs * 1000) / shape.events, 2),
      nftChildrenCores: round((me1.children - me0.children) / (seconds * 1000), 2),
      redisCores: round((r1.self - r0.self) / (seconds * 1000), 2),
      redisCpuUsPerEvent: round(((r1.self - r0.self) * 1000) / shape.events, 2),
      /** the whole machine, everything included: more than this run's own share means other load */
      machineBusyCores: round((sys1.busy - sys0.busy) / (seconds * 1000), 2),
    },
  };
  return data;
}
