// A Daemon in this process on a MemoryStore and the detect-only firewall, no AMI source, its log lines collected:
// for unit tests of the daemon's own decisions; and the failure events and the wait those tests share.
import { Writable } from 'node:stream';
import { Daemon } from '../../src/daemon/daemon.js';
import type { SecurityEvent } from '../../src/events/types.js';
import { DetectOnlyFirewall } from '../../src/firewall/detect-only.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import type { Policy } from '../../src/policy/policy.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import { parseAddress } from '../../src/net/ip.js';

export interface MemoryDaemon {
  readonly daemon: Daemon;
  readonly firewall: DetectOnlyFirewall;
  readonly metrics: Metrics;
  /** the daemon's log lines, parsed, as they come */
  readonly lines: Array<Record<string, unknown>>;
}

export async function memoryDaemon(policy: Policy, store: MemoryStore, options: { detectOnly?: boolean } = {}): Promise<MemoryDaemon> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const firewall = new DetectOnlyFirewall();
  const metrics = new Metrics();
  const daemon = new Daemon({
    policy,
    store,
    firewall,
    source: { start: () => undefined, stop: () => Promise.resolve() },
    logger: createLogger('info', sink),
    metrics,
    maxPending: 100,
    injectionBantimeMs: 60_000,
    ...(options.detectOnly === undefined ? {} : { detectOnly: options.detectOnly }),
  });
  await firewall.init();
  return { daemon, firewall, metrics, lines };
}

let session = 0;

/** One pjsip InvalidAccountID from `address`, a session of its own (never taken for a repeat of the one before). */
export function failure(address: string): SecurityEvent {
  const t = Date.now();
  return {
    kind: 'InvalidAccountID',
    service: 'PJSIP',
    address: parseAddress(address)!,
    accountId: 'guess',
    eventTime: t,
    receivedAt: t,
    severity: 'Error',
    usingPassword: false,
    sessionId: `s-${++session}`,
    eventTv: String(t),
  };
}

/** Resolves with what `fn` gives once it gives something, asked every 10 ms for up to 5 s. */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}
