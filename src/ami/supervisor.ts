// Owns the life of the AMI connection around asterisk-manager, whose own reconnect cannot be trusted (keepConnected
// arms only if called while disconnected, then waits 10–60 s) and which has no heartbeat. Each attempt gets a fresh
// library instance because the library keeps hidden per-connection state (held actions, partial lines, the
// `authenticated` flag); a generation number makes late events from a torn-down instance harmless.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import AsteriskManager from 'asterisk-manager';
import type { Logger } from '../log.js';
import type { RawMessage } from '../events/types.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { PORT_WATCH_INTERVAL_MS, watchPort } from './port-watch.js';

export interface AmiSupervisorOptions {
  host: string;
  port: number;
  username: string;
  /** held privately; never logged, never part of an error or an emitted object */
  secret: string;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** TCP connect plus login must finish within this, or the attempt counts as failed */
  loginTimeoutMs?: number;
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
  /** the last closed gap (lost connection → next successful login); null before the first */
  lastGapMs: number | null;
  totalGapMs: number;
}

export type DisconnectReason = 'closed' | 'ping-timeout' | 'stopped';

export interface DisconnectedInfo {
  reason: DisconnectReason;
  /** ms since the epoch when events stopped arriving */
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

export interface AmiSupervisorEvents {
  message: [RawMessage];
  connected: [ConnectedInfo];
  disconnected: [DisconnectedInfo];
  reconnected: [number];
  'auth-failed': [AuthFailedInfo];
}

/** Only the classes ami-guard reads; the library's `Event: on` at login is ignored by Asterisk (it reads `Events`). */
export const EVENT_MASK = 'security,system';

export const DEFAULT_PING_INTERVAL_MS = 10_000;
export const DEFAULT_PING_TIMEOUT_MS = 5_000;
export const DEFAULT_LOGIN_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 2_000;

type Reason = DisconnectReason | 'login-timeout' | 'auth-failed';

interface Attempt {
  readonly gen: number;
  readonly mgr: AsteriskManager.Manager;
  readonly closed: Promise<void>;
  socketOpen: boolean;
  loggedIn: boolean;
  lastError: string | null;
}

export class AmiSupervisor extends EventEmitter<AmiSupervisorEvents> {
  readonly #secret: string;
  readonly #host: string;
  readonly #port: number;
  readonly #username: string;
  readonly #pingIntervalMs: number;
  readonly #pingTimeoutMs: number;
  readonly #loginTimeoutMs: number;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #stats: AmiStats = {
    connected: false, connects: 0, reconnects: 0, authFailures: 0, pingTimeouts: 0, lastGapMs: null, totalGapMs: 0,
  };

  #running = false;
  #gen = 0;
  #attempt: Attempt | null = null;
  #reconnectTimer: NodeJS.Timeout | undefined;
  /** during a backoff wait after a connection failure: cuts the wait short once the port answers */
  #stopPortWatch: (() => void) | undefined;
  #loginTimer: NodeJS.Timeout | undefined;
  #pingTimer: NodeJS.Timeout | undefined;
  /** when the current connection last delivered an event (performance.now()) */
  #lastEventAt = 0;
  #pingDeadline: NodeJS.Timeout | undefined;
  #gapStartedMono: number | null = null;
  /** set by the first rejected login of a streak, so the error is logged once and the recovery is logged */
  #authFailing = false;
  /** failed attempts since the last login: the first one is logged as a warning, the rest at debug */
  #failStreak = 0;

  constructor(options: AmiSupervisorOptions) {
    super();
    const { host, port, username, secret, logger } = options;
    if (!host) throw new Error('AMI host is empty');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`AMI port must be 1..65535, got ${port}`);
    if (!username) throw new Error('AMI username is empty');
    this.#host = host;
    this.#port = port;
    this.#username = username;
    this.#secret = secret;
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

  /** Logs off if logged in, stops reconnecting; resolves once the socket has closed (or after a short deadline). */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    clearTimeout(this.#reconnectTimer);
    this.#stopPortWatch?.();
    this.#clearSessionTimers();
    const att = this.#attempt;
    if (!att) return;
    this.#retire(att);
    if (att.loggedIn) att.mgr.action({ action: 'Logoff' });
    else if (att.socketOpen) att.mgr.disconnect();
    else att.mgr.on('connect', () => att.mgr.disconnect());
    await withDeadline(att.closed, STOP_TIMEOUT_MS);
    att.mgr.disconnect(); // in case Asterisk did not close after Goodbye
    if (att.loggedIn) {
      this.#stats.connected = false;
      this.#log.info('AMI connection closed');
      this.#emit('disconnected', { reason: 'stopped', gapStartedAt: Date.now() });
    }
  }

  #connect(): void {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#stopPortWatch?.();
    this.#stopPortWatch = undefined;
    const gen = ++this.#gen;
    const mgr = AsteriskManager(undefined, this.#host, this.#username, this.#secret, true);
    let markClosed!: () => void;
    const closed = new Promise<void>((resolve) => (markClosed = resolve));
    const att: Attempt = { gen, mgr, closed, socketOpen: false, loggedIn: false, lastError: null };
    this.#attempt = att;

    // These stay attached after a teardown (the old socket may still speak); the generation check makes them inert.
    // Never removeAllListeners(): it would also drop the library's own no-op 'error' listener, and a late socket
    // error on a listener-less emitter throws.
    mgr.on('managerevent', (event) => {
      if (att.gen !== this.#gen) return;
      this.#lastEventAt = performance.now();
      this.#emit('message', asRawMessage(event));
    });
    mgr.on('connect', () => {
      att.socketOpen = true;
    });
    mgr.on('error', (err) => {
      att.lastError = describeError(err);
    });
    mgr.on('close', () => {
      att.socketOpen = false;
      markClosed();
      this.#guard(() => this.#lost(att, 'closed'));
    });

    this.#loginTimer = setTimeout(() => this.#guard(() => this.#lost(att, 'login-timeout')), this.#loginTimeoutMs);
    try {
      mgr.connect(this.#port, this.#host, () => this.#guard(() => this.#login(att)));
    } catch (err) {
      att.lastError = describeError(err);
      this.#lost(att, 'closed');
    }
  }

  #login(att: Attempt): void {
    if (att.gen !== this.#gen) return;
    // The library's login() is the only way to set its internal `authenticated` flag; without it every later
    // action (Events, Ping, Logoff) would be held forever.
    att.mgr.login((reply) =>
      this.#guard(() => {
        if (att.gen !== this.#gen) return;
        if (reply) this.#authFailed(att, reply);
        else this.#loggedIn(att);
      }),
    );
  }

  #loggedIn(att: Attempt): void {
    clearTimeout(this.#loginTimer);
    att.loggedIn = true;
    this.#backoff.connected(performance.now());
    this.#failStreak = 0;
    const s = this.#stats;
    s.connected = true;
    s.connects++;

    att.mgr.action({ action: 'Events', eventmask: EVENT_MASK }, (err) =>
      this.#guard(() => {
        if (err && att.gen === this.#gen) {
          this.#log.warn({ message: text(err['message']) }, 'AMI refused the event mask; every class the account may read will arrive');
        }
      }),
    );

    if (this.#authFailing) {
      this.#authFailing = false;
      this.#log.info('AMI login accepted again');
    }
    let gapMs: number | null = null;
    if (this.#gapStartedMono !== null) {
      gapMs = Math.round(performance.now() - this.#gapStartedMono);
      this.#gapStartedMono = null;
      s.reconnects++;
      s.lastGapMs = gapMs;
      s.totalGapMs += gapMs;
      this.#log.info({ gapMs }, 'AMI reconnected; events were not seen during the gap');
    } else {
      this.#log.info('AMI connected');
    }
    // Armed before the listeners run: one of them may call stop(), which must find the timer to clear.
    this.#pingTimer = setInterval(() => this.#guard(() => this.#ping(att)), this.#pingIntervalMs);
    this.#emit('connected', { gapMs });
    if (gapMs !== null) this.#emit('reconnected', gapMs);
  }

  #authFailed(att: Attempt, reply: AsteriskManager.Message): void {
    const info: AuthFailedInfo = {
      username: this.#username,
      host: this.#host,
      port: this.#port,
      message: text(reply['message']) || 'login rejected',
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
    this.#teardown(att, 'auth-failed', retryMs);
  }

  #ping(att: Attempt): void {
    if (att.gen !== this.#gen || this.#pingDeadline) return; // the previous Ping is still within its timeout
    const sentAt = performance.now();
    this.#pingDeadline = setTimeout(
      () =>
        this.#guard(() => {
          this.#pingDeadline = undefined;
          if (att.gen !== this.#gen) return;
          // Under a flood the Pong queues behind megabytes of events; events still arriving prove the session is
          // alive, and dropping it would lose what Asterisk has buffered for us.
          if (this.#lastEventAt > sentAt) return;
          this.#stats.pingTimeouts++;
          this.#log.warn({ timeoutMs: this.#pingTimeoutMs }, 'AMI did not answer Ping; dropping the connection');
          this.#lost(att, 'ping-timeout');
        }),
      this.#pingTimeoutMs,
    );
    // Any reply counts: an answer of any kind proves the session is alive.
    att.mgr.action({ action: 'Ping' }, () => {
      if (att.gen !== this.#gen) return;
      clearTimeout(this.#pingDeadline);
      this.#pingDeadline = undefined;
    });
  }

  /** The attempt ended without our asking; a stale attempt's close is ignored. */
  #lost(att: Attempt, reason: Exclude<Reason, 'stopped' | 'auth-failed'>): void {
    if (att.gen !== this.#gen || !this.#running) return;
    if (!att.loggedIn) {
      if (this.#failStreak++ === 0) this.#log.warn({ reason, error: att.lastError }, 'AMI connection attempt failed; retrying with backoff');
      else this.#log.debug({ reason, error: att.lastError, failures: this.#failStreak }, 'AMI connection attempt failed');
      this.#teardown(att, reason, this.#backoff.next(performance.now()));
      return;
    }
    this.#stats.connected = false;
    this.#gapStartedMono = performance.now();
    const gapStartedAt = Date.now();
    this.#log.warn({ reason, error: att.lastError }, 'AMI connection lost; reconnecting');
    this.#teardown(att, reason, this.#backoff.next(performance.now()));
    this.#emit('disconnected', { reason: reason === 'ping-timeout' ? 'ping-timeout' : 'closed', gapStartedAt });
  }

  #teardown(att: Attempt, reason: Reason, delayMs: number): void {
    this.#retire(att);
    this.#clearSessionTimers();
    att.mgr.disconnect();
    if (!this.#running) return;
    this.#log.debug({ reason, delayMs }, 'next AMI connection attempt scheduled');
    this.#reconnectTimer = setTimeout(() => this.#guard(() => this.#connect()), delayMs);
    if (reason !== 'auth-failed' && delayMs > PORT_WATCH_INTERVAL_MS) {
      this.#stopPortWatch = watchPort(this.#host, this.#port, () =>
        this.#guard(() => {
          if (!this.#running || !this.#reconnectTimer) return;
          this.#log.debug('AMI port answers again; connecting now');
          this.#connect();
        }));
    }
  }

  /** From here on nothing this attempt's instance emits is acted upon. */
  #retire(att: Attempt): void {
    if (this.#attempt === att) this.#attempt = null;
    if (att.gen === this.#gen) this.#gen++;
  }

  #clearSessionTimers(): void {
    clearTimeout(this.#loginTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pingDeadline);
    this.#loginTimer = this.#pingTimer = this.#pingDeadline = undefined;
  }

  #emit<K extends keyof AmiSupervisorEvents>(event: K, ...args: AmiSupervisorEvents[K]): void {
    // A listener that throws must not unwind into asterisk-manager's process.nextTick and kill the daemon.
    try {
      // TypeScript cannot relate a generic K to EventEmitter's conditional parameter type, hence the widening.
      (this.emit as (e: K, ...a: AmiSupervisorEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log.error({ event, err: describeError(err) }, 'an AMI listener threw; continuing');
    }
  }

  /** Everything that runs from a library callback or a timer goes through here. */
  #guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err: describeError(err) }, 'internal error in the AMI supervisor; continuing');
    }
  }
}

/** The library folds `Variable:`/`ChanVariable:` into objects; RawMessage keeps them as `name=value` strings. */
function asRawMessage(event: AsteriskManager.Message): RawMessage {
  const v = event['variable'];
  const c = event['chanvariable'];
  if ((v === undefined || typeof v === 'string' || Array.isArray(v)) && (c === undefined || typeof c === 'string' || Array.isArray(c))) {
    return event as RawMessage;
  }
  const out: RawMessage = {};
  for (const [key, value] of Object.entries(event)) {
    out[key] = typeof value === 'string' || Array.isArray(value) ? value : Object.entries(value).map(([k, x]) => `${k}=${x}`);
  }
  return out;
}

function text(value: unknown): string {
  const s = Array.isArray(value) ? String(value[0] ?? '') : typeof value === 'string' ? value : '';
  return s.slice(0, 200);
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
