// Parse-only throughput on the throughput benchmark's stream:
// (a) asterisk-manager alone, over TCP from the synthetic AMI server (in a worker thread), counting `managerevent`s;
// (b) our AmiFrameReader on the same bytes in memory, alone and followed by normalise() (all the daemon does per
//     event before the store call);
// (c) AmiFrameReader on a raw TCP socket from the same server: what the daemon's reader would cost if it replaced
//     asterisk-manager's on the live connection.
import { connect } from 'node:net';
import { Worker } from 'node:worker_threads';
import AsteriskManager from 'asterisk-manager';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { AMI_SECRET, AMI_USER } from '../lib/ami-server.js';
import { buildAmiStream, type StreamShape } from '../lib/stream.js';
import { normaliseEvent } from '../lib/src-api.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { fmtInt, now, round, withTimeout } from '../lib/util.js';

const CHUNK = 64 * 1024; // what a TCP read hands node on loopback

export const parse: Benchmark = {
  name: 'parse',
  title: 'parse-only throughput (asterisk-manager vs AmiFrameReader)',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const shape: StreamShape = { events: ctx.opts.events, addresses: ctx.opts.addresses };
    const n = shape.events;

    ctx.log('asterisk-manager over TCP');
    const lib = await overTcp(ctx, shape, (port, done) => {
      const mgr = AsteriskManager(undefined, '127.0.0.1', AMI_USER, AMI_SECRET, true);
      let count = 0;
      let t0 = 0;
      mgr.on('managerevent', () => {
        if (count++ === 0) t0 = now();
        if (count === n) done(t0, now());
      });
      mgr.connect(port, '127.0.0.1', () => mgr.login());
      return () => mgr.disconnect();
    });

    ctx.log('AmiFrameReader over TCP');
    const readerTcp = await overTcp(ctx, shape, (port, done) => {
      const reader = new AmiFrameReader();
      let count = 0;
      let t0 = 0;
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(`Action: Login\r\nUsername: ${AMI_USER}\r\nSecret: ${AMI_SECRET}\r\nActionID: 1\r\n\r\n`);
      });
      sock.on('error', () => undefined);
      sock.on('data', (chunk: Buffer) => {
        for (const f of reader.push(chunk)) {
          if (f.banner || f.headers['event'] === undefined) continue;
          if (count++ === 0) t0 = now();
          if (count === n) done(t0, now());
        }
      });
      return () => sock.destroy();
    });

    ctx.log('AmiFrameReader in memory');
    const { chunks, bytes } = buildAmiStream(shape);
    const slices: Buffer[] = [];
    for (const c of chunks) for (let i = 0; i < c.length; i += CHUNK) slices.push(c.subarray(i, i + CHUNK));
    const inMemory = (withNormalise: boolean): number => {
      const reader = new AmiFrameReader();
      let count = 0;
      const t0 = now();
      const at = Date.now();
      for (const s of slices) {
        for (const f of reader.push(s)) {
          if (withNormalise) {
            if (normaliseEvent(f.headers, at)) count++;
          } else if (f.headers['event'] !== undefined) count++;
        }
      }
      const ms = now() - t0;
      if (count !== n) throw new Error(`frame reader saw ${count} events, expected ${n}`);
      return Math.round(n / (ms / 1000));
    };
    inMemory(false); // warm-up
    const readerMem = inMemory(false);
    const readerNorm = inMemory(true);

    const data = {
      events: n,
      bytes,
      asteriskManagerTcp: lib,
      frameReaderTcp: readerTcp,
      frameReaderMemory: readerMem,
      frameReaderNormaliseMemory: readerNorm,
    };
    return {
      data,
      rows: [
        measured('parse: asterisk-manager alone, TCP', `${fmtInt(lib)} events/s`, {
          note: 'counting managerevent; reportedly ~51k here',
        }),
        measured('parse: AmiFrameReader, TCP', `${fmtInt(readerTcp)} events/s`, { note: `×${round(readerTcp / lib, 1)} asterisk-manager` }),
        measured('parse: AmiFrameReader, in memory', `${fmtInt(readerMem)} events/s`),
        measured('parse: AmiFrameReader + normalise, in memory', `${fmtInt(readerNorm)} events/s`),
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
  const port = await withTimeout(new Promise<number>((resolve, reject) => {
    worker.on('message', (m: { type: string; port?: number }) => {
      if (m.type === 'listening') resolve(m.port!);
    });
    worker.on('error', reject);
  }), 60_000, 'the AMI worker to listen');
  let close = (): void => undefined;
  const rate = await withTimeout(new Promise<number>((resolve) => {
    close = client(port, (t0, t1) => resolve(Math.round((shape.events - 1) / ((t1 - t0) / 1000))));
  }), 120_000, 'the client to see every event');
  close();
  await stop();
  return rate;
}
