// Intake-only throughput on the throughput benchmark's stream: the daemon's frame reader, event parser and injection
// tracker (everything done per event before the policy), over TCP from the synthetic AMI server (in a worker thread)
// and on the same bytes in memory, with and without the parser. asterisk-manager, which this replaced, read 38,501
// events/s over TCP on this machine (BENCHMARKS.md, 2026-11-21); it is no dependency any more.
import { Worker } from 'node:worker_threads';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { AMI_SECRET, AMI_USER } from '../lib/ami-server.js';
import { buildAmiStream, type StreamShape } from '../lib/stream.js';
import { amiClient, intake } from '../lib/src-api.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { fmtInt, now, withTimeout } from '../lib/util.js';

const CHUNK = 64 * 1024; // what a TCP read hands node on loopback
const ASTERISK_MANAGER_TCP = 38_501; // events/s, the figure of record before the replacement

export const parse: Benchmark = {
  name: 'parse',
  title: 'intake-only throughput (frame reader and event parser), TCP and in memory',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const shape: StreamShape = { events: ctx.opts.events, addresses: ctx.opts.addresses };
    const n = shape.events;

    ctx.log('AMI client and intake over TCP');
    const tcp = await overTcp(ctx, shape, (port, done) => {
      let count = 0;
      let t0 = 0;
      const client = amiClient(port, AMI_USER, AMI_SECRET, (events) => {
        if (count === 0 && events.length > 0) t0 = now();
        count += events.length;
        if (count >= n) done(t0, now());
      });
      return () => void client.stop();
    });

    ctx.log('intake in memory');
    const { chunks, bytes } = buildAmiStream(shape);
    const slices: Buffer[] = [];
    for (const c of chunks) for (let i = 0; i < c.length; i += CHUNK) slices.push(c.subarray(i, i + CHUNK));
    const framesOnly = (): number => {
      let count = 0;
      const reader = new AmiFrameReader(() => count++);
      const t0 = now();
      for (const s of slices) reader.push(s);
      const ms = now() - t0;
      if (count !== n) throw new Error(`frame reader saw ${count} frames, expected ${n}`);
      return Math.round(n / (ms / 1000));
    };
    const withParser = (): number => {
      let count = 0;
      const sink = intake((events) => (count += events.length));
      const t0 = now();
      for (const s of slices) sink.push(s);
      const ms = now() - t0;
      if (count !== n) throw new Error(`intake read ${count} events, expected ${n}`);
      return Math.round(n / (ms / 1000));
    };
    framesOnly(); // warm-up
    withParser();
    const frames = framesOnly();
    const parsed = withParser();

    const data = {
      events: n,
      bytes,
      intakeTcp: tcp,
      frameReaderMemory: frames,
      intakeMemory: parsed,
      asteriskManagerTcpOfRecord: ASTERISK_MANAGER_TCP,
    };
    return {
      data,
      rows: [
        measured('parse: AMI client + intake (reader, parser, injection tracker), TCP', `${fmtInt(tcp)} events/s`, {
          note: `asterisk-manager read ${fmtInt(ASTERISK_MANAGER_TCP)}/s here`,
        }),
        measured('parse: frame reader alone, in memory', `${fmtInt(frames)} events/s`),
        measured('parse: intake, in memory', `${fmtInt(parsed)} events/s`),
      ],
    };
  },
};

type Client = (port: number, done: (t0: number, t1: number) => void) => () => void;

/** Starts the server worker, runs the client until it has seen every event, returns events/s. */
async function overTcp(ctx: BenchContext, shape: StreamShape, client: Client): Promise<number> {
  const worker = new Worker(new URL('../lib/ami-worker.js', import.meta.url), { workerData: shape });
  const stop = async (): Promise<void> => {
    await worker.terminate();
  };
  ctx.cleanups.add(stop);
  const port = await withTimeout(
    new Promise<number>((resolve, reject) => {
      worker.on('message', (m: { type: string; port?: number }) => {
        if (m.type === 'listening') resolve(m.port!);
      });
      worker.on('error', reject);
    }),
    60_000,
    'the AMI worker to listen',
  );
  let close = (): void => undefined;
  const rate = await withTimeout(
    new Promise<number>((resolve) => {
      close = client(port, (t0, t1) => resolve(Math.round((shape.events - 1) / ((t1 - t0) / 1000))));
    }),
    120_000,
    'the client to see every event',
  );
  close();
  await stop();
  return rate;
}
