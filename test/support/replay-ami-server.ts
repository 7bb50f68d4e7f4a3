// A TCP server that speaks enough AMI to stand in for Asterisk in tests and the demo: it greets with the recording's
// banner, answers Login/Ping/Events/Logoff as Asterisk 22 does, and after a successful login plays the recorded
// messages byte for byte with their recorded timing (scaled by `speed`).
//
// Playback follows the recording's connections: the messages of conn 1 go to the first client that logs in; when
// they are done and another conn follows, the socket is closed (as Asterisk does after `Shutdown`) and the next
// client to log in gets conn 2. A client that goes away mid-connection leaves a cursor; the next login resumes there.
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { header, headersOf, type Headers } from '../../src/ami/message.js';
import { loadRecording, type RecordedMessage, type Recording } from '../../src/ami/recording.js';

export interface ReplayServerOptions {
  /** a path (.jsonl or .ami) or a loaded recording */
  recording: string | Recording;
  username: string;
  secret: string;
  /** 1 = recorded timing, 2 = twice as fast; 0 or Infinity = as fast as possible, order kept */
  speed?: number;
  host?: string;
  port?: number;
  /** play as soon as a client logs in; otherwise wait for play() */
  autoplay?: boolean;
}

export interface ReplayServerEvents {
  /** a client connected; `at` is performance.now() */
  connection: [{ id: number; at: number }];
  login: [{ id: number; ok: boolean; at: number }];
  /** every action a client sent, parsed (includes the Login secret: test use only) */
  action: [Headers, number];
  /** a client socket closed */
  close: [{ id: number; at: number }];
}

interface Client {
  readonly id: number;
  readonly socket: Socket;
  readonly reader: AmiFrameReader;
  loggedIn: boolean;
}

interface RecordedConnection {
  readonly banner: string;
  /** t_ms of the login reply in the capture: the origin of this connection's timeline */
  readonly startMs: number;
  readonly messages: readonly RecordedMessage[];
}

const DEFAULT_BANNER = 'Asterisk Call Manager/11.0.0';

export async function startReplayServer(options: ReplayServerOptions): Promise<ReplayServer> {
  const recording = typeof options.recording === 'string' ? await loadRecording(options.recording) : options.recording;
  const server = new ReplayServer(recording, options);
  await server.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return server;
}

export class ReplayServer extends EventEmitter<ReplayServerEvents> {
  /** clients accepted so far */
  connections = 0;
  /** successful logins so far */
  logins = 0;
  /** what went to clients from the recording or inject(): messages, of which events, and bytes */
  readonly sent = { messages: 0, events: 0, bytes: 0 };
  /** the first successful login */
  readonly loggedIn: Promise<void>;
  /** every recorded connection has been played to the end */
  readonly playDone: Promise<void>;

  private readonly server: Server;
  private readonly clients = new Set<Client>();
  private readonly conns: readonly RecordedConnection[];
  private readonly fast: boolean;
  private readonly speed: number;
  private readonly abort = new AbortController();
  private username: string;
  private secret: string;
  private autoplay: boolean;
  private pingResponses = true;
  private nextId = 1;
  private connIndex = 0;
  private position = 0;
  /** the client receiving playback; a newer login takes over */
  private player: Client | null = null;
  private resolveLoggedIn!: () => void;
  private resolvePlayDone!: () => void;

  constructor(recording: Recording, options: ReplayServerOptions) {
    super();
    const speed = options.speed ?? 1;
    if (!(speed >= 0)) throw new RangeError(`speed must be >= 0, got ${speed}`);
    this.speed = speed;
    this.fast = speed === 0 || speed === Infinity;
    this.username = options.username;
    this.secret = options.secret;
    this.autoplay = options.autoplay ?? true;
    this.conns = splitConnections(recording);
    this.loggedIn = new Promise((resolve) => (this.resolveLoggedIn = resolve));
    this.playDone = new Promise((resolve) => (this.resolvePlayDone = resolve));
    if (this.conns.length === 0) this.resolvePlayDone();
    this.server = createServer((socket) => this.accept(socket));
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('replay server is not listening');
    return address.port;
  }

  get host(): string {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('replay server is not listening');
    return address.address;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Starts playback to the logged-in client (or the next one to log in) when autoplay is off. */
  play(): void {
    this.autoplay = true;
    const client = [...this.clients].reverse().find((c) => c.loggedIn);
    if (client) this.startPlayback(client);
  }

  /** Destroys every client socket, as a network failure would. */
  drop(): void {
    for (const c of this.clients) c.socket.destroy();
  }

  /** Writes raw bytes to every logged-in client; returns how many got them. */
  inject(raw: string | Buffer): number {
    let n = 0;
    for (const c of this.clients) {
      if (!c.loggedIn || c.socket.destroyed) continue;
      this.send(c, raw);
      n++;
    }
    return n;
  }

  /** false: Ping actions get no reply at all, like a hung Asterisk. */
  setPingResponses(enabled: boolean): void {
    this.pingResponses = enabled;
  }

  setCredentials(username: string, secret: string): void {
    this.username = username;
    this.secret = secret;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.clients) c.socket.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    const client: Client = {
      id: this.nextId++,
      socket,
      reader: new AmiFrameReader((f) => {
        if (!f.banner) this.onAction(client, headersOf(f));
      }),
      loggedIn: false,
    };
    this.clients.add(client);
    this.connections++;
    socket.setNoDelay(true); // timed playback must not sit in Nagle's buffer
    socket.on('error', () => undefined); // resets from clients that vanish are expected
    socket.on('close', () => {
      this.clients.delete(client);
      if (this.player === client) this.player = null;
      this.emit('close', { id: client.id, at: performance.now() });
    });
    // Asterisk reads actions line by line and accepts a bare LF as a line end from clients
    socket.on('data', (chunk: Buffer) => client.reader.push(Buffer.from(chunk.toString('latin1').replace(/(?<!\r)\n/g, '\r\n'), 'latin1')));
    this.emit('connection', { id: client.id, at: performance.now() });
    const banner = this.conns[this.connIndex]?.banner ?? this.conns[0]?.banner ?? DEFAULT_BANNER;
    socket.write(`${banner}\r\n`);
  }

  private onAction(client: Client, h: Headers): void {
    this.emit('action', h, client.id);
    const action = header(h, 'action').toLowerCase();
    const id = header(h, 'actionid');
    if (action === '') return this.reply(client, id, 'Error', ['Message: Missing action in request']);
    if (action === 'login') return this.login(client, id, h);
    if (action === 'logoff') {
      this.reply(client, id, 'Goodbye', ['Message: Thanks for all the fish.']);
      client.socket.end();
      return;
    }
    if (!client.loggedIn) return this.reply(client, id, 'Error', ['Message: Permission denied']);
    if (action === 'ping') {
      if (!this.pingResponses) return;
      const now = Date.now();
      const stamp = `${Math.floor(now / 1000)}.${String((now % 1000) * 1000).padStart(6, '0')}`;
      return this.reply(client, id, 'Success', ['Ping: Pong', `Timestamp: ${stamp}`]);
    }
    if (action === 'events') {
      const off = /^(off|no|false|0|none)$/i.test(header(h, 'eventmask').trim());
      return this.reply(client, id, 'Success', [`Events: ${off ? 'Off' : 'On'}`]);
    }
    this.reply(client, id, 'Error', ['Message: Invalid/unknown command']);
  }

  private login(client: Client, id: string, h: Headers): void {
    if (client.loggedIn) return this.reply(client, id, 'Success', ['Message: Already authenticated']);
    // manager.c finds the user case-insensitively and compares the secret exactly.
    const ok = header(h, 'username').toLowerCase() === this.username.toLowerCase() && header(h, 'secret') === this.secret;
    if (!ok) {
      this.emit('login', { id: client.id, ok: false, at: performance.now() });
      this.reply(client, id, 'Error', ['Message: Authentication failed']);
      client.socket.end(); // Asterisk ends the session after a failed login
      return;
    }
    client.loggedIn = true;
    this.logins++;
    this.reply(client, id, 'Success', ['Message: Authentication accepted']);
    this.emit('login', { id: client.id, ok: true, at: performance.now() });
    this.resolveLoggedIn();
    if (this.autoplay) this.startPlayback(client);
  }

  private reply(client: Client, id: string, response: string, lines: string[]): void {
    const actionId = id ? `ActionID: ${id}\r\n` : '';
    client.socket.write(`Response: ${response}\r\n${actionId}${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
  }

  private startPlayback(client: Client): void {
    if (this.connIndex >= this.conns.length) return;
    this.player = client;
    this.playLoop(client).catch((err: unknown) => {
      if (!this.abort.signal.aborted) throw err;
    });
  }

  private async playLoop(client: Client): Promise<void> {
    const conn = this.conns[this.connIndex];
    if (!conn) return;
    const origin = this.position === 0 ? conn.startMs : (conn.messages[this.position]?.tMs ?? conn.startMs);
    const wallOrigin = performance.now();
    const current = (): boolean => this.player === client && !client.socket.destroyed && !this.abort.signal.aborted;
    while (this.position < conn.messages.length) {
      const m = conn.messages[this.position];
      if (!m || !current()) return;
      if (!this.fast) {
        const wait = wallOrigin + (m.tMs - origin) / this.speed - performance.now();
        if (wait > 0) {
          await sleep(wait, undefined, { signal: this.abort.signal });
          if (!current()) return;
        }
      }
      this.position++;
      if (!this.send(client, m.raw)) await drained(client.socket, this.abort.signal);
    }
    this.connIndex++;
    this.position = 0;
    this.player = null;
    if (this.connIndex < this.conns.length) client.socket.end();
    else this.resolvePlayDone();
  }

  /** false when the socket wants a drain before more is written. */
  private send(client: Client, raw: string | Buffer): boolean {
    const bytes = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
    this.sent.messages++;
    this.sent.bytes += bytes;
    if (/^event:/i.test(typeof raw === 'string' ? raw.slice(0, 6) : raw.toString('latin1', 0, 6))) this.sent.events++;
    return client.socket.write(raw);
  }
}

/** Groups the recording by connection, leaving out what belongs to the capture client: banners and its action replies. */
function splitConnections(recording: Recording): RecordedConnection[] {
  const byConn = new Map<number, { banner: string | null; startMs: number | null; messages: RecordedMessage[] }>();
  for (const r of recording.records) {
    let c = byConn.get(r.conn);
    if (!c) byConn.set(r.conn, (c = { banner: null, startMs: null, messages: [] }));
    if (r.banner) {
      c.banner ??= r.raw.replace(/\r?\n$/, '');
    } else if (/^response:/i.test(r.raw) && /\r\nActionID: /i.test(r.raw)) {
      // the capture client's own replies; a Response without an ActionID was written into an event by an attacker
      c.startMs ??= r.tMs;
    } else {
      c.messages.push(r);
    }
  }
  return [...byConn.values()].map((c) => ({
    banner: c.banner ?? recording.banner ?? DEFAULT_BANNER,
    startMs: c.startMs ?? c.messages[0]?.tMs ?? 0,
    messages: c.messages,
  }));
}

function drained(socket: Socket, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
    signal.addEventListener('abort', done);
  });
}
