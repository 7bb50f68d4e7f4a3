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
import { BUCKETS, KeySpace, bucketOf } from '../../src/store/keys.js';
import { RedisChannel } from '../../src/fleet/redis-channel.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { persistEmbeddedStore } from '../../src/store/embedded-state.js';
import { StateDir } from '../../src/store/state-file.js';

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
  const i = new (Intake as unknown as new (f: (b: { events: BenchEvent[] }) => void) => { frame: AnyFn; flush: AnyFn })((b) =>
    onEvents(b.events),
  );
  const reader = new (AmiFrameReader as unknown as new (v: (f: unknown) => void) => { push: AnyFn })((f) => i.frame(f, Date.now()));
  return {
    push: (chunk) => {
      reader.push(chunk);
      i.flush();
    },
  };
}

/** The daemon's AMI client feeding the daemon's intake, logged in to host:port; `onEvents` as for intake(). */
export function amiClient(
  port: number,
  username: string,
  secret: string,
  onEvents: (events: readonly BenchEvent[]) => void,
): { stop(): Promise<void> } {
  const sink = new (Intake as unknown as new (f: (b: { events: BenchEvent[] }) => void) => object)((b) => onEvents(b.events));
  const Ctor = AmiClient as unknown as new (o: Record<string, unknown>) => { start: AnyFn; stop: AnyFn };
  const c = new Ctor({ host: '127.0.0.1', port, username, secret, sink, logger: createLogger('silent') });
  c.start();
  return { stop: () => c.stop() as Promise<void> };
}

export interface BenchStore {
  recordFailure(address: string, kind: string, account: string, now: number): Promise<unknown>;
  /** the targets of `addresses`, parsed once (what the daemon's normaliser hands over) */
  targets(addresses: readonly string[]): readonly unknown[];
  /**
   * Store.recordActivity with one failure of `kind` for each of `targets[from..to)`, as the daemon folds a socket
   * chunk; resolves to the verdicts' types.
   */
  recordFailures(targets: readonly unknown[], from: number, to: number, kind: string, account: string, now: number): Promise<string[]>;
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
    targets: (addresses) => addresses.map(addr),
    recordFailures: async (targets, from, to, kind, account, now) => {
      const batch: unknown[] = [];
      for (let i = from; i < to; i++) {
        batch.push({
          target: targets[i],
          failures: 1,
          kinds: { [kind]: 1 },
          account,
          challenges: 0,
          successes: 0,
          trust: false,
          first: now,
          last: now,
        });
      }
      const verdicts = (await s['recordActivity']!.call(s, batch, now)) as Array<{ type: string }>;
      return verdicts.map((v) => v.type);
    },
    ban: (a, durationMs, reason, now) => s['ban']!.call(s, { target: addr(a), reason, durationMs, now }) as Promise<unknown>,
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
  /** the persistent writer's pid, once it runs */
  writerPid(): number | undefined;
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
    writerPid: () => (f as unknown as { runner: { pid?: number } }).runner.pid,
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

/** The Redis keys behind one target, for MEMORY USAGE (docs/fleet.md: record, window bucket, index part). */
export function layoutKeys(prefix: string, address: string): { record: string; index: string; windows: string } {
  const t = parseAddress(address);
  if (!t) throw new Error(`not an address: ${address}`);
  const keys = new KeySpace(prefix);
  const bucket = bucketOf(t);
  return { record: keys.record(t), index: keys.index(bucket), windows: keys.window(bucket, 0).replace(/0$/, '*') };
}

/** The fleet channel's publishBans (the bans of one batch as one message), as the daemon's FleetSync sends them. */
export function fleetPublisher(url: string): { publish(bans: Array<{ address: string; until: number }>): Promise<void>; close(): void } {
  const client = createRedisClient({ url });
  const Ctor = RedisChannel as unknown as new (o: Record<string, unknown>) => Record<string, AnyFn>;
  const c = new Ctor({ client, keyPrefix: 'ami-guard:', maxlen: 100_000 });
  return {
    publish: (bans) =>
      c['publishBans']!.call(
        c,
        bans.map((b) => ({ ...b, reason: 'failures' })),
        { node: 'bench-node', origin: 'bench' },
      ) as Promise<void>,
    close: () => client.disconnect(),
  };
}

/** Bans in the index, every bucket's part summed (the layout of docs/fleet.md). */
export async function banIndexSize(client: { zcard(key: string): Promise<number> }, prefix = 'ami-guard:'): Promise<number> {
  const keys = new KeySpace(prefix);
  const sizes = await Promise.all(Array.from({ length: BUCKETS }, (_, b) => client.zcard(keys.index(b))));
  return sizes.reduce((a, b) => a + b, 0);
}

/** Failures counted in an address's window now (0 without one), reading the window keys of its bucket. */
export async function countedFailures(
  client: { hget(key: string, field: string): Promise<string | null> },
  address: string,
  prefix = 'ami-guard:',
): Promise<number> {
  const t = parseAddress(address);
  if (!t) throw new Error(`not an address: ${address}`);
  const keys = new KeySpace(prefix);
  // the window is in the epoch of Redis's clock or the one before (the default findtime, 10 min, is the epoch)
  const epoch = Math.floor(Date.now() / 600_000);
  for (const e of [epoch + 1, epoch, epoch - 1]) {
    const v = await client.hget(keys.window(bucketOf(t), e), t.text);
    const n = v ? Number(/^~?(\d+):/.exec(v)?.[1] ?? 0) : 0;
    if (v) return n;
  }
  return 0;
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

export interface BenchMemoryStore {
  ban(address: string, durationMs: number, reason: string, now: number): Promise<unknown>;
  /** a successful login that trusts the address */
  trust(address: string, now: number): Promise<unknown>;
  /** reads the state file in `dir` into the store and keeps it written; flush writes now */
  persist(dir: string): Promise<{ flush(): Promise<void>; close(): Promise<void> }>;
  close(): Promise<void>;
}

/** The daemon's embedded store (MemoryStore, default policy) with its state file (persistEmbeddedStore). */
export function memoryStore(nodeId: string, maxAddresses: number): BenchMemoryStore {
  const Ctor = MemoryStore as unknown as new (o: Record<string, unknown>) => Record<string, AnyFn>;
  const s = new Ctor({ nodeId, policy: defaultPolicy().params, maxAddresses });
  const addr = (a: string): unknown => {
    const p = parseAddress(a);
    if (!p) throw new Error(`not an address: ${a}`);
    return p;
  };
  const logger = createLogger('silent');
  return {
    ban: (a, durationMs, reason, now) => s['ban']!.call(s, { target: addr(a), reason, durationMs, now }) as Promise<unknown>,
    trust: (a, now) =>
      s['recordActivity']!.call(
        s,
        [
          {
            target: addr(a),
            failures: 0,
            kinds: {},
            account: '',
            challenges: 0,
            successes: 1,
            trust: true,
            first: now,
            last: now,
          },
        ],
        now,
      ) as Promise<unknown>,
    persist: async (dir) => {
      const persist = persistEmbeddedStore as unknown as (
        o: Record<string, unknown>,
      ) => Promise<{ flush: AnyFn; close: AnyFn; changed: AnyFn } | undefined>;
      const Dir = StateDir as unknown as new (path: string, logger: unknown) => unknown;
      const w = await persist({ store: s, dir: new Dir(dir, logger), nodeId, logger });
      if (!w) throw new Error(`state directory ${dir} cannot be written`);
      w.changed();
      return { flush: () => w.flush() as Promise<void>, close: () => w.close() as Promise<void> };
    },
    close: () => s['close']!.call(s) as Promise<void>,
  };
}

/** RedisStore.restoreBans: the re-seeding of a Redis that lost its data, from `addresses` each until `until`. */
export function redisRestorer(
  url: string,
  nodeId: string,
): { restore(addresses: readonly string[], until: number, now: number): Promise<Record<string, number>>; close(): void } {
  const client = createRedisClient({ url });
  const StoreCtor = RedisStore as unknown as new (o: Record<string, unknown>) => Record<string, AnyFn>;
  const s = new StoreCtor({ client, keyPrefix: 'ami-guard:', nodeId, policy: defaultPolicy().params });
  return {
    restore: (addresses, until, now) =>
      s['restoreBans']!.call(
        s,
        addresses.map((a) => ({ target: parseTarget(a), until })),
        'restored',
        now,
      ) as Promise<Record<string, number>>,
    close: () => client.disconnect(),
  };
}
