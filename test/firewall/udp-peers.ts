// Small node processes run inside namespaces: a UDP listener that reports and answers every datagram, and a sender
// that sends from fixed source sockets (so a flow keeps its 5-tuple) on command. Both speak JSON lines.
import { createInterface } from 'node:readline';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Netns } from '../support/netns.js';

export interface PeerEvent {
  readonly event: 'ready' | 'got' | 'reply' | 'sent';
  readonly msg?: string;
  readonly from?: string;
  readonly err?: string | null;
}

export class LineProcess {
  readonly events: PeerEvent[] = [];
  private stderr = '';
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly label: string,
  ) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.events.push(JSON.parse(line) as PeerEvent);
      for (const wake of this.waiters) wake();
    });
    child.stderr.on('data', (b: Buffer) => {
      this.stderr += b.toString();
    });
  }

  has(pred: (e: PeerEvent) => boolean): boolean {
    return this.events.some(pred);
  }

  /** resolves with the first event matching, or rejects after timeoutMs */
  waitFor(pred: (e: PeerEvent) => boolean, what: string, timeoutMs = 5000): Promise<PeerEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.events.find(pred);
        if (!hit) return;
        cleanup();
        resolve(hit);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.label}: timed out waiting for ${what}; stderr: ${this.stderr.trim()}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  send(command: object): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }
}

const LISTENER = (port: number) => `
const dgram = require('node:dgram');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
let ready = 0;
for (const type of ['udp4', 'udp6']) {
  const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
  s.on('message', (msg, r) => {
    out({ event: 'got', msg: msg.toString(), from: r.address });
    s.send('ack:' + msg.toString(), r.port, r.address);
  });
  s.bind(${port}, () => { if (++ready === 2) out({ event: 'ready' }); });
}`;

const SENDER = (sources: readonly string[], port: number) => `
const dgram = require('node:dgram');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const sockets = new Map();
let ready = 0;
for (const src of ${JSON.stringify(sources)}) {
  const s = dgram.createSocket(src.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (msg) => out({ event: 'reply', msg: msg.toString(), from: src }));
  s.bind(${port}, src, () => { if (++ready === sockets.size) out({ event: 'ready' }); });
  sockets.set(src, s);
}
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line);
  const report = (err) => out({ event: 'sent', msg: c.msg, err: err ? String(err) : null });
  sockets.get(c.from).send(c.msg, c.port, c.to, report);
});`;

async function start(ns: Netns, script: string, label: string): Promise<LineProcess> {
  const p = new LineProcess(ns.spawn(process.execPath, ['-e', script]), label);
  await p.waitFor((e) => e.event === 'ready', 'ready');
  return p;
}

/** listens on udp4 and udp6 `port`, reporting `got` and answering `ack:<msg>` */
export function startListener(ns: Netns, port: number): Promise<LineProcess> {
  return start(ns, LISTENER(port), 'listener');
}

/** one socket bound to `<source>:<port>` per source; send({ from, to, port, msg }) reports `sent` and any `reply` */
export function startSender(ns: Netns, sources: readonly string[], port: number): Promise<LineProcess> {
  return start(ns, SENDER(sources, port), 'sender');
}

/** sends one datagram and resolves once the sender's socket has handed it to the kernel */
export async function sendDatagram(sender: LineProcess, cmd: { from: string; to: string; port: number; msg: string }): Promise<void> {
  sender.send(cmd);
  const sent = await sender.waitFor((e) => e.event === 'sent' && e.msg === cmd.msg, `sent ${cmd.msg}`);
  if (sent.err) throw new Error(`sending ${cmd.msg} failed: ${sent.err}`);
}
