// ami-guard's own AMI client: one TCP session at a time to Asterisk's manager, logged in with the event mask it
// needs, kept alive with Ping, re-established with backoff. It replaced the asterisk-manager package, whose parser
// let one SIP REGISTER forge, swallow or loop on AMI messages (see docs/security.md) and topped out below the event
// rate of a flooded Asterisk.
//
// The socket is never paused: Asterisk drops a manager session that does not read for `writetimeout` (100 ms by
// default), so everything downstream must keep up or fold, never push back. Each read goes through the frame
// reader; replies to our actions (matched by random ActionIDs, which attacker text cannot guess) are kept here, and
// every other message goes to the sink, read by read.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import type { FrameSink } from '../events/intake.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { AmiFrameReader, type FrameView } from './frame-reader.js';
import { formatAction, header, headersOf, isReply, type Headers } from './message.js';
import { PORT_WATCH_INTERVAL_MS, watchPort } from './port-watch.js';

export interface AmiClientOptions {
  host: string;
  port: number;
  username: string;
  /** held privately; never logged, never part of an error or an emitted object */
  secret: string;
  /** where the messages go */
  sink: FrameSink;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** TCP connect, greeting and login must finish within this, or the attempt counts as failed */
  loginTimeoutMs?: number;
  /**
   * Sees every message read from Asterisk, in order, as the frame reader delimits it: each connection's greeting,
   * the replies to our own actions, events (`ami-guard record`). Never what we send. The view is valid only during
   * the call.
   */
  tap?: (frame: FrameView) => void;
  backoff?: Partial<BackoffOptions>;
  logger: Logger;
}

export interface AmiStats {
  connected: boolean;
  /** successful logins */
  connects: number;
  /** successful logins that ended a gap */
  reconnects: number;
  authFailures: number;
  pingTimeouts: number;
  /** the last closed gap (last message seen → next successful login); null before the first */
  lastGapMs: number | null;
  totalGapMs: number;
  /** bytes read from Asterisk */
  bytes: number;
}

export type DisconnectReason = 'closed' | 'ping-timeout' | 'stopped';

export interface DisconnectedInfo {
  reason: DisconnectReason;
  /** ms since the epoch when the last message arrived */
  gapStartedAt: number;
}

export interface ConnectedInfo {
  /** null for the first connection */
  gapMs: number | null;
}

export interface AuthFailedInfo {
  username: string;
  host: string;
  port: number;
  /** what Asterisk said, e.g. `Authentication failed` */
  message: string;
}

export interface AmiClientEvents {
  connected: [ConnectedInfo];
  disconnected: [DisconnectedInfo];
  reconnected: [number];
  'auth-failed': [AuthFailedInfo];
}

/** Only the classes ami-guard reads: security events, and system ones (FullyBooted, Shutdown) for the log. */
export const EVENT_MASK = 'security,system';

export const DEFAULT_PING_INTERVAL_MS = 10_000;
export const DEFAULT_PING_TIMEOUT_MS = 5_000;
export const DEFAULT_LOGIN_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 2_000;
/** how long an unclosed injection may wait before a Ping is sent to close it */
const BOUNDARY_PING_DELAY_MS = 20;

type Reason = DisconnectReason | 'login-timeout' | 'auth-failed' | 'protocol';

type Reply = (h: Headers) => void;

interface Session {
  readonly socket: Socket;
  readonly reader: AmiFrameReader;
  readonly replies: Map<string, Reply>;
  /** the greeting was read */
  greeted: boolean;
  loggedIn: boolean;
  /** some bytes arrived since the last Ping was sent */
  heard: boolean;
  lastError: string | null;
  closed: boolean;
}

export class AmiClient extends EventEmitter<AmiClientEvents> {
  readonly #secret: string;
  readonly #host: string;
  readonly #port: number;
  readonly #username: string;
  readonly #sink: FrameSink;
  readonly #tap: ((frame: FrameView) => void) | undefined;
  readonly #pingIntervalMs: number;
  readonly #pingTimeoutMs: number;
  readonly #loginTimeoutMs: number;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #stats: AmiStats = {
    connected: false,
    connects: 0,
    reconnects: 0,
    authFailures: 0,
    pingTimeouts: 0,
    lastGapMs: null,
    totalGapMs: 0,
    bytes: 0,
  };

  #running = false;
  #session: Session | null = null;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #stopPortWatch: (() => void) | undefined;
  #loginTimer: NodeJS.Timeout | undefined;
  #pingTimer: NodeJS.Timeout | undefined;
  #pingDeadline: NodeJS.Timeout | undefined;
  #boundaryTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last message read on any session */
  #lastMessageAt = 0;
  /** Date.now() of the same moment, for the disconnected event */
  #lastMessageWall = 0;
  /** while disconnected after a logged-in session: when its last message came (performance.now()) */
  #gapStartedMono: number | null = null;
  #authFailing = false;
  #failStreak = 0;

  constructor(options: AmiClientOptions) {
    super();
    const { host, port, username, secret, logger } = options;
    if (!host) throw new Error('AMI host is empty');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`AMI port must be 1..65535, got ${port}`);
    if (!username) throw new Error('AMI username is empty');
    if (/[\r\n]/.test(username)) throw new Error('AMI username holds a line break');
    if (/[\r\n]/.test(secret)) throw new Error('AMI secret holds a line break'); // says so without showing it
    this.#host = host;
    this.#port = port;
    this.#username = username;
    this.#secret = secret;
    this.#sink = options.sink;
    this.#tap = options.tap;
    this.#pingIntervalMs = positive('pingIntervalMs', options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS);
    this.#pingTimeoutMs = positive('pingTimeoutMs', options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS);
    this.#loginTimeoutMs = positive('loginTimeoutMs', options.loginTimeoutMs ?? DEFAULT_LOGIN_TIMEOUT_MS);
    this.#backoff = new Backoff(options.backoff);
    this.#log = logger.child({ component: 'ami', ami: `${host}:${port}`, user: username });
  }

  get stats(): Readonly<AmiStats> {
    return { ...this.#stats };
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#log.info('connecting to AMI');
    this.#connect();
  }

  /** Logs off if logged in and stops reconnecting; resolves once the socket has closed (or after a short deadline). */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    clearTimeout(this.#reconnectTimer);
    this.#stopPortWatch?.();
    this.#clearSessionTimers();
    const s = this.#session;
    if (!s) return;
    const closed = new Promise<void>((resolve) => (s.closed ? resolve() : s.socket.once('close', () => resolve())));
    // with an ActionID of ours: Asterisk's `Response: Goodbye` is then our reply, not a forged one in the stream
    if (s.loggedIn) this.#action(s, 'Logoff', [], () => undefined);
    s.socket.end();
    await withDeadline(closed, STOP_TIMEOUT_MS);
    s.socket.destroy();
    this.#sink.reset();
    if (s.loggedIn) {
      this.#stats.connected = false;
      this.#log.info('AMI connection closed');
      this.#emit('disconnected', { reason: 'stopped', gapStartedAt: Date.now() });
    }
    this.#session = null;
  }

  #connect(): void {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#stopPortWatch?.();
    this.#stopPortWatch = undefined;
    const socket = connect({ host: this.#host, port: this.#port });
    const s: Session = {
      socket,
      reader: new AmiFrameReader((f) => this.#frame(s, f)),
      replies: new Map(),
      greeted: false,
      loggedIn: false,
      heard: false,
      lastError: null,
      closed: false,
    };
    this.#session = s;
    this.#sink.reset();
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => this.#guard(() => this.#read(s, chunk)));
    socket.on('error', (err) => {
      s.lastError = describeError(err);
    });
    socket.on('close', () => {
      s.closed = true;
      this.#guard(() => this.#lost(s, 'closed'));
    });
    this.#loginTimer = setTimeout(() => this.#guard(() => this.#lost(s, 'login-timeout')), this.#loginTimeoutMs);
  }

  #read(s: Session, chunk: Buffer): void {
    if (s !== this.#session) return;
    s.heard = true;
    this.#stats.bytes += chunk.length;
    s.reader.push(chunk);
    if (s.loggedIn) {
      this.#sink.flush();
      if (this.#sink.awaitingBoundary) this.#scheduleBoundaryPing(s);
    }
  }

  #frame(s: Session, f: FrameView): void {
    if (s !== this.#session) return; // the rest of a read whose session was torn down by an earlier frame of it
    this.#lastMessageAt = performance.now();
    this.#lastMessageWall = Date.now();
    if (!s.greeted) {
      if (!f.banner) return this.#lost(s, 'protocol', 'the first line was not an AMI greeting');
      s.greeted = true;
      this.#tap?.(f);
      this.#login(s);
      return;
    }
    this.#tap?.(f);
    // A reply to one of our actions: its ActionID is ours and random. Anything else that looks like a reply was
    // written by someone else and goes to the sink with the events.
    if (isReply(f)) {
      const h = headersOf(f);
      const id = header(h, 'actionid');
      const reply = s.replies.get(id);
      if (reply) {
        s.replies.delete(id);
        if (s.loggedIn) this.#sink.boundary();
        reply(h);
        return;
      }
    }
    if (s.loggedIn) this.#sink.frame(f, Date.now());
  }

  #action(s: Session, action: string, fields: ReadonlyArray<readonly [string, string]>, reply: Reply): void {
    const id = randomBytes(12).toString('hex');
    s.replies.set(id, reply);
    this.#send(s, [['Action', action], ['ActionID', id], ...fields]);
  }

  #send(s: Session, fields: ReadonlyArray<readonly [string, string]>): void {
    if (!s.socket.destroyed) s.socket.write(formatAction(fields));
  }

  #login(s: Session): void {
    this.#action(
      s,
      'Login',
      [
        ['Username', this.#username],
        ['Secret', this.#secret],
        ['Events', EVENT_MASK],
      ],
      (h) =>
        this.#guard(() => {
          if (s !== this.#session) return;
          if (header(h, 'response').toLowerCase() === 'success') this.#loggedIn(s);
          else this.#authFailed(s, header(h, 'message'));
        }),
    );
  }

  #loggedIn(s: Session): void {
    clearTimeout(this.#loginTimer);
    s.loggedIn = true;
    this.#backoff.connected(performance.now());
    this.#failStreak = 0;
    const st = this.#stats;
    st.connected = true;
    st.connects++;
    if (this.#authFailing) {
      this.#authFailing = false;
      this.#log.info('AMI login accepted again');
    }
    let gapMs: number | null = null;
    if (this.#gapStartedMono !== null) {
      gapMs = Math.round(performance.now() - this.#gapStartedMono);
      this.#gapStartedMono = null;
      st.reconnects++;
      st.lastGapMs = gapMs;
      st.totalGapMs += gapMs;
      this.#log.info({ gapMs }, 'AMI reconnected; events Asterisk sent during the gap were not seen');
    } else {
      this.#log.info('AMI connected');
    }
    // Armed before the listeners run: one of them may call stop(), which must find the timer to clear.
    this.#pingTimer = setInterval(() => this.#guard(() => this.#ping(s)), this.#pingIntervalMs);
    this.#emit('connected', { gapMs });
    if (gapMs !== null) this.#emit('reconnected', gapMs);
  }

  #authFailed(s: Session, message: string): void {
    const info: AuthFailedInfo = {
      username: this.#username,
      host: this.#host,
      port: this.#port,
      message: printable(message) || 'login rejected',
    };
    this.#stats.authFailures++;
    const retryMs = this.#backoff.maxMs;
    if (!this.#authFailing) {
      this.#authFailing = true;
      this.#log.error(
        { message: info.message, retryMs },
        `AMI login rejected for user ${info.username} at ${info.host}:${info.port}: check ami.username and ami.secret against manager.conf; retrying every ${retryMs} ms`,
      );
    } else {
      this.#log.debug({ message: info.message }, 'AMI login still rejected');
    }
    this.#emit('auth-failed', info);
    this.#teardown(s, 'auth-failed', retryMs);
  }

  /** Any bytes read since the Ping went out prove the session alive: under a flood the Pong queues behind events. */
  #ping(s: Session): void {
    if (s !== this.#session || this.#pingDeadline) return;
    s.heard = false;
    this.#pingDeadline = setTimeout(
      () =>
        this.#guard(() => {
          this.#pingDeadline = undefined;
          if (s !== this.#session || s.heard) return;
          this.#stats.pingTimeouts++;
          this.#log.warn({ timeoutMs: this.#pingTimeoutMs }, 'AMI did not answer Ping; dropping the connection');
          this.#lost(s, 'ping-timeout');
        }),
      this.#pingTimeoutMs,
    );
    this.#action(s, 'Ping', [], () => {
      clearTimeout(this.#pingDeadline);
      this.#pingDeadline = undefined;
    });
  }

  /**
   * An injection's head is waiting for the next message of Asterisk's own to close it. Under attack one comes within
   * milliseconds; on a quiet link a Ping's reply does.
   */
  #scheduleBoundaryPing(s: Session): void {
    if (this.#boundaryTimer) return;
    this.#boundaryTimer = setTimeout(
      () =>
        this.#guard(() => {
          this.#boundaryTimer = undefined;
          if (s === this.#session && s.loggedIn && this.#sink.awaitingBoundary) this.#action(s, 'Ping', [], () => undefined);
        }),
      BOUNDARY_PING_DELAY_MS,
    );
  }

  /** The session ended without our asking; a stale session's end is ignored. */
  #lost(s: Session, reason: Exclude<Reason, 'stopped' | 'auth-failed'>, detail?: string): void {
    if (s !== this.#session || !this.#running) return;
    if (detail) s.lastError = detail;
    if (!s.loggedIn) {
      if (this.#failStreak++ === 0) this.#log.warn({ reason, error: s.lastError }, 'AMI connection attempt failed; retrying with backoff');
      else this.#log.debug({ reason, error: s.lastError, failures: this.#failStreak }, 'AMI connection attempt failed');
      this.#teardown(s, reason, this.#backoff.next(performance.now()));
      return;
    }
    this.#stats.connected = false;
    // the gap is measured from the last message seen, not from when the loss was noticed
    this.#gapStartedMono = this.#lastMessageAt || performance.now();
    const gapStartedAt = this.#lastMessageWall || Date.now();
    this.#log.warn({ reason, error: s.lastError }, 'AMI connection lost; reconnecting');
    this.#teardown(s, reason, this.#backoff.next(performance.now()));
    this.#emit('disconnected', { reason: reason === 'ping-timeout' ? 'ping-timeout' : 'closed', gapStartedAt });
  }

  #teardown(s: Session, reason: Reason, delayMs: number): void {
    if (this.#session === s) this.#session = null;
    this.#clearSessionTimers();
    s.replies.clear();
    s.socket.destroy();
    this.#sink.reset();
    if (!this.#running) return;
    this.#log.debug({ reason, delayMs }, 'next AMI connection attempt scheduled');
    this.#reconnectTimer = setTimeout(() => this.#guard(() => this.#connect()), delayMs);
    if (reason !== 'auth-failed' && delayMs > PORT_WATCH_INTERVAL_MS) {
      this.#stopPortWatch = watchPort(this.#host, this.#port, () =>
        this.#guard(() => {
          if (!this.#running || !this.#reconnectTimer) return;
          this.#log.debug('AMI port answers again; connecting now');
          this.#connect();
        }),
      );
    }
  }

  #clearSessionTimers(): void {
    clearTimeout(this.#loginTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pingDeadline);
    clearTimeout(this.#boundaryTimer);
    this.#loginTimer = this.#pingTimer = this.#pingDeadline = this.#boundaryTimer = undefined;
  }

  #emit<K extends keyof AmiClientEvents>(event: K, ...args: AmiClientEvents[K]): void {
    try {
      // TypeScript cannot relate a generic K to EventEmitter's conditional parameter type, hence the widening.
      (this.emit as (e: K, ...a: AmiClientEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log.error({ event, err: describeError(err) }, 'an AMI listener threw; continuing');
    }
  }

  /**
   * Everything that runs from a socket callback or a timer goes through here. A fault here is a bug; the session it
   * happened in can no longer be trusted, so it is dropped and re-established (the daemon's process-level handler
   * deals with anything that escapes this).
   */
  #guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err: describeError(err) }, 'internal error in the AMI client; reconnecting');
      const s = this.#session;
      if (s) this.#lost(s, 'protocol', describeError(err));
    }
  }
}

function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, 200);
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`${name} must be a positive number of ms, got ${value}`);
  return value;
}

async function withDeadline(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
