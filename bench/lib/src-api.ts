// The one place where benchmarks call into src/ beyond the frame reader. Other engineers change these types while the
// bench has to keep compiling (tsc builds bench/ with everything else, so a type error here would break everyone's
// `npm run build`): calls go through loose shapes, and a changed API shows up as a failed benchmark at run time,
// never as a broken build.
import { loadConfig } from '../../src/config/load.js';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { AmiClient } from '../../src/ami/client.js';
import { createLogger } from '../../src/log.js';
import { Intake } from '../../src/events/intake.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { NftScript } from '../../src/firewall/nft-script.js';
import { NftWriter } from '../../src/firewall/nft-writer.js';
import { parseAddress, parseTarget } from '../../src/net/ip.js';
import { Policy } from '../../src/policy/policy.js';
import { createRedisClient } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis-store.js';

/** The fields of a SecurityEvent the benchmarks use (the real one carries more). */
export interface BenchEvent {
  readonly kind: string;
  readonly service: string;
  readonly address: { readonly kind: 'address'; readonly family: 4 | 6; readonly text: string };
  readonly accountId: string;
  readonly receivedAt: number;
}

export interface BenchDecision {
  readonly action: 'count' | 'skip';
  readonly weight?: number;
  readonly why?: string;
}

export interface BenchPolicy {
  /** the daemon's Policy.decide on a normalised event */
  decide(event: BenchEvent): BenchDecision;
  readonly params: { readonly maxretry: number; readonly findtimeMs: number; readonly bantimeMs: number; readonly historyTtlMs: number };
  /** canonical ignoreip entries */
  readonly ignoreEntries: readonly string[];
}

type AnyFn = (...args: unknown[]) => unknown;

/** The daemon's Policy built from the default configuration (as `ami-guard run` with no config file would). */
export function defaultPolicy(): BenchPolicy {
  const cfg = loadConfig({ env: {} }) as unknown as { policy: unknown };
  const PolicyCtor = Policy as unknown as new (c: unknown) => {
    decide: AnyFn;
    params: BenchPolicy['params'];
    ignore: { entries: readonly string[] };
  };
  const p = new PolicyCtor(cfg.policy);
  return {
    decide: (e) => p.decide(e) as BenchDecision,
    params: p.params,
    ignoreEntries: p.ignore.entries,
  };
}

/**
 * The daemon's intake (frame reader, event parser, injection tracker) on a byte stream: `push` a read, and `onEvents`
 * gets the security events of each read, as the daemon's pipeline would.
 */
export function intake(onEvents: (events: readonly BenchEvent[]) => void): { push(chunk: Buffer): void } {
  const i = new (Intake as unknown as new (f: (b: { events: BenchEvent[] }) => void) => { frame: AnyFn; flush: AnyFn })((b) => onEvents(b.events));
  const reader = new (AmiFrameReader as unknown as new (v: (f: unknown) => void) => { push: AnyFn })((f) => i.frame(f, Date.now()));
  return {
    push: (chunk) => {
      reader.push(chunk);
      i.flush();
    },
  };
}

/** The daemon's AMI client feeding the daemon's intake, logged in to host:port; `onEvents` as for intake(). */
export function amiClient(port: number, username: string, secret: string, onEvents: (events: readonly BenchEvent[]) => void): { stop(): Promise<void> } {
  const sink = new (Intake as unknown as new (f: (b: { events: BenchEvent[] }) => void) => object)((b) => onEvents(b.events));
  const Ctor = AmiClient as unknown as new (o: Record<string, unknown>) => { start: AnyFn; stop: AnyFn };
  const c = new Ctor({ host: '127.0.0.1', port, username, secret, sink, logger: createLogger('silent') });
  c.start();
  return { stop: () => c.stop() as Promise<void> };
}

export interface BenchStore {
  recordFailure(address: string, kind: string, account: string, now: number): Promise<unknown>;
  ban(address: string, durationMs: number, reason: string, now: number): Promise<unknown>;
  activeBans(now: number): AsyncIterable<Array<{ address: string; until: number }>>;
  close(): Promise<void>;
}

/** RedisStore as the daemon builds it (createRedisClient, key prefix `ami-guard:`, default policy). */
export function redisStore(url: string, nodeId: string): BenchStore {
  const client = createRedisClient({ url });
  const StoreCtor = RedisStore as unknown as new (o: Record<string, unknown>) => Record<string, AnyFn>;
  const s = new StoreCtor({ client, keyPrefix: 'ami-guard:', nodeId, policy: defaultPolicy().params });
  const addr = (a: string): unknown => {
    const p = parseAddress(a);
    if (!p) throw new Error(`not an address: ${a}`);
    return p;
  };
  return {
    recordFailure: (a, kind, account, now) =>
      s['recordFailure']!.call(s, { address: addr(a), kind, account, weight: 1, now }) as Promise<unknown>,
    ban: (a, durationMs, reason, now) =>
      s['ban']!.call(s, { target: addr(a), reason, durationMs, now }) as Promise<unknown>,
    activeBans: (now) => s['activeBans']!.call(s, now) as AsyncIterable<Array<{ address: string; until: number }>>,
    close: () => (s['close']!.call(s) as Promise<void>).catch(() => undefined),
  };
}

export interface BenchFirewall {
  init(): Promise<void>;
  /** bans one address for timeoutMs; resolves once it is in the kernel (batched with whatever else is queued) */
  add(address: BenchEvent['address'], timeoutMs: number): Promise<void>;
  commit(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * The daemon's NftFirewall on our table inside `netns`: with the persistent nft writer as `ami-guard run` builds
 * it (`persistent`), or spawning nft per batch (the CLI's way, and `nft.writer: spawn`).
 */
export function nftFirewall(netns: string, persistent = false): BenchFirewall {
  const Ctor = NftFirewall as unknown as new (o: Record<string, unknown>) => Record<string, AnyFn>;
  const f = new Ctor({ table: 'ami_guard', netns, persistent });
  return {
    init: () => f['init']!.call(f) as Promise<void>,
    add: (address, timeoutMs) => f['add']!.call(f, [{ target: address, timeoutMs }]) as Promise<void>,
    commit: () => f['commit']!.call(f) as Promise<void>,
    shutdown: () => f['shutdown']!.call(f) as Promise<void>,
  };
}

/** The daemon's own nft scripts for table ami_guard: creating it, and the start-up reconciliation's replace-all. */
export function nftScripts(): { init(): string; replaceAll(bans: Array<{ target: unknown; timeoutMs: number }>): string } {
  const s = new (NftScript as unknown as new (t: string) => Record<string, AnyFn>)('ami_guard');
  return {
    init: () => s['init']!.call(s) as string,
    replaceAll: (bans) => s['replaceAll']!.call(s, bans) as string,
  };
}

/** parseTarget of the daemon (what reconciliation does to every address read from the store). */
export function parseTargetText(text: string): unknown {
  const t = parseTarget(text);
  if (!t) throw new Error(`not a target: ${text}`);
  return t;
}

export interface BenchWriter {
  apply(script: string): Promise<void>;
  /** a read command's text output (`stateless`: addresses without expiry, as a restart's first reconciliation reads) */
  list(command: string[], output: { stateless?: boolean; json?: boolean }): Promise<string>;
  close(): Promise<void>;
}

/** The daemon's persistent nft writer (one libnftables child) inside `netns`. */
export function nftWriter(netns: string): BenchWriter {
  const w = new (NftWriter as unknown as new (o: Record<string, unknown>) => Record<string, AnyFn>)({ netns });
  return {
    apply: (script) => w['apply']!.call(w, script) as Promise<void>,
    list: (command, output) => w['list']!.call(w, command, output) as Promise<string>,
    close: () => w['close']!.call(w) as Promise<void>,
  };
}
