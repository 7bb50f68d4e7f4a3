// Watches whether a TCP port accepts connections again, for the AMI supervisor's backoff waits. Asterisk restarting
// refuses connections until its manager is up; a bare connect (closed at once, before any login) every half second
// costs Asterisk nothing, and lets the next login come within that half second of the port answering instead of at
// the end of a backoff of up to ami.reconnectMax. Used only after connection failures: when the port answers but
// the login is refused, the backoff alone paces the retries.
import { connect, type Socket } from 'node:net';

export const PORT_WATCH_INTERVAL_MS = 500;

/** Calls `onOpen` once, the first time the port accepts a connection; the returned function stops watching. */
export function watchPort(host: string, port: number, onOpen: () => void, intervalMs = PORT_WATCH_INTERVAL_MS): () => void {
  let stopped = false;
  let socket: Socket | undefined;
  const probe = (): void => {
    if (stopped || socket) return;
    const s = connect({ host, port });
    socket = s;
    s.setTimeout(intervalMs);
    const done = (open: boolean): void => {
      s.destroy();
      if (socket === s) socket = undefined;
      if (open && !stopped) {
        cancel();
        onOpen();
      }
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.once('timeout', () => done(false));
  };
  const timer = setInterval(probe, intervalMs);
  const cancel = (): void => {
    stopped = true;
    clearInterval(timer);
    socket?.destroy();
    socket = undefined;
  };
  return cancel;
}
