// The control socket of `ami-guard run`: the server, the verbs over the daemon's parts, and a gate that refuses
// requests until the daemon has reconciled its sets (a ban before that would race the start-up reconciliation).
import { ControlServer } from '../control/server.js';
import { DaemonVerbs, type DaemonVerbsOptions } from '../control/daemon-verbs.js';
import { RequestError } from '../control/protocol.js';

export interface DaemonControl {
  readonly server: ControlServer;
  /** from now on requests are served */
  ready(): void;
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
  return { server, ready: () => void (ready = true) };
}
