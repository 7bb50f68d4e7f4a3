// Redis with a local fallback: while Redis is unreachable (connection lost, commands timing out, a paused server)
// the daemon keeps counting and banning in a bounded in-process store with the same policy, so an attack that
// starts during an outage is still stopped on this PBX. When Redis answers again, the bans decided meanwhile are
// written back (ban records, history, index) and the owner reconciles and tells the fleet ('recovered').
//
// What the local store cannot know: counts and history kept in Redis. During an outage a known offender gets the
// ordinary threshold and an unescalated ban (trust is mirrored ahead of time, so a phone that logged in is not
// banned for the outage's sake); failure windows that did not reach a ban are not written back.
//
// An outage may also begin before the daemon has read anything (Redis down at boot): the daemon then starts here,
// with the bans in the kernel sets as what it knows (beginOutage, knowBans), and catches up the same way.
import { EventEmitter } from 'node:events';
import type { IpTarget } from '../net/ip.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { MemoryStore } from './memory-store.js';
import type { RedisStore } from './redis-store.js';
import { checkBatch } from './activity.js';
import { afterEviction, evictOldest } from '../evict-oldest.js';
import { RedisUnreachableError, redisCause } from './redis-errors.js';
import type {
  ActiveBan,
  ActivityVerdict,
  BanRecord,
  Failing,
  HistoryEntry,
  ManualBanInput,
  PolicyParams,
  RecentFailure,
  RestoredBan,
  RestoreResult,
  Store,
  StoreIdentity,
  TargetActivity,
} from './store.js';

export interface FallbackStoreOptions {
  readonly primary: RedisStore;
  /** built with the same policy and node id; its maxAddresses bounds the fallback's memory */
  readonly local: MemoryStore;
  /** whether the Redis connection is up (ioredis `status === 'ready'`): no command is sent into a dead one */
  readonly primaryReady: () => boolean;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** bans decided during an outage kept for write-back at most (the oldest go first, counted) */
  readonly maxWriteback: number;
  /** how often Redis is probed during an outage (default 1,000 ms) */
  readonly probeIntervalMs?: number;
  /** a probe unanswered this long fails (default 1,000 ms) */
  readonly probeTimeoutMs?: number;
  readonly now?: () => number;
  /** which Redis, in words safe to print (describeRedis): what an error says cannot be reached */
  readonly where?: string;
  /** the error the Redis connection last met (lastConnectionError): the cause behind the library's "no connection" */
  readonly lastConnectionError?: () => unknown;
}

export interface Recovery {
  /** bans decided locally and now in Redis: the owner announces them to the fleet */
  readonly written: readonly BanRecord[];
  /** bans lifted by an operator during the outage and now lifted in Redis too: the owner tells the fleet */
  readonly unbanned: readonly IpTarget[];
  /** bans Redis already held as long (another node banned the address meanwhile) */
  readonly covered: number;
  readonly expired: number;
  /** how long events were counted locally (ms) */
  readonly outageMs: number;
}

/** The local fallback: whether it is counting, since when (ms since the epoch), bans waiting to be written back. */
export interface FallbackState {
  readonly active: boolean;
  readonly since: number | null;
  readonly pendingWriteback: number;
}

export interface FallbackStoreEvents {
  fallback: [{ why: string }];
  recovered: [Recovery];
}

/** Reply errors that mean "this server cannot serve now", not "this command is wrong". */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|MISCONF|OOM)\b/;
const WRITEBACK_BATCH = 500;

/** Our own argument checks fail the same way on any store; anything else from Redis is about Redis. */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof RangeError || err instanceof TypeError) return false;
  const e = err as { name?: unknown; message?: unknown };
  if (e?.name === 'ReplyError') return typeof e.message === 'string' && UNAVAILABLE_REPLY.test(e.message);
  return true;
}

export class FallbackStore extends EventEmitter<FallbackStoreEvents> implements Store {
  readonly kind = 'redis' as const;
  private readonly log: Logger;
  private readonly now: () => number;
  /** since when events go to the local store; undefined while Redis serves */
  private outageSince: number | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  /** bans decided locally, oldest first, not yet in Redis */
  private readonly writeback: BanRecord[] = [];
  private readonly decidedHere = new WeakSet<BanRecord>();
  /** written back but not yet announced: a write-back cut short by another outage announces them when it completes */
  private writtenBack: BanRecord[] = [];
  /** targets an operator unbanned during an outage, oldest first, not yet unbanned in Redis */
  private readonly pendingUnbans = new Map<string, IpTarget>();
  private unbannedBack: IpTarget[] = [];

  constructor(private readonly o: FallbackStoreOptions) {
    super();
    this.log = o.logger.child({ component: 'store' });
    this.now = o.now ?? Date.now;
    o.metrics.storeFallbackActive.set(0);
    for (const result of ['written', 'covered', 'expired', 'dropped']) o.metrics.storeWriteback.inc({ result }, 0);
  }

  /** for /healthz */
  get state(): FallbackState {
    return { active: this.outageSince !== undefined, since: this.outageSince ?? null, pendingWriteback: this.writeback.length };
  }

  /** A reloaded policy, for Redis and for the local store alike (they decide the same way). */
  setPolicy(params: PolicyParams): void {
    this.o.primary.setPolicy(params);
    this.o.local.setPolicy(params);
  }

  /** whether Redis serves now; false during an outage, and as soon as its connection is known lost */
  reachable(): boolean {
    return this.outageSince === undefined && this.o.primaryReady();
  }

  /** the local store: what the control socket reads while Redis cannot be (bans decided meanwhile, trust) */
  get local(): Store {
    return this.o.local;
  }

  /**
   * Redis could not be reached as the daemon started: events are counted and banned here from the outset, Redis is
   * probed, and once it answers the bans decided meanwhile are written back and the owner reconciles ('recovered'),
   * as after an outage at run time. Resolves to why, in words (`Redis at … is unreachable: connection refused`);
   * undefined when `err` is not about reaching Redis (a refused command: NOPERM), which a local store would only hide.
   */
  beginOutage(err: unknown): string | undefined {
    if (!isUnavailable(err)) return undefined;
    this.enterFallback(err);
    return err instanceof RedisUnreachableError ? err.message : new RedisUnreachableError(this.where, this.cause(err)).message;
  }

  /**
   * What the kernel enforced when the daemon started without Redis: the local store holds it (so the control
   * socket's list and show see it), not for write-back, since those bans came from Redis or were lost with it, in
   * which case the reconciliation after the outage re-seeds Redis from the kernel.
   */
  async knowBans(bans: readonly RestoredBan[], now: number): Promise<void> {
    await this.o.local.restoreBans(bans, 'restored', now);
  }

  /** whether a ban came from the local store: the fleet hears of it from the write-back, not at once */
  decidedLocally(ban: BanRecord): boolean {
    return this.decidedHere.has(ban);
  }

  /**
   * The batch goes to Redis; the entries Redis could not take (all of them during an outage, a failed node's on a
   * Cluster) are counted here instead, so nothing is lost.
   */
  async recordActivity(batch: readonly TargetActivity[], now: number): Promise<ActivityVerdict[]> {
    checkBatch(batch, now);
    // Trust is mirrored while Redis serves too: an outage must not make a phone that logged in an hour ago a
    // stranger. Those logins are then not applied a second time if the entry ends up counted here.
    let mirrored: Set<TargetActivity> | undefined;
    for (const a of batch) {
      if (a.trust && a.successes > 0) (mirrored ??= new Set()).add(a);
    }
    if (mirrored) {
      await this.o.local.recordActivity(
        [...mirrored].map((a) => ({ ...a, failures: 0, kinds: {}, challenges: 0 })),
        now,
      );
    }
    let verdicts: Array<ActivityVerdict | undefined> | undefined;
    let left: number[] | undefined;
    if (this.serving()) {
      try {
        const parts = await this.o.primary.recordActivityParts(batch, now);
        verdicts = parts.verdicts;
        if (parts.failed.length === 0) return verdicts as ActivityVerdict[];
        left = [];
        for (const f of parts.failed) {
          if (!isUnavailable(f.error)) throw f.error;
          left.push(...f.indices);
        }
        this.enterFallback(parts.failed[0]!.error);
      } catch (err) {
        if (!isUnavailable(err)) throw err;
        // Not lost: counted here instead. If Redis did run the script after all (a paused server wakes and runs what
        // it had queued), only its reply was lost: Redis counts it too, and a ban it decided is met by this node's
        // write-back of the same ban (restore-ban.lua indexes it) or, at the latest, enforced when the target is
        // next seen and the script answers already-banned.
        this.enterFallback(err);
        verdicts = undefined;
        left = undefined;
      }
    }
    const indices = left ?? batch.map((_, i) => i);
    const local = indices.map((i) => {
      const a = batch[i]!;
      return mirrored?.has(a) ? { ...a, successes: 0, trust: false } : a;
    });
    let events = 0;
    for (const a of local) {
      events += a.challenges + a.successes;
      for (const kind in a.kinds) events += a.kinds[kind]!;
    }
    this.o.metrics.storeFallbackEvents.inc(events);
    const localVerdicts = await this.o.local.recordActivity(local, now);
    const out = verdicts ?? new Array<ActivityVerdict | undefined>(batch.length);
    indices.forEach((i, j) => {
      const v = localVerdicts[j]!;
      if (v.type === 'banned') {
        this.keepForWriteback(v.ban);
        if (v.subnet) this.keepForWriteback(v.subnet.ban);
      }
      out[i] = v;
    });
    return out as ActivityVerdict[];
  }

  private serving(): boolean {
    if (this.outageSince !== undefined) return false;
    if (this.o.primaryReady()) return true;
    this.enterFallback(new Error('connection to Redis lost'));
    return false;
  }

  private enterFallback(err: unknown): void {
    if (this.outageSince !== undefined || this.closed) return;
    this.outageSince = this.now();
    const why = this.cause(err);
    this.o.metrics.storeFallbacks.inc();
    this.o.metrics.storeFallbackActive.set(1);
    this.log.warn(
      { redis: this.o.where, why },
      'redis unreachable: counting and banning in the local fallback store until it answers again',
    );
    this.emit('fallback', { why });
    this.probeTimer = setInterval(() => void this.probe(), this.o.probeIntervalMs ?? 1_000);
    this.probeTimer.unref();
  }

  private keepForWriteback(ban: BanRecord): void {
    this.decidedHere.add(ban);
    this.writeback.push(ban);
    if (this.writeback.length > this.o.maxWriteback) {
      // the oldest 1/64 at once: shift() moves the whole array when it is this long, ~0.1-0.25 ms per ban at 100-200k
      const dropped = this.writeback.length - afterEviction(this.o.maxWriteback);
      this.writeback.splice(0, dropped);
      this.o.metrics.storeWriteback.inc({ result: 'dropped' }, dropped);
    }
  }

  private async probe(): Promise<void> {
    if (this.probing || this.closed || !this.o.primaryReady()) return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.o.primary.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer to PING')), this.o.probeTimeoutMs ?? 1_000);
        }),
      ]);
    } catch {
      return;
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
    await this.recover();
  }

  /** Redis answers: new events go to it at once; what was decided meanwhile is written back, oldest first. */
  private async recover(): Promise<void> {
    if (this.outageSince === undefined) return;
    const outageMs = this.now() - this.outageSince;
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.outageSince = undefined;
    this.o.metrics.storeFallbackActive.set(0);
    const written = this.writtenBack;
    const writtenBefore = written.length;
    let covered = 0;
    let expired = 0;
    // an operator's unbans first: a ban decided after one of them is written back after it
    const unbanned = this.unbannedBack;
    for (const [text, target] of this.pendingUnbans) {
      try {
        await this.o.primary.unban(target);
      } catch (err) {
        this.enterFallback(err);
        this.log.warn({ unbanned: unbanned.length, left: this.pendingUnbans.size }, "redis lost again while lifting the outage's unbans");
        return;
      }
      this.pendingUnbans.delete(text);
      unbanned.push(target);
    }
    while (this.writeback.length > 0) {
      const batch = this.writeback.slice(0, WRITEBACK_BATCH);
      const now = this.now();
      let results: boolean[];
      try {
        results = await Promise.all(batch.map((b) => (b.until > now ? this.o.primary.restoreBan(b, now) : Promise.resolve(false))));
      } catch (err) {
        // gone again: what is left stays queued for the next recovery (the script is idempotent, so a batch that
        // was partly written is safe to send again)
        this.enterFallback(err);
        this.log.warn({ written: written.length, left: this.writeback.length }, 'redis lost again during write-back');
        break;
      }
      this.writeback.splice(0, batch.length);
      batch.forEach((b, i) => {
        if (results[i]) written.push(b);
        else if (b.until <= now) expired++;
        else covered++;
      });
    }
    const m = this.o.metrics.storeWriteback;
    m.inc({ result: 'written' }, written.length - writtenBefore);
    m.inc({ result: 'covered' }, covered);
    m.inc({ result: 'expired' }, expired);
    if (this.outageSince !== undefined) return;
    this.writtenBack = [];
    this.unbannedBack = [];
    this.log.info(
      { outageMs, written: written.length, unbanned: unbanned.length, covered, expired },
      'redis reachable again: bans decided meanwhile written back',
    );
    this.emit('recovered', { written, unbanned, covered, expired, outageMs });
  }

  /**
   * An operator's ban (through the daemon's control socket): in Redis, or during an outage in the local store, kept
   * for write-back like the daemon's own bans, so a ban made while Redis is away still holds and reaches Redis later.
   */
  async ban(input: ManualBanInput): Promise<BanRecord> {
    if (this.serving()) {
      try {
        return await this.o.primary.ban(input);
      } catch (err) {
        if (!isUnavailable(err)) throw err;
        this.enterFallback(err);
      }
    }
    const ban = await this.o.local.ban(input);
    this.pendingUnbans.delete(input.target.text);
    this.keepForWriteback(ban);
    return ban;
  }

  /**
   * An operator's unban. The local store forgets the ban too (one decided in an earlier outage would otherwise come
   * back in the next). During an outage the unban waits for Redis, which still holds the ban and would put it back
   * at the next reconciliation; whether a ban existed is then what this node knew of.
   */
  async unban(target: IpTarget, now?: number): Promise<boolean> {
    const local = await this.o.local.unban(target, now);
    if (this.serving()) {
      try {
        return (await this.o.primary.unban(target, now)) || local;
      } catch (err) {
        if (!isUnavailable(err)) throw err;
        this.enterFallback(err);
      }
    }
    const before = this.writeback.length;
    for (let i = this.writeback.length - 1; i >= 0; i--) if (this.writeback[i]!.address === target.text) this.writeback.splice(i, 1);
    this.pendingUnbans.delete(target.text);
    this.pendingUnbans.set(target.text, target);
    if (this.pendingUnbans.size > this.o.maxWriteback) {
      const dropped = evictOldest(this.pendingUnbans, afterEviction(this.o.maxWriteback));
      this.o.metrics.storeWriteback.inc({ result: 'dropped' }, dropped);
    }
    return local || this.writeback.length < before;
  }

  // The reads serve the CLI-like questions, which only mean something against Redis (see `local` for an outage).
  trustedUntil(target: IpTarget, now: number): Promise<number | null> {
    return this.o.primary.trustedUntil(target, now);
  }

  getBan(target: IpTarget, now: number): Promise<BanRecord | null> {
    // an unban made during the outage and not yet in Redis: Redis's record is no longer the truth
    if (this.pendingUnbans.has(target.text)) return Promise.resolve(null);
    return this.o.primary.getBan(target, now);
  }

  history(target: IpTarget): Promise<HistoryEntry[]> {
    return this.o.primary.history(target);
  }

  recentFailures(target: IpTarget): Promise<RecentFailure[]> {
    return this.o.primary.recentFailures(target);
  }

  /**
   * Redis's windows while it serves; during an outage (or when Redis cannot be read) the local store's, which count
   * only what this node saw since Redis went away: said so (`local`), never passed off as the fleet's.
   */
  async failing(now: number, limit: number): Promise<Failing> {
    if (this.reachable()) {
      try {
        return await this.o.primary.failing(now, limit);
      } catch (err) {
        if (!isUnavailable(err)) throw err;
      }
    }
    return { ...(await this.o.local.failing(now, limit)), local: true };
  }

  /**
   * Redis's active bans, less the unbans made during an outage that have not reached Redis yet: a reconciliation as
   * Redis comes back (the fleet channel's resync can run before the write-back) must not put them back.
   */
  async *activeBans(now: number): AsyncIterable<ActiveBan[]> {
    try {
      for await (const page of this.o.primary.activeBans(now)) {
        yield this.pendingUnbans.size === 0 ? page : page.filter((b) => !this.pendingUnbans.has(b.address));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** Redis's: the daemon compares it once Redis answers; during an outage this fails like any other read */
  identity(): Promise<StoreIdentity> {
    return this.o.primary.identity().catch((err: unknown) => this.fail(err));
  }

  /** Into Redis (the daemon re-seeds only a store that answers, so this goes there whether or not an outage is on). */
  restoreBans(bans: readonly RestoredBan[], reason: string, now: number): Promise<RestoreResult> {
    return this.o.primary.restoreBans(bans, reason, now).catch((err: unknown) => this.fail(err));
  }

  /** With no connection to Redis it fails at once, with the cause, rather than queue behind the reconnect attempts. */
  ping(): Promise<number> {
    if (!this.o.primaryReady()) {
      const last = this.o.lastConnectionError?.();
      return Promise.reject(new RedisUnreachableError(this.where, last === undefined ? 'no connection' : redisCause(last)));
    }
    return this.o.primary.ping().catch((err: unknown) => this.fail(err));
  }

  private get where(): string {
    return this.o.where ?? 'the configured address';
  }

  /** why Redis cannot be used, in the project's words (never the library's "max retries per request") */
  private cause(err: unknown): string {
    return err instanceof RedisUnreachableError ? err.why : redisCause(err, this.o.lastConnectionError?.());
  }

  /** rethrows `err`, as a RedisUnreachableError when it is about reaching Redis */
  private fail(err: unknown): never {
    if (!isUnavailable(err) || err instanceof RedisUnreachableError) throw err;
    throw new RedisUnreachableError(this.where, this.cause(err));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probeTimer);
    if (this.writeback.length > 0 || this.pendingUnbans.size > 0) {
      this.log.warn(
        { bans: this.writeback.length, unbans: this.pendingUnbans.size },
        'stopping during a Redis outage: bans decided meanwhile stay in the kernel with their timeouts but are not written to Redis, nor the unbans made meanwhile',
      );
    }
    await Promise.all([this.o.primary.close().catch(() => undefined), this.o.local.close()]);
  }
}
