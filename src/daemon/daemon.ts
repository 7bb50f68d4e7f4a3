// The flow of `ami-guard run`: batches of security events in (one per read of the AMI socket), decisions made, the
// events of each counting target folded into one entry, one store call per batch, bans out to the firewall.
// Nothing here blocks the event loop or pushes back on the socket: while store calls are in flight, new events fold
// into the next batch, so a flood from few addresses costs little, and what is bounded is the number of distinct
// targets waiting (pipeline.maxPending), not events.
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { IntakeBatch } from '../events/intake.js';
import type { Injection, SecurityEvent } from '../events/types.js';
import type { Policy } from '../policy/policy.js';
import { StreamDecider } from '../policy/same-request.js';
import type { BanRecord, FailureVerdict, RestoredBan, Store, StoreIdentity, TargetActivity } from '../store/store.js';
import type { Firewall, FirewallBan } from '../firewall/firewall.js';
import { MAX_TIMEOUT_S } from '../firewall/nft-script.js';
import type { IpTarget } from '../net/ip.js';
import { LABEL_VALUES, type Metrics } from '../metrics.js';
import { BanCache } from './ban-cache.js';
import { ActivityFold } from './fold.js';
import { EarlyBans } from './early-bans.js';
import { formatDuration } from '../config/duration.js';

type BanPath = (typeof LABEL_VALUES.banPath)[number];

/** Where batches come from: the live AMI client, or a recording. It hands them to Daemon.onBatch. */
export interface EventSource {
  start(): void | Promise<void>;
  stop(): Promise<void>;
}

export interface DaemonOptions {
  readonly policy: Policy;
  readonly store: Store;
  readonly firewall: Firewall;
  readonly source: EventSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** distinct counting targets that may wait for the store; beyond it new ones are shed (counted) */
  readonly maxPending: number;
  /** how long an injection's source is banned */
  readonly injectionBantimeMs: number;
  /** the fleet's ban channel: where this node's bans go out and other nodes' bans and unbans come in */
  readonly fleet?: FleetLink;
  /** what this node remembers of the store's identity across restarts (the state directory); default: memory only */
  readonly identity?: IdentityMemory;
  /** the store's local stand-in, when it has one: the daemon then starts even while the store cannot be reached */
  readonly fallback?: StartFallback;
  /**
   * Whether an element of the kernel sets is there for another source (a community blocklist's entry): not a ban of
   * ours, so never taken into the store from the kernel.
   */
  readonly heldElsewhere?: (target: IpTarget) => boolean;
  /** `run --detect-only`: bans are decided and logged as bans it would make; the firewall given writes nothing */
  readonly detectOnly?: boolean;
  readonly now?: () => number;
}

/** The store's identity as last seen by this node (IdentityFile). */
export interface IdentityMemory {
  readonly remembered: string | undefined;
  remember(id: string): Promise<void>;
}

/** A store that can stand in for itself while it cannot be reached (FallbackStore). */
export interface StartFallback {
  /**
   * Whether `err` means the store cannot be reached: counting and banning go on locally from now on, and the answer
   * is why, in words; undefined when it means something else.
   */
  beginOutage(err: unknown): string | undefined;
  /** the bans the kernel enforces, as what the local stand-in knows */
  knowBans(bans: readonly RestoredBan[], now: number): Promise<void>;
}

/** What the fleet link may ask of the daemon. */
export interface FleetTarget {
  /** enforce a ban made elsewhere (idempotent); false when it is over already or may not be enforced here */
  applyBan(target: IpTarget, until: number): boolean;
  /** lift a ban everywhere it is enforced here (idempotent) */
  applyUnban(target: IpTarget): void;
  reconcile(why: string): Promise<void>;
}

export interface FleetLink {
  /** where to start reading: taken before the start-up reconciliation, so nothing said during it is missed */
  tail(): Promise<string>;
  start(from: string, target: FleetTarget): void;
  stop(): Promise<void>;
}

const STORE_ERROR_LOG_INTERVAL_MS = 5_000;
/** the reason a ban re-seeded from the kernel carries in the store (what it was banned for is not in the kernel) */
const RESTORED = 'restored';
/** addresses named in the log line of a reconciliation that removed elements */
const REMOVED_LISTED = 50;
/** store calls in flight at once; more events fold into the next batch meanwhile */
const MAX_IN_FLIGHT = 4;
/** targets per store call: one script run must stay short (~5 ms), for Redis serves the rest of the fleet meanwhile; Redis CPU per event is flat from 100 to 500 */
const MAX_BATCH = 256;
/**
 * An early ban lasts this much past the bantime, so that the store's end (counted from its own, slightly later clock
 * read) is not after it: the kernel then holds the store's ban without a second write, at most twice this late.
 */
const EARLY_SLACK_MS = 1_000;
/** how long the store's call for a read that placed early bans waits for the kernel to have them, at most */
const EARLY_ASK_MS = 2;

// tallied under the metric's own label values, so a flood of made-up kinds adds no keys
const KIND_LABELS: ReadonlySet<string> = new Set(LABEL_VALUES.kind);
const SERVICE_LABELS: ReadonlySet<string> = new Set(LABEL_VALUES.service);

/** The kernel sets could not be listed (nft failing), as opposed to the store failing. */
class KernelReadError extends Error {}

export interface DaemonEvents {
  /** a ban decided by this node (not one learnt from the store or another node) */
  ban: [BanRecord];
}

export class Daemon extends EventEmitter<DaemonEvents> implements FleetTarget {
  private readonly cache = new BanCache();
  private readonly early = new EarlyBans();
  /** batches taken from the fold so far: what tells an early ban's verdict from the verdicts of batches before it */
  private takes = 0;
  /** early bans of the read being decided, handed to the firewall together once it is */
  private earlyBatch: Array<{ target: IpTarget; until: number }> = [];
  private readonly decider: StreamDecider;
  private readonly fold: ActivityFold;
  /** store calls for folded batches in flight */
  private inFlight = 0;
  /** batches whose bans are enforced but not yet logged and told (verdicts) */
  private announcing = 0;
  /** injection sources whose ban is being written: one ban each, however many injections they sent meanwhile */
  private readonly injectionBans = new Set<string>();
  private idleWaiters: Array<() => void> = [];
  private lastStoreErrorLog = 0;
  private stopping = false;
  /** past the start-up reconciliation: from here a store that cannot be read is ridden out, not fatal */
  private intakeStarted = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  /** replaced whole by setPolicy (a reload); events decided before keep the decision they got */
  private policy: Policy;
  private injectionBantimeMs: number;
  private reconciling: Promise<void> | undefined;
  /** the reconciliation asked for while one was running, which runs once it is done */
  private followUp: Promise<void> | undefined;
  /** the store's identity as last seen, when there is no IdentityMemory */
  private seenIdentity: string | undefined;
  /** whether the fleet channel is being read: not yet while the store could not be reached since the start */
  private fleetStarted = false;
  /**
   * Bans and unbans enforced while a reconciliation is in flight: its transaction replaces the sets with what the
   * store held when it was read, so these are replayed on top once it is done.
   */
  private journal: Array<{ target: IpTarget; until: number | null }> | undefined;
  /** per-batch tallies, handed to the metrics once per batch instead of once per event */
  private readonly tally = new Map<string, number>();
  /** ami_guard_ban_latency_seconds by path, bound once: no label lookup per ban */
  private readonly latency: Readonly<Record<BanPath, { observe(seconds: number): void }>>;

  constructor(private readonly o: DaemonOptions) {
    super();
    this.now = o.now ?? Date.now;
    this.policy = o.policy;
    this.injectionBantimeMs = o.injectionBantimeMs;
    this.decider = new StreamDecider(o.policy);
    this.fold = new ActivityFold((t) => this.policy.subnetOf(t));
    this.onBatch = this.onBatch.bind(this);
    this.latency = { early: o.metrics.banLatency.labels('early'), store: o.metrics.banLatency.labels('store') };
  }

  async start(): Promise<void> {
    await this.o.firewall.init();
    await this.reconcile('start-up');
    this.intakeStarted = true;
    this.sweepTimer = setInterval(() => this.cache.sweep(this.now()), 60_000).unref();
    await this.o.source.start();
  }

  /**
   * The store's connection came back (a Redis restart the fallback may not even have noticed): if it is not the
   * store it was, for it answers another identity (restarted without persistence), the reconciliation re-seeds it
   * now rather than at the next periodic one. Before the first reconciliation, or with no identity known yet, the
   * reconciliation that follows anyway does it.
   */
  async storeReconnected(why: string): Promise<void> {
    const remembered = this.o.identity ? this.o.identity.remembered : this.seenIdentity;
    if (!this.intakeStarted || this.stopping || remembered === undefined) return;
    if ((await this.o.store.identity()).id !== remembered) await this.reconcile(why);
  }

  /** Makes the kernel sets equal the store's active bans, with their remaining time as timeouts. */
  async reconcile(why: string): Promise<void> {
    // One at a time. A request while one runs gets one more after it, shared by every request made meanwhile: the
    // store may have changed since the running one read it (the bans of a Redis outage written back as the fleet
    // channel's resync reconciles: served by that resync, they were left out of the kernel until the next period).
    if (this.reconciling) {
      const running = this.reconciling;
      this.followUp ??= running
        .catch(() => undefined)
        .then(() => {
          this.followUp = undefined;
          return this.stopping ? undefined : this.reconcile(why);
        });
      return this.followUp;
    }
    this.journal = [];
    this.reconciling = this.reconcileOnce(why).finally(() => {
      const journal = this.journal ?? [];
      this.journal = undefined;
      this.reconciling = undefined;
      for (const j of journal) {
        if (j.until === null) void this.removeFromFirewall([j.target]);
        else void this.addToFirewall([{ target: j.target, until: j.until }]);
      }
    });
    return this.reconciling;
  }

  private async reconcileOnce(why: string): Promise<void> {
    const started = this.now();
    let bans: FirewallBan[];
    let from: string | undefined;
    try {
      // where to read the fleet channel from, taken before the store is read, so nothing said meanwhile is missed
      if (this.o.fleet && !this.fleetStarted) from = await this.o.fleet.tail();
      bans = await this.readTrustedBans(why, started);
    } catch (err) {
      if (err instanceof KernelReadError) {
        // nothing was changed in the store or the kernel; at start-up this is nft failing, which init() would have met
        if (!this.intakeStarted) throw err;
        this.o.logger.warn(
          { why, err: err.message },
          'could not read the kernel sets to re-seed the store; nothing changed, the next reconciliation tries again',
        );
        return;
      }
      if (!this.intakeStarted) {
        // at start-up, a store that cannot be reached leaves the kernel's bans as all that is known: with a local
        // stand-in the daemon starts on them (and catches up once the store answers); without one it does not start
        const unreachable = this.o.fallback?.beginOutage(err);
        if (unreachable === undefined) throw err;
        await this.startOnKernel(unreachable);
        return;
      }
      // The store cannot be read (Redis away): re-assert what this node knows, which never removes anything. A
      // restored table gets its bans back; the full reconciliation follows once the store answers.
      const known: FirewallBan[] = [];
      for (const [target, until] of this.cache.active(started)) known.push({ target, timeoutMs: until - started });
      if (known.length > 0) await this.o.firewall.add(known);
      this.o.logger.warn(
        { why, bans: known.length, err: (err as Error).message },
        'store unreachable: re-applied the bans known here; full reconciliation once it answers',
      );
      return;
    }
    const r = await this.o.firewall.reconcile(bans, started);
    // what the kernel no longer holds is no longer banned here either: a stale entry would skip the address's events
    // as already banned, and the control socket would report it enforced
    for (const t of r.removedTargets) this.cache.delete(t);
    this.o.logger.info(
      { why, bans: r.total, added: r.added, removed: r.removed, ms: this.now() - started },
      'reconciled firewall with store',
    );
    if (r.removedTargets.length > 0) {
      // an operator must be able to tell who was let go, and why: a lift nobody asked for is the worst failure here
      const shown = r.removedTargets.slice(0, REMOVED_LISTED).map((t) => t.text);
      this.o.logger.warn(
        { why, removed: r.removedTargets.length, addresses: shown, more: Math.max(0, r.removedTargets.length - shown.length) },
        `reconciliation removed ${r.removedTargets.length} element(s) from the kernel sets: the store holds no active ban for them (lifted, expired early, or never banned by ami-guard)`,
      );
    }
    if (this.o.fleet && from !== undefined) {
      this.o.fleet.start(from, this);
      this.fleetStarted = true;
    }
  }

  /**
   * The store's active bans, once its identity says it still holds them. A store whose identity changed (or that had
   * none) lost its data: its empty index must not lift every ban, so it is re-seeded from the kernel sets first. The
   * identity is asked again after the read, so a loss in between is caught too; the embedded store takes in the
   * kernel's elements at every start (its state file may be behind a crash, or lost).
   */
  private async readTrustedBans(why: string, started: number): Promise<FirewallBan[]> {
    let known = await this.checkIdentity(why, !this.intakeStarted && this.o.store.kind === 'memory');
    for (let attempt = 1; ; attempt++) {
      const bans = await this.readActiveBans(started);
      const now = await this.o.store.identity();
      if (now.id === known) return bans;
      if (attempt === 2) throw new Error('the store lost its data again while it was being read; nothing is changed in the kernel sets');
      known = await this.checkIdentity(why, false, now);
    }
  }

  /** Compares the store's identity with the one remembered, re-seeds the store on a loss; resolves to the identity. */
  private async checkIdentity(why: string, adopt: boolean, seen?: StoreIdentity): Promise<string> {
    const current = seen ?? (await this.o.store.identity());
    const remembered = this.o.identity ? this.o.identity.remembered : this.seenIdentity;
    const lost = remembered === undefined ? current.created : remembered !== current.id;
    if (lost || adopt) await this.reseed(why, lost ? { remembered, current: current.id } : undefined);
    if (remembered !== current.id) {
      this.seenIdentity = current.id;
      await this.o.identity?.remember(current.id);
    }
    return current.id;
  }

  /**
   * Writes the kernel's elements into the store as bans with their remaining time (reason `restored`; an element
   * without a timeout, added by hand, gets the longest nft takes), so the reconciliation that follows keeps them.
   * `loss` says the store lost its data; without it this is the embedded store taking in what its state file missed.
   */
  private async reseed(why: string, loss: { remembered: string | undefined; current: string } | undefined): Promise<void> {
    const now = this.now();
    const bans = await this.kernelBans(now);
    const r = await this.o.store.restoreBans(bans, RESTORED, now);
    if (loss) {
      if (bans.length === 0 && loss.remembered === undefined) return; // a new store, and nothing enforced: a first start
      this.o.metrics.storeReseeds.inc();
      this.o.metrics.storeReseededBans.inc(r.written);
      const shown = bans.slice(0, REMOVED_LISTED).map((b) => b.target.text);
      this.o.logger.warn(
        {
          why,
          remembered: loss.remembered ?? null,
          identity: loss.current,
          elements: bans.length,
          ...r,
          addresses: shown,
          more: Math.max(0, bans.length - shown.length),
        },
        loss.remembered === undefined
          ? `the store has no identity yet (a new store, or one that lost its data): its bans were re-seeded from the ${bans.length} element(s) of the kernel sets, none lifted`
          : `the store lost its data (its identity changed: Redis restarted without persistence, FLUSHALL, a failover to an empty replica, or a lost state file): its bans were re-seeded from the ${bans.length} element(s) of the kernel sets, none lifted`,
      );
    } else if (r.written > 0) {
      this.o.logger.info(
        { why, elements: bans.length, ...r },
        `took in ${r.written} element(s) of the kernel sets the embedded store's state did not hold, with their remaining time`,
      );
    }
  }

  /** What the kernel sets hold, each element a ban with its remaining time (the longest nft takes if it has none). */
  private async kernelBans(now: number): Promise<RestoredBan[]> {
    let elements;
    try {
      elements = await this.o.firewall.list();
    } catch (err) {
      throw new KernelReadError((err as Error).message);
    }
    const bans: RestoredBan[] = [];
    for (const e of elements) {
      if (this.o.heldElsewhere?.(e.target) || !this.mayBlock(e.target)) continue;
      bans.push({ target: e.target, until: now + (e.expiresMs ?? MAX_TIMEOUT_S * 1000) });
    }
    return bans;
  }

  /**
   * The store could not be reached as the daemon started: what the kernel sets hold is what is known (each element a
   * ban with its remaining time), enforced as it is, nothing removed; the local stand-in counts and bans from now on,
   * and the reconciliation once the store answers catches up (and starts reading the fleet channel).
   */
  private async startOnKernel(why: string): Promise<void> {
    const now = this.now();
    const bans = await this.kernelBans(now);
    for (const b of bans) this.cache.set(b.target, b.until);
    await this.o.fallback?.knowBans(bans, now);
    this.o.logger.warn(
      { bans: bans.length, err: why },
      `store unreachable at start: starting on the local fallback with the ${bans.length} ban(s) in the kernel sets; catching up once it answers`,
    );
  }

  private async readActiveBans(started: number): Promise<FirewallBan[]> {
    const bans: FirewallBan[] = [];
    for await (const page of this.o.store.activeBans(started)) {
      const from = bans.length;
      // the store parsed and checked each entry where it left Redis (a bad one was skipped there, with a warning)
      for (const { target, until } of page) {
        if (!Number.isFinite(until) || !this.mayBlock(target)) continue;
        bans.push({ target, timeoutMs: until - started });
        this.cache.set(target, until);
      }
      // sets known to be empty (a table just created) start taking them while the rest is read
      this.o.firewall.preload?.(bans.slice(from));
      // and the writer's answer is read, so that it is handed the next slice while the rest is parsed
      await new Promise((resolve) => setImmediate(resolve));
    }
    return bans;
  }

  /** One read of the AMI stream: every event decided, folded, and handed to the store in as few calls as may be. */
  onBatch(batch: IntakeBatch): void {
    if (this.stopping) return;
    // the read itself: onBatch runs in the socket's read callback, after the frame reader and the parser (µs)
    const readAt = performance.now();
    const now = this.now();
    for (const e of batch.events) this.accept(e, now);
    const early = this.earlyBatch;
    if (early.length > 0) {
      // The kernel first: the early bans go to the writer before the metrics and injections of this read are seen to,
      // and the store is asked about the failures that placed them once the writer has them in the kernel (or after
      // EARLY_ASK_MS, should it be slow), so Redis does not wake up for its script while the writer needs a core. The
      // verdict comes ~0.3 ms later for it; the ban ~0.1 ms sooner at p50 (the latency bench).
      this.earlyBatch = [];
      let timer: NodeJS.Timeout | undefined;
      const ask = (): void => {
        if (timer === undefined) return;
        clearTimeout(timer);
        timer = undefined;
        this.dispatch();
      };
      timer = setTimeout(ask, EARLY_ASK_MS);
      void this.addToFirewall(early, { path: 'early', since: readAt }).finally(ask);
    }
    this.flushTally();
    for (const inj of batch.injections) this.injection(inj);
    if (early.length === 0) this.dispatch();
  }

  private accept(e: SecurityEvent, now: number): void {
    const kind = KIND_LABELS.has(e.kind) ? e.kind : 'other';
    const service = SERVICE_LABELS.has(e.service) ? e.service : 'other';
    this.count(`e\u0000${kind}\u0000${service}`);
    const d = this.decider.decide(e);
    if (d.action === 'skip') {
      if (d.why !== 'not-a-failure') this.count(`s\u0000${d.why}`);
      return;
    }
    // an IPv6 address counts toward its prefix (policy.ipv6prefix)
    const target = this.policy.countingTarget(e.address);
    if (this.covered(target, e.address, now)) {
      this.count('s\u0000already-banned');
      return;
    }
    if (this.fold.size >= this.o.maxPending && !this.fold.has(target)) {
      // shedding loses one count, never a decided ban: bans come from the store's verdicts
      this.count('shed');
      return;
    }
    if (d.action === 'count') this.count(`f\u0000${kind}`);
    this.fold.add(target, d, e);
    if (d.action === 'count') {
      if (this.early.failure(target, d.weight, now)) this.banEarly(target, now);
    } else if (d.action === 'success') {
      // a login may trust the target, whose threshold then rises
      this.early.dropBrink(target);
    }
  }

  /**
   * The failure just folded makes up what the store said `target` was short of: banned in the kernel now, the store
   * asked as usual, and its verdict settles it (verdicts). A target this node may not ban is left to that verdict.
   */
  private banEarly(target: IpTarget, now: number): void {
    if (this.policy.refusal(target) !== null) return;
    const until = now + this.policy.params.bantimeMs + EARLY_SLACK_MS;
    this.cache.set(target, until);
    this.journal?.push({ target, until });
    this.early.place(target, until, this.takes);
    this.earlyBatch.push({ target, until });
  }

  /** An early ban the store did not make after all: lifted, and said why. */
  private withdrawEarly(target: IpTarget, why: string): void {
    this.cache.delete(target);
    this.journal?.push({ target, until: null });
    void this.removeFromFirewall([target]);
    this.o.metrics.earlyBans.inc({ outcome: 'withdrawn' });
    this.o.logger.warn(
      { event: 'early-ban-withdrawn', address: target.text, why },
      this.o.detectOnly
        ? `dropped the would-be ban of ${target.text} made before the store answered (detect-only): ${why}`
        : `lifted the ban placed on ${target.text} before the store answered: ${why}`,
    );
  }

  /**
   * Whether a ban this node enforces covers the event's source: its counting target's, the address's own (banned
   * instead of a network holding a trusted one), or its subnet's. The kernel drops what follows such a ban; events
   * already on their way cost no store call and make no ban inside a banned subnet.
   */
  private covered(target: IpTarget, address: IpTarget, now: number): boolean {
    if (this.cache.isBanned(target, now)) return true;
    if (target !== address && this.cache.isBanned(address, now)) return true;
    const subnet = this.policy.subnetOf(target);
    return subnet !== null && this.cache.isBanned(subnet, now);
  }

  private count(key: string): void {
    this.tally.set(key, (this.tally.get(key) ?? 0) + 1);
  }

  private flushTally(): void {
    const m = this.o.metrics;
    for (const [key, n] of this.tally) {
      const [what, a, b] = key.split('\u0000');
      if (what === 'e') m.events.inc({ kind: a!, service: b! }, n);
      else if (what === 's') m.skipped.inc({ why: a! }, n);
      else if (what === 'f') m.failures.inc({ kind: a! }, n);
      else if (what === 'shed') m.shed.inc(n);
    }
    this.tally.clear();
  }

  private dispatch(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.fold.size > 0 && !this.stopping) {
      const now = this.now();
      const take = ++this.takes;
      const batch = this.uncovered(this.fold.take(MAX_BATCH), now);
      this.o.metrics.pending.set(this.fold.size);
      if (batch.length === 0) continue;
      this.inFlight++;
      const askedAt = performance.now();
      this.o.store
        .recordActivity(batch, now)
        .then((verdicts) => this.verdicts(batch, verdicts, take, askedAt))
        .catch((err: unknown) => {
          this.storeFailed(err);
          for (const a of batch)
            if (this.early.settle(a.target, take) !== undefined) this.withdrawEarly(a.target, 'the store could not be asked');
        })
        .finally(() => {
          this.inFlight--;
          this.dispatch();
          if (this.isIdle()) this.wakeIdle();
        });
    }
  }

  /**
   * The entries of a batch leaving the fold that no ban known here covers yet. Under a flood the fold runs far ahead
   * of the store: a subnet ban falls while the entries of thousands of prefixes inside it wait, each of which would
   * otherwise be counted, banned, announced and sent to the kernel on its own. Their events are skipped as already
   * banned, as they would have been had they arrived after the ban.
   */
  private uncovered(batch: TargetActivity[], now: number): TargetActivity[] {
    let dropped = 0;
    const out = batch.filter((a) => {
      // the store is yet to make (or not) the ban placed early on these
      if (this.early.isPlaced(a.target)) return true;
      const subnet = this.policy.subnetOf(a.target);
      if (!this.cache.isBanned(a.target, now) && (subnet === null || !this.cache.isBanned(subnet, now))) return true;
      for (const n of Object.values(a.kinds)) dropped += n;
      dropped += a.challenges + a.successes;
      return false;
    });
    if (dropped > 0) this.o.metrics.skipped.inc({ why: 'already-banned' }, dropped);
    return out;
  }

  /** `askedAt`: when the store was asked (performance.now()), for the latency of the bans it made */
  private verdicts(batch: readonly TargetActivity[], verdicts: readonly FailureVerdict[], take: number, askedAt: number): void {
    const now = this.now();
    const enforce: Array<{ target: IpTarget; until: number; placed?: true }> = [];
    const made: BanRecord[] = [];
    /** `early`: the end of the ban placed early on `target`, which this verdict confirms */
    const enforceOne = (target: IpTarget, until: number, early?: number): void => {
      if (!this.mayBlock(target)) {
        if (early !== undefined) this.withdrawEarly(target, 'this node may no longer ban it');
        return;
      }
      // A ban this node enforces already went to the kernel, and was timed, when it was placed: early, and this verdict
      // settles it or moves its end, or a batch still under way had the failures to make it; or by another path.
      const placed = this.cache.isBanned(target, now);
      this.cache.set(target, until);
      this.journal?.push({ target, until });
      if (early !== undefined) {
        this.o.metrics.earlyBans.inc({ outcome: 'confirmed' });
        // the kernel holds it to the early end already, a little past the store's
        if (until <= early && early - until <= 2 * EARLY_SLACK_MS) return;
      }
      // inside a subnet whose ban the kernel holds at least as long (the bans of one store call after its escalation):
      // the interval set would refuse it as overlapping, at the cost of a set read per element to find that out
      const subnet = this.policy.subnetOf(target);
      if (subnet !== null && (this.cache.until(subnet) ?? 0) >= until) return;
      enforce.push(placed ? { target, until, placed: true } : { target, until });
    };
    for (let i = 0; i < batch.length; i++) {
      const v = verdicts[i];
      const entry = batch[i]!;
      let early = this.early.settle(entry.target, take);
      if (!v || v.type === 'counted') {
        if (v && entry.failures > 0) this.early.counted(entry.target, v.brink, take);
        if (early !== undefined) this.withdrawEarly(entry.target, `the store counted ${v ? v.count : 'nothing'} failure(s), no ban`);
        continue;
      }
      this.early.dropBrink(entry.target);
      // the entry's target, or the address banned instead of a network that holds a trusted one
      const target = v.target ?? entry.target;
      if (early !== undefined && target !== entry.target) {
        this.withdrawEarly(entry.target, `the store banned ${target.text} instead (the network holds a trusted address)`);
        early = undefined;
      }
      if (v.type === 'banned') {
        made.push(v.ban);
        enforceOne(target, v.ban.until, early);
        if (v.subnet) {
          // escalated: the subnet goes to the fleet and the webhook like any ban, and into the interval set
          made.push(v.subnet.ban);
          enforceOne(v.subnet.target, v.subnet.ban.until);
        }
      } else if (early !== undefined || !this.cache.isBanned(target, now)) {
        // banned elsewhere (another node, or before a restart) and not yet known here
        enforceOne(target, v.until, early);
      }
    }
    if (enforce.length > 0) void this.addToFirewall(enforce, { path: 'store', since: askedAt });
    if (made.length === 0) return;
    // The kernel first: the batch goes to nft through a chain of promise steps, which all run before the next turn of
    // the event loop; the log line, the fleet and the webhook wait for that turn rather than delay the ban (the
    // first ban of a fresh process spent ~1.5 ms of a svcrack guess's ~6 ms in them before nft heard of it).
    this.announcing++;
    setImmediate(() => {
      for (const ban of made) {
        this.announce(ban, now);
        this.emit('ban', ban);
      }
      this.announcing--;
      if (this.isIdle()) this.wakeIdle();
    });
  }

  private announce(ban: BanRecord, now: number): void {
    this.o.metrics.bans.inc({ reason: ban.reason });
    this.o.logger.info(
      {
        event: this.o.detectOnly ? 'would-ban' : 'ban',
        address: ban.address,
        reason: ban.reason,
        // the audit trail's source: this node's own decision on what AMI said (the CLI's are 'cli', another node's 'fleet')
        source: 'ami',
        count: ban.count,
        kinds: ban.kinds,
        duration: formatDuration(ban.until - (ban.bannedAt || now)),
        until: new Date(ban.until).toISOString(),
        previousBans: ban.previousBans,
        ...(ban.members ? { members: ban.members } : {}),
      },
      this.o.detectOnly ? `would ban ${ban.address} (detect-only)` : `ban ${ban.address}`,
    );
  }

  /**
   * An injected AMI line is the strongest sign there is: its genuine source is banned at once for
   * policy.injection.bantime. The forged addresses were never read. An ignore-listed or never-bannable source is
   * reported, not banned.
   */
  private injection(inj: Injection): void {
    const attributed = inj.source !== null;
    this.o.metrics.injections.inc({ sign: inj.sign, attributed: attributed ? 'yes' : 'no' });
    const fields = { event: 'injection', sign: inj.sign, kind: inj.kind, account: inj.account, source: inj.source?.text ?? null };
    if (!inj.source) {
      this.o.logger.warn(fields, 'AMI injection seen: an event carried lines Asterisk did not write; its source could not be told');
      return;
    }
    const target = inj.source;
    const refusal = this.policy.refusal(target);
    if (refusal) {
      this.o.logger.warn(fields, `AMI injection from ${target.text}, not banned: ${refusal}`);
      return;
    }
    if (this.cache.isBanned(target, this.now()) || this.injectionBans.has(target.text)) {
      this.o.logger.warn(fields, `AMI injection from ${target.text}, already banned`);
      return;
    }
    this.o.logger.warn(fields, `AMI injection from ${target.text}: ${this.o.detectOnly ? 'would ban it (detect-only)' : 'banning it'}`);
    const now = this.now();
    this.injectionBans.add(target.text);
    this.o.store
      .ban({ target, reason: 'injection', durationMs: this.injectionBantimeMs, now, note: `${inj.sign} in ${inj.kind || 'a fragment'}` })
      .then((ban) => {
        this.announce(ban, now);
        this.emit('ban', ban);
        this.cache.set(target, ban.until);
        this.journal?.push({ target, until: ban.until });
        void this.addToFirewall([{ target, until: ban.until }]);
      })
      .catch((err: unknown) => this.storeFailed(err))
      .finally(() => {
        this.injectionBans.delete(target.text);
        if (this.isIdle()) this.wakeIdle();
      });
  }

  applyBan(target: IpTarget, until: number): boolean {
    if (until <= this.now() || !this.mayBlock(target)) return false;
    this.cache.set(target, until);
    this.journal?.push({ target, until });
    void this.addToFirewall([{ target, until }]);
    return true;
  }

  applyUnban(target: IpTarget): void {
    this.cache.delete(target);
    this.early.forget(target);
    this.journal?.push({ target, until: null });
    void this.removeFromFirewall([target]);
  }

  /**
   * A reloaded configuration (SIGHUP): the next event is decided by `policy`. Nothing in flight is lost: events already
   * folded keep their decision, the store keeps its counts, and bans already enforced stay (one the new ignore list
   * covers is left out by the next reconciliation, or lifted at once by an unban).
   */
  setPolicy(policy: Policy, o: { readonly injectionBantimeMs: number }): void {
    this.policy = policy;
    this.decider.policy = policy;
    this.early.clearBrinks();
    this.injectionBantimeMs = o.injectionBantimeMs;
  }

  /** What this node enforces that covers `target` (its own ban, banned networks containing it), for the control socket. */
  enforcing(target: IpTarget): Array<{ readonly target: IpTarget; readonly until: number }> {
    return this.cache.covering(target, this.now());
  }

  /** Every ban this node enforces, oldest first: what the control socket lists when the store cannot be read. */
  enforced(): IterableIterator<[target: IpTarget, until: number]> {
    return this.cache.active(this.now());
  }

  /** This node's ignore list holds for every ban, whoever made it; and no ban may cut the host off from itself. */
  private mayBlock(target: IpTarget): boolean {
    const refusal = this.policy.refusal(target);
    if (refusal) {
      this.o.metrics.skipped.inc({ why: 'ignored' });
      this.o.logger.warn({ address: target.text }, `ban not applied here: ${refusal}`);
      return false;
    }
    return true;
  }

  /**
   * One firewall call for many bans, each with its own end; those already over are left out. `timed`: the bans of an
   * attack, each observed in ami_guard_ban_latency_seconds from `since` (performance.now()) once the kernel has it,
   * but for those `placed` there before.
   */
  private async addToFirewall(
    bans: ReadonlyArray<{ target: IpTarget; until: number; placed?: true }>,
    timed?: { readonly path: BanPath; readonly since: number },
  ): Promise<void> {
    const now = this.now();
    const live: FirewallBan[] = [];
    let placedNow = 0;
    for (const b of bans) {
      if (b.until <= now) continue;
      live.push({ target: b.target, timeoutMs: b.until - now });
      if (b.placed === undefined) placedNow++;
    }
    if (live.length === 0) return;
    try {
      await this.o.firewall.add(live);
      if (timed) {
        const seconds = (performance.now() - timed.since) / 1000;
        const h = this.latency[timed.path];
        for (let i = 0; i < placedNow; i++) h.observe(seconds);
      }
    } catch (err) {
      this.o.metrics.firewallErrors.inc();
      this.o.logger.error(
        { addresses: live.slice(0, 5).map((b) => b.target.text), err: (err as Error).message },
        'could not apply ban to nftables',
      );
    }
  }

  private async removeFromFirewall(targets: readonly IpTarget[]): Promise<void> {
    try {
      await this.o.firewall.delete(targets);
    } catch (err) {
      this.o.metrics.firewallErrors.inc();
      this.o.logger.error(
        { addresses: targets.slice(0, 5).map((t) => t.text), err: (err as Error).message },
        'could not lift ban in nftables',
      );
    }
  }

  private storeFailed(err: unknown): void {
    this.o.metrics.storeErrors.inc();
    const now = this.now();
    if (now - this.lastStoreErrorLog >= STORE_ERROR_LOG_INTERVAL_MS) {
      this.lastStoreErrorLog = now;
      this.o.logger.warn({ err: (err as Error).message }, 'store operation failed; events of that batch not counted');
    }
  }

  private isIdle(): boolean {
    return this.inFlight === 0 && this.fold.size === 0 && this.injectionBans.size === 0 && this.announcing === 0;
  }

  /** Resolves once every event received so far has been decided and its bans handed to the firewall. */
  async idle(): Promise<void> {
    this.dispatch();
    if (!this.isIdle()) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.o.firewall.commit();
  }

  private wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.o.source.stop();
    await this.o.fleet?.stop();
    await this.idle(); // what was read before the stop is still decided and applied
    this.stopping = true;
    await this.o.firewall.shutdown();
    await this.o.store.close();
  }
}
