// The daemon's end of the control socket (see protocol.ts). The socket is created mode 0600 (under a umask, so it is
// never reachable by others even for an instant) in a directory created 0700 if missing: only root and the daemon's
// own user get in, as with fail2ban's socket. Each connection is bounded: one request line of at most
// MAX_REQUEST_BYTES within REQUEST_TIMEOUT_MS, a few connections at once; anything else is answered with an error and
// closed, and never reaches the daemon's parts.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import { MAX_REQUEST_BYTES, RequestError, parseRequest, type ControlAnswer, type ControlRequest } from './protocol.js';

/** What the daemon does for each request (daemon-verbs.ts). */
export interface ControlHandler {
  /** Answers one request; a listing streams through `out.page`. Throws RequestError to refuse it. */
  handle(req: ControlRequest, out: PageWriter): Promise<unknown>;
}

export interface PageWriter {
  /** writes one page of a listing, waiting while the client reads slowly */
  page(items: readonly unknown[]): Promise<void>;
  /** the client went away: stop producing */
  readonly aborted: boolean;
}

export interface ControlServerOptions {
  readonly path: string;
  readonly handler: ControlHandler;
  readonly logger: Logger;
  /** connections served at once (default 8); more are answered "busy" */
  readonly maxConnections?: number;
  /** how long a client may take to send its request line (default 5,000 ms) */
  readonly requestTimeoutMs?: number;
}

const REFUSAL_LOG_INTERVAL_MS = 5_000;

/** Another daemon answers on the socket: two daemons on one host would fight over one nft table. */
export class ControlSocketInUse extends Error {}

export class ControlServer {
  private server: Server | undefined;
  private readonly conns = new Set<Socket>();
  private inode: number | undefined;
  private lastRefusalLog = 0;
  private readonly log: Logger;

  constructor(private readonly o: ControlServerOptions) {
    this.log = o.logger.child({ component: 'control' });
  }

  get path(): string {
    return this.o.path;
  }

  /** Binds the socket; fails at once (the daemon does not start) when another daemon holds it or the path is taken. */
  async listen(): Promise<void> {
    const path = this.o.path;
    // its own directory only (/run/ami-guard): a recursive mkdir can spin for ever where nothing may be made (/proc)
    await mkdir(dirname(path), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const existing = await lstat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (existing) {
      if (!existing.isSocket())
        throw new Error(`control socket ${path}: the path exists and is not a socket; remove it or set control.socket`);
      if (await answers(path)) {
        throw new ControlSocketInUse(
          `control socket ${path}: another ami-guard daemon is listening there; stop it, or give this one another control.socket`,
        );
      }
      await unlink(path); // left behind by a daemon that was killed
    }
    const server = createServer((conn) => this.serve(conn));
    server.maxConnections = 64; // beyond the busy answers below, the kernel's backlog
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // the bind happens inside listen(), synchronously: the socket is born 0600
      const umask = process.umask(0o177);
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    await chmod(path, 0o600);
    this.inode = (await lstat(path)).ino;
    server.on('error', (err) => this.log.warn({ err: err.message }, 'control socket error'));
    this.server = server;
    this.log.info({ socket: path }, 'control socket listening');
  }

  /** Stops accepting, cuts the connections still open, and removes the socket (only if it is still ours). */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const c of this.conns) c.destroy();
    await closed;
    const st = await lstat(this.o.path).catch(() => undefined);
    if (st?.isSocket() && st.ino === this.inode) await unlink(this.o.path).catch(() => undefined);
  }

  private serve(conn: Socket): void {
    conn.on('error', () => undefined); // a client that vanishes is its own business
    const busy = this.conns.size >= (this.o.maxConnections ?? 8);
    this.conns.add(conn);
    conn.once('close', () => this.conns.delete(conn));
    if (busy) {
      this.refuse(conn, 'busy: too many control connections at once; try again');
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    const timeoutMs = this.o.requestTimeoutMs ?? 5_000;
    const timer = setTimeout(() => this.refuse(conn, `no request line within ${timeoutMs / 1000} s`), timeoutMs);
    conn.once('close', () => clearTimeout(timer));
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(10);
      const take = nl < 0 ? chunk.length : nl + 1;
      if (size + take > MAX_REQUEST_BYTES) {
        conn.off('data', onData);
        clearTimeout(timer);
        this.refuse(conn, `request longer than ${MAX_REQUEST_BYTES} bytes`);
        return;
      }
      size += take;
      if (nl < 0) {
        parts.push(chunk);
        return;
      }
      parts.push(chunk.subarray(0, nl));
      // one request per connection: whatever follows the line is not read
      conn.off('data', onData);
      conn.pause();
      clearTimeout(timer);
      void this.answer(conn, Buffer.concat(parts).toString('utf8').replace(/\r$/, ''));
    };
    conn.on('data', onData);
  }

  private async answer(conn: Socket, line: string): Promise<void> {
    let req: ControlRequest;
    try {
      req = parseRequest(line);
    } catch (err) {
      this.refuse(conn, (err as Error).message);
      return;
    }
    const out: PageWriter = {
      page: (items) => write(conn, `${JSON.stringify({ page: items })}\n`),
      get aborted() {
        return conn.destroyed;
      },
    };
    this.log.debug({ verb: req.verb }, 'control request');
    let answer: ControlAnswer;
    try {
      answer = { ok: true, result: await this.o.handler.handle(req, out) };
    } catch (err) {
      const refused = err instanceof RequestError;
      answer = { ok: false, error: (err as Error).message, usage: refused && err.usage };
      if (!refused) this.log.warn({ verb: req.verb, err: (err as Error).message }, 'control request failed');
    }
    if (conn.destroyed) return;
    await write(conn, `${JSON.stringify(answer)}\n`);
    finish(conn);
  }

  /** Answers with an error and closes; logged at most every few seconds (a local root user could loop). */
  private refuse(conn: Socket, why: string): void {
    const now = Date.now();
    if (now - this.lastRefusalLog >= REFUSAL_LOG_INTERVAL_MS) {
      this.lastRefusalLog = now;
      this.log.warn({ why }, 'control request refused');
    }
    if (conn.destroyed) return;
    const answer: ControlAnswer = { ok: false, error: why, usage: true };
    conn.write(`${JSON.stringify(answer)}\n`);
    finish(conn);
  }
}

/**
 * Ends our side and reads on (discarding) until the client ends its own, so the connection closes; one that does not
 * hang up within a second of receiving everything is cut.
 */
function finish(conn: Socket): void {
  conn.removeAllListeners('data');
  conn.once('finish', () => setTimeout(() => conn.destroy(), 1_000).unref());
  conn.end();
  conn.resume();
}

/** Writes, waiting for the client to read when its buffer is full; resolves early if it goes away. */
function write(conn: Socket, text: string): Promise<void> {
  if (conn.destroyed) return Promise.resolve();
  if (conn.write(text)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      conn.off('drain', done);
      conn.off('close', done);
      resolve();
    };
    conn.once('drain', done);
    conn.once('close', done);
  });
}

/** Whether something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = createConnection(path);
    const timer = setTimeout(() => {
      probe.destroy();
      resolve(true); // accepted but silent: someone holds it
    }, 1_000);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(new Error(`control socket ${path}: cannot tell whether another daemon uses it (${err.code ?? err.message})`));
    });
  });
}

export { RequestError };
