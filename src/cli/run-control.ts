// The control socket of `ami-guard run`: the server, the verbs over the daemon's parts, and a gate that refuses
// requests until the daemon has reconciled its sets (a ban before that would race the start-up reconciliation).
import { ControlServer, ControlSocketInUse } from '../control/server.js';
import { DaemonVerbs, type DaemonVerbsOptions } from '../control/daemon-verbs.js';
import { RequestError } from '../control/protocol.js';

export interface DaemonControl {
  /**
   * Binds the socket. Another daemon on it stops the start (two daemons would fight over one table); a socket that
   * cannot be made (a read-only /run, a missing permission) is logged and the daemon runs without one: the PBX is
   * protected all the same, only the CLI here cannot reach it.
   */
  listen(): Promise<void>;
  /** from now on requests are served */
  ready(): void;
  close(): Promise<void>;
}

export function daemonControl(path: string, o: DaemonVerbsOptions): DaemonControl {
  const verbs = new DaemonVerbs(o);
  let ready = false;
  const server = new ControlServer({
    path,
    logger: o.logger,
    handler: {
      handle: (req, out) => {
        if (!ready) return Promise.reject(new RequestError('the daemon is starting: try again in a moment', false));
        return verbs.handle(req, out);
      },
    },
  });
  return {
    async listen() {
      try {
        await server.listen();
      } catch (err) {
        if (err instanceof ControlSocketInUse) throw err;
        o.logger.error(
          { socket: path, err: (err as Error).message },
          'control socket unavailable: running without it; the CLI on this host cannot reach this daemon',
        );
      }
    },
    ready: () => void (ready = true),
    close: () => server.close(),
  };
}
