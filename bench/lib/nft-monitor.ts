// `nft monitor new elements` inside a benchmark's namespace: the kernel multicasts every committed element addition on
// netlink, nft prints one line per element and flushes it, and we stamp each line as it is read. This is how ban
// latency is observed without polling. nft reads the whole ruleset into its cache before it subscribes (about 1 s
// with 100k elements), so ready() adds canary elements to a scratch table of ours until one is seen.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Netns } from '../../test/support/netns.js';
import { now, sleep } from './util.js';

export const PROBE_TABLE = 'agbench_probe';
const LINE = /^add element (\S+) (\S+) (\S+) \{ (\S+) /;

/**
 * A child in the namespace that prints one line per element the kernel adds; waitFor() resolves with when that element
 * was seen, on this process's performance.now() clock.
 */
abstract class ElementWatch {
  protected readonly child: ChildProcessWithoutNullStreams;
  private partial = '';
  private errTail = '';
  private readonly waiters = new Map<string, (at: number) => void>();
  /** every element seen, with when: only kept when `keep` is set */
  readonly seen = new Map<string, number>();
  lines = 0;

  protected constructor(
    protected readonly ns: Netns,
    private readonly keep: boolean,
    file: string,
    args: readonly string[],
  ) {
    this.child = ns.spawn(file, args);
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (s: string) => this.onData(s));
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (s: string) => (this.errTail = (this.errTail + s).slice(-500)));
  }

  /** the end of what the child wrote to stderr, for an error message */
  protected stderrTail(): string {
    return this.errTail;
  }

  /** the element a line announces and when it was added (performance.now()), or null for another line */
  protected abstract parse(line: string, readAt: number): { element: string; at: number } | null;

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
    const readAt = now();
    this.partial += s;
    let nl: number;
    let start = 0;
    while ((nl = this.partial.indexOf('\n', start)) !== -1) {
      const line = this.partial.slice(start, nl);
      start = nl + 1;
      const m = this.parse(line, readAt);
      if (!m) continue;
      this.lines++;
      if (this.keep) this.seen.set(m.element, m.at);
      const w = this.waiters.get(m.element);
      if (w) {
        this.waiters.delete(m.element);
        w(m.at);
      }
    }
    this.partial = this.partial.slice(start);
  }
}

export class NftMonitor extends ElementWatch {
  private canary = 0;

  private constructor(ns: Netns, keep: boolean) {
    super(ns, keep, 'nft', ['monitor', 'new', 'elements']);
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

  protected parse(line: string, readAt: number): { element: string; at: number } | null {
    const m = LINE.exec(line);
    return m ? { element: m[4]!, at: readAt } : null;
  }
}

/**
 * The kernel's own announcement of each added element, stamped by a small Python child (netlink-stamps.py) as its
 * recv() returns: one real-time process waking up, where nft monitor also parses, looks the set up in its cache and
 * prints (the observation floor of `nft monitor`, p99 ~6 ms on a busy 2-core machine, is mostly that). Both clocks are
 * CLOCK_MONOTONIC, so its stamps convert to performance.now() exactly.
 */
export class NetlinkStamps extends ElementWatch {
  /** CLOCK_MONOTONIC ns at this process's performance.now() zero */
  private readonly originNs: bigint;

  private constructor(ns: Netns, keep: boolean) {
    super(ns, keep, 'python3', [fileURLToPath(new URL('../../../bench/lib/netlink-stamps.py', import.meta.url))]);
    const hr = process.hrtime.bigint();
    this.originNs = hr - BigInt(Math.round(now() * 1e6));
  }

  /** Starts the stamper in `ns` and returns once it has subscribed. */
  static async start(ns: Netns, keep = false): Promise<NetlinkStamps> {
    const s = new NetlinkStamps(ns, keep);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('netlink-stamps.py did not subscribe within 10 s (python3 missing?)')), 10_000);
      const onData = (text: string): void => {
        if (!text.includes('ready')) return;
        clearTimeout(timer);
        s.child.stdout.off('data', onData);
        resolve();
      };
      s.child.stdout.on('data', onData);
      s.child.once('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`netlink-stamps.py exited (${code}): ${s.stderrTail().trim() || 'no message'}`));
      });
    });
    return s;
  }

  protected parse(line: string): { element: string; at: number } | null {
    const space = line.indexOf(' ');
    if (space <= 0) return null;
    return { element: line.slice(space + 1), at: Number(BigInt(line.slice(0, space)) - this.originNs) / 1e6 };
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
