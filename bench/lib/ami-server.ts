// A synthetic Asterisk for benchmarks: greets, answers Login/Events/Ping/Logoff as Asterisk 22 does (the subset the
// replay server of the tests speaks), and writes whatever the benchmark hands it to the logged-in client: single
// events stamped at the moment of the write, or a blast of pre-built buffers written with backpressure.
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { header, headersOf, type Headers } from '../../src/ami/message.js';
import { now } from './util.js';

export const AMI_USER = 'ami-guard';
export const AMI_SECRET = 'bench-secret-5e1d';
const BANNER = 'Asterisk Call Manager/11.0.0';

interface Client {
  readonly socket: Socket;
  readonly reader: AmiFrameReader;
  loggedIn: boolean;
}

export interface BlastResult {
  /** performance.now() of the first write */
  readonly startedAt: number;
  /** performance.now() once the last chunk was accepted by the socket (written or buffered by the kernel) */
  readonly writtenAt: number;
  readonly bytes: number;
}

export class SyntheticAmi extends EventEmitter {
  private readonly server: Server;
  private client: Client | null = null;
  /** resolves when a client has logged in (its Login carries the event mask) */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  /** bytes handed to the socket so far by blast() */
  blastBytes = 0;
  pings = 0;

  constructor() {
    super();
    this.ready = new Promise((r) => (this.resolveReady = r));
    this.server = createServer((s) => this.accept(s));
  }

  static async start(): Promise<SyntheticAmi> {
    const s = new SyntheticAmi();
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(0, '127.0.0.1', () => resolve());
    });
    return s;
  }

  get port(): number {
    const a = this.server.address();
    if (a === null || typeof a === 'string') throw new Error('not listening');
    return a.port;
  }

  /** Writes bytes to the logged-in client at once; returns performance.now() taken just before the write. */
  write(bytes: Buffer | string): number {
    const c = this.client;
    if (!c || !c.loggedIn || c.socket.destroyed) throw new Error('no logged-in AMI client');
    const t = now();
    c.socket.write(bytes);
    return t;
  }

  /** Writes the chunks in order, waiting for the socket to drain whenever it asks to. */
  async blast(chunks: readonly Buffer[], signal?: AbortSignal): Promise<BlastResult> {
    const c = this.client;
    if (!c || !c.loggedIn) throw new Error('no logged-in AMI client');
    const startedAt = now();
    let bytes = 0;
    for (const chunk of chunks) {
      signal?.throwIfAborted();
      if (c.socket.destroyed) throw new Error('AMI client went away during the blast');
      bytes += chunk.length;
      this.blastBytes = bytes;
      if (!c.socket.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            c.socket.off('drain', done);
            c.socket.off('close', done);
            resolve();
          };
          c.socket.on('drain', done);
          c.socket.on('close', done);
        });
      }
    }
    return { startedAt, writtenAt: now(), bytes };
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.client?.socket.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    const client: Client = {
      socket,
      reader: new AmiFrameReader((f) => {
        if (!f.banner) this.onAction(client, headersOf(f));
      }),
      loggedIn: false,
    };
    this.client?.socket.destroy(); // one client at a time: the newest wins
    this.client = client;
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.client === client) this.client = null;
    });
    socket.on('data', (chunk: Buffer) => client.reader.push(chunk));
    socket.write(`${BANNER}\r\n`);
  }

  private onAction(c: Client, h: Headers): void {
    const action = header(h, 'action').toLowerCase();
    const id = header(h, 'actionid');
    const reply = (response: string, lines: string[]): void => {
      const actionId = id ? `ActionID: ${id}\r\n` : '';
      c.socket.write(`Response: ${response}\r\n${actionId}${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
    };
    switch (action) {
      case 'login': {
        const ok = header(h, 'username').toLowerCase() === AMI_USER && header(h, 'secret') === AMI_SECRET;
        if (!ok) {
          reply('Error', ['Message: Authentication failed']);
          c.socket.end();
          return;
        }
        c.loggedIn = true;
        reply('Success', ['Message: Authentication accepted']);
        this.resolveReady();
        return;
      }
      case 'events':
        reply('Success', ['Events: On']);
        return;
      case 'ping': {
        this.pings++;
        const t = Date.now();
        reply('Success', ['Ping: Pong', `Timestamp: ${Math.floor(t / 1000)}.${String((t % 1000) * 1000).padStart(6, '0')}`]);
        return;
      }
      case 'logoff':
        reply('Goodbye', ['Message: Thanks for all the fish.']);
        c.socket.end();
        return;
      default:
        reply('Error', ['Message: Invalid/unknown command']);
    }
  }
}
