// `nft monitor new elements` inside a benchmark's namespace: the kernel multicasts every committed element addition on
// netlink, nft prints one line per element and flushes it, and we stamp each line as it is read. This is how ban
// latency is observed without polling. nft reads the whole ruleset into its cache before it subscribes (about 1 s
// with 100k elements), so ready() adds canary elements to a scratch table of ours until one is seen.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Netns } from '../../test/support/netns.js';
import { now, sleep } from './util.js';

export const PROBE_TABLE = 'agbench_probe';
const LINE = /^add element (\S+) (\S+) (\S+) \{ (\S+) /;

export class NftMonitor {
  private readonly child: ChildProcessWithoutNullStreams;
  private partial = '';
  private readonly waiters = new Map<string, (at: number) => void>();
  /** every element seen, with when: only kept when `keep` is set */
  readonly seen = new Map<string, number>();
  lines = 0;
  private canary = 0;

  private constructor(
    private readonly ns: Netns,
    private readonly keep: boolean,
  ) {
    this.child = ns.spawn('nft', ['monitor', 'new', 'elements']);
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (s: string) => this.onData(s));
    this.child.stderr.on('data', () => undefined);
  }

  /** Starts a monitor in `ns` and returns once it demonstrably sees additions. */
  static async start(ns: Netns, keep = false): Promise<NftMonitor> {
    await ns.nft(`add table inet ${PROBE_TABLE}\nadd set inet ${PROBE_TABLE} canary { type ipv4_addr; flags timeout; }\n`);
    const m = new NftMonitor(ns, keep);
    await m.ready();
    return m;
  }

  private async ready(): Promise<void> {
    const deadline = now() + 20_000;
    while (now() < deadline) {
      const el = this.nextCanary();
      const seen = this.waitFor(el, 500);
      await this.ns.nft(`add element inet ${PROBE_TABLE} canary { ${el} timeout 60s }\n`);
      if ((await seen) !== null) return;
    }
    throw new Error('nft monitor did not report a canary element within 20 s');
  }

  /** A fresh scratch address (10.255.0.0/16) for the probe table. */
  nextCanary(): string {
    const i = this.canary++;
    return `10.255.${(i >> 8) & 255}.${i & 255}`;
  }

  /** Resolves with performance.now() of the line announcing `element`, or null after `timeoutMs`. */
  waitFor(element: string, timeoutMs: number): Promise<number | null> {
    const seen = this.seen.get(element);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(element);
        resolve(null);
      }, timeoutMs);
      this.waiters.set(element, (at) => {
        clearTimeout(timer);
        resolve(at);
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
  }

  private onData(s: string): void {
    const at = now();
    this.partial += s;
    let nl: number;
    let start = 0;
    while ((nl = this.partial.indexOf('\n', start)) !== -1) {
      const line = this.partial.slice(start, nl);
      start = nl + 1;
      const m = LINE.exec(line);
      if (!m) continue;
      this.lines++;
      const el = m[4]!;
      if (this.keep) this.seen.set(el, at);
      const w = this.waiters.get(el);
      if (w) {
        this.waiters.delete(el);
        w(at);
      }
    }
    this.partial = this.partial.slice(start);
  }
}

/**
 * A long-lived `nft -i` in the namespace: each line written to its stdin is parsed and committed at once (no process
 * start). Used only to measure the floor of the monitor path and what a persistent nft writer would cost.
 */
export class NftInteractive {
  private readonly child: ChildProcessWithoutNullStreams;

  constructor(ns: Netns) {
    this.child = ns.spawn('nft', ['-i']);
    this.child.stdout.on('data', () => undefined);
    this.child.stderr.on('data', () => undefined);
    this.child.stdin.on('error', () => undefined);
  }

  /** Writes one command line; returns performance.now() taken just before the write. */
  send(line: string): number {
    const t = now();
    this.child.stdin.write(`${line}\n`);
    return t;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin.end();
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
  }
}
