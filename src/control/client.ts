// The CLI's end of the control socket (see protocol.ts): connect, send one request, read the pages and the answer.
import { createConnection, type Socket } from 'node:net';
import { encodeRequest, type ControlAnswer, type ControlRequest } from './protocol.js';

/** an answer line from the daemon at most (a page of PAGE_SIZE records is far below it) */
const MAX_ANSWER_LINE = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 3_000;

/** The daemon could not be used: its socket refuses this user, it does not answer, it failed the request. */
export class ControlError extends Error {
  constructor(
    message: string,
    /** the daemon refused the request as the caller's mistake (a bad address, an unbannable target) */
    readonly usage = false,
  ) {
    super(message);
  }
}

/**
 * Connects to the daemon's socket. Null when no daemon runs here: no socket, or one left behind by a daemon that
 * is gone. A socket this user may not use is an error (the daemon runs; going round it to Redis would surprise).
 */
export function connectControl(path: string): Promise<Socket | null> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlError(`the daemon's control socket ${path} accepts no connection within ${CONNECT_TIMEOUT_MS / 1000} s`));
    }, CONNECT_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTDIR') resolve(null);
      else if (err.code === 'EACCES' || err.code === 'EPERM') {
        reject(new ControlError(`permission denied on the daemon's control socket ${path}: run ami-guard as root`));
      } else reject(new ControlError(`cannot connect to the daemon's control socket ${path}: ${err.code ?? err.message}`));
    });
  });
}

export interface RequestOptions {
  /** each page of a listing, in order; the next is read once this resolves */
  readonly onPage?: (items: unknown[]) => void | Promise<void>;
  /** the daemon may stay silent this long at most (default 30,000 ms) */
  readonly idleTimeoutMs?: number;
}

/** Sends one request on a fresh connection and resolves with the daemon's result; the connection is closed after. */
export function request(sock: Socket, req: ControlRequest, o: RequestOptions = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer[] = [];
    let size = 0;
    let settled = false;
    let chain = Promise.resolve();
    const finish = (err: Error | null, result?: unknown): void => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(result);
    };
    const idle = o.idleTimeoutMs ?? 30_000;
    sock.setTimeout(idle, () => finish(new ControlError(`the daemon did not answer within ${idle / 1000} s (see its log)`)));
    const line = (text: string): void => {
      let msg: { page?: unknown; ok?: unknown; result?: unknown; error?: unknown; usage?: unknown };
      try {
        msg = JSON.parse(text) as typeof msg;
      } catch {
        finish(new ControlError('the daemon answered something that is not JSON'));
        return;
      }
      if (Array.isArray(msg.page)) {
        const items = msg.page as unknown[];
        if (o.onPage) {
          // pages are handled in order; the socket waits while one is written out
          sock.pause();
          chain = chain
            .then(() => o.onPage!(items))
            .then(
              () => {
                if (!settled) sock.resume();
              },
              (err: unknown) => finish(err as Error),
            );
        }
        return;
      }
      const answer = msg as ControlAnswer;
      if (answer.ok === true) void chain.then(() => finish(null, answer.result));
      else if (answer.ok === false) finish(new ControlError(String(answer.error), answer.usage === true));
      else finish(new ControlError('the daemon answered something this CLI does not understand (another version?)'));
    };
    sock.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let nl = chunk.indexOf(10); nl >= 0 && !settled; nl = chunk.indexOf(10, start)) {
        buffered.push(chunk.subarray(start, nl));
        const text = Buffer.concat(buffered).toString('utf8');
        buffered = [];
        size = 0;
        start = nl + 1;
        line(text);
      }
      if (settled || start >= chunk.length) return;
      size += chunk.length - start;
      if (size > MAX_ANSWER_LINE) finish(new ControlError('the daemon answered a line longer than this CLI reads'));
      else buffered.push(chunk.subarray(start));
    });
    sock.once('error', (err: NodeJS.ErrnoException) =>
      finish(new ControlError(`the control connection failed: ${err.code ?? err.message}`)),
    );
    sock.once('close', () => {
      void chain.then(() => finish(new ControlError('the daemon closed the connection without an answer (see its log)')));
    });
    sock.write(encodeRequest(req));
  });
}
