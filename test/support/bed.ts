// The end-to-end test bed: a replay AMI server playing a real recording, the real `ami-guard run` process, a real
// Redis (or the embedded store), and nft inside a throwaway network namespace.
import { join } from 'node:path';
import { controlSocketPath } from './daemon-process.js';
import { createNetns, waitFor, type Netns, type RegisterCleanup } from './netns.js';
import { startReplayServer, type ReplayServer } from './replay-ami-server.js';
import { startDaemon, writeConfig, type DaemonProcess } from './daemon-process.js';
import { NftFirewall } from '../../src/firewall/nft.js';

export const FIXTURES = join(process.cwd(), 'test/fixtures/ami');
export const AMI_USER = 'ami-guard';
export const AMI_SECRET = 'replay-secret-7f3a';
/** TEST-NET-1: the address whose ban tells us the daemon has worked through everything sent before it */
export const MARKER = '192.0.2.250';

export interface BedOptions {
  readonly cleanup: RegisterCleanup;
  /** a recording name under test/fixtures/ami (without extension), or a path */
  readonly recording: string;
  /** Redis URL; empty or absent: the embedded store */
  readonly redisUrl?: string;
  readonly keyPrefix?: string;
  /** merged over the bed's base configuration */
  readonly config?: Record<string, Record<string, unknown>>;
  readonly env?: NodeJS.ProcessEnv;
  /** 0 (default): as fast as possible, order kept; 1: recorded timing */
  readonly speed?: number;
  /** reuse a namespace (e.g. to restart the daemon into the same kernel table) */
  readonly ns?: Netns;
  readonly replay?: ReplayServer;
}

export interface Bed {
  readonly ns: Netns;
  readonly replay: ReplayServer;
  readonly daemon: DaemonProcess;
  readonly configFile: string;
  /** the daemon's control socket (control.socket), in a directory of its own */
  readonly socket: string;
  readonly table: string;
  /** reads our sets in the namespace */
  readonly firewall: NftFirewall;
  /** addresses in our sets now */
  elements(): Promise<string[]>;
  /**
   * Waits until the recording has been played and the daemon has handled all of it, then returns the banned
   * addresses (without the marker).
   */
  settle(maxretry?: number): Promise<string[]>;
}

function recordingPath(r: string): string {
  return r.includes('/') ? r : join(FIXTURES, `${r}.jsonl`);
}

let markerSession = 0;

export function markerEvents(count: number, address = MARKER): string {
  let out = '';
  for (let i = 0; i < count; i++) {
    out +=
      'Event: InvalidPassword\r\nPrivilege: security,all\r\nEventTV: 2026-11-21T19:25:18.477+0000\r\n' +
      // each guess is its own request (its own session), as Asterisk reports distinct attempts
      `Severity: Error\r\nService: SIP\r\nEventVersion: 2\r\nAccountID: marker\r\nSessionID: 0x7f6bc4${(++markerSession).toString(16).padStart(6, '0')}\r\n` +
      `LocalAddress: IPV4/UDP/198.18.0.1/5060\r\nRemoteAddress: IPV4/UDP/${address}/5060\r\n` +
      'Challenge: 54fab602\r\nReceivedChallenge: 54fab602\r\nReceivedHash: b9dd22c34ba6f916468ec5eb3cbc540f\r\n\r\n';
  }
  return out;
}

export async function startBed(o: BedOptions): Promise<Bed> {
  const ns = o.ns ?? (await createNetns(o.cleanup));
  const replay =
    o.replay ??
    (await startReplayServer({ recording: recordingPath(o.recording), username: AMI_USER, secret: AMI_SECRET, speed: o.speed ?? 0 }));
  if (!o.replay) o.cleanup(() => replay.stop());
  const table = 'ami_guard';
  const base: Record<string, Record<string, unknown>> = {
    ami: { host: '127.0.0.1', port: replay.port, username: AMI_USER, secret: AMI_SECRET },
    redis: { url: o.redisUrl ?? '', keyPrefix: o.keyPrefix ?? 'ami-guard:' },
    node: { id: 'test-node' },
    nft: { table, netns: ns.name },
    log: { level: 'info' },
    // several daemons share the machine in a test: the HTTP listener is off unless a test turns it on
    http: { port: 0 },
    // and each has a control socket of its own, never the host's /run/ami-guard
    control: { socket: controlSocketPath() },
  };
  for (const [section, values] of Object.entries(o.config ?? {})) base[section] = { ...base[section], ...values };
  const configFile = writeConfig(base);
  const daemon = startDaemon(configFile, o.env ?? {});
  o.cleanup(async () => {
    await daemon.stop();
  });
  const firewall = new NftFirewall({ table, netns: ns.name });
  const elements = async (): Promise<string[]> => {
    if (!(await firewall.present())) return [];
    return (await firewall.list()).map((e) => e.address).sort();
  };
  return {
    ns,
    replay,
    daemon,
    configFile,
    socket: String(base.control!.socket),
    table,
    firewall,
    elements,
    async settle(maxretry = 5) {
      // a daemon that dies before it has logged in would leave playDone pending for ever
      const died = daemon.exited.then((code) => {
        throw new Error(`the daemon exited (${String(code)}) before the recording was played; output:\n${daemon.output().slice(-4000)}`);
      });
      await Promise.race([replay.playDone, died]);
      replay.inject(markerEvents(maxretry));
      await waitFor('the marker ban', async () => ((await elements()).includes(MARKER) ? true : undefined), 20_000);
      return (await elements()).filter((a) => a !== MARKER);
    },
  };
}
