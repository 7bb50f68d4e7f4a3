// The in-process store: one PBX without Redis, and the fallback while Redis is unreachable. Same semantics as the
// Redis scripts, with the same bound on memory: every record expires, and each table holds at most `maxAddresses`
// entries, so a flood from spoofed sources can cost a fixed amount of memory and no more.
import type { IpTarget } from '../net/ip.js';
import { ACCOUNT_MAX, HISTORY_CAP, REASON_MAX, banRule, checkFailure, checkManualBan, checkPolicy } from './redis-store.js';
import type {
  ActiveBan, BanRecord, ChallengeInput, FailureInput, FailureVerdict, HistoryEntry, ManualBanInput, PolicyParams,
  RecentFailure, Store, SuccessInput,
} from './store.js';

const PAGE_SIZE = 5_000;

export interface MemoryStoreOptions {
  readonly nodeId: string;
  readonly policy: PolicyParams;
  /** entries per table (failure windows, bans, histories); the least recently written goes first (default 200,000) */
  readonly maxAddresses?: number;
  /** how often expired entries are swept out (default 30,000 ms); lookups also drop them lazily */
  readonly sweepIntervalMs?: number;
  /** the clock that expires entries, like Redis's own; decisions use the `now` of each call (default Date.now) */
  readonly clock?: () => number;
}

interface Failure {
  readonly at: number;
  readonly kind: string;
  readonly account: string;
}

interface Expiring<T> {
  readonly value: T;
  readonly expiresAt: number;
}

/** A Map bounded in size and time: insertion order is write order, so the first key is the one to evict. */
class ExpiringTable<T> {
  private readonly map = new Map<string, Expiring<T>>();

  constructor(private readonly cap: number, private readonly clock: () => number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: string): T | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= this.clock()) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: T, ttlMs: number): void {
    this.map.delete(key); // re-insert at the end: most recently written
    this.map.set(key, { value, expiresAt: this.clock() + ttlMs });
    if (this.map.size > this.cap) this.map.delete(this.map.keys().next().value!);
  }

  delete(key: string): boolean {
    return this.map.delete(key);
  }

  sweep(): void {
    const t = this.clock();
    for (const [k, e] of this.map) if (e.expiresAt <= t) this.map.delete(k);
  }

  *values(): IterableIterator<T> {
    const t = this.clock();
    for (const e of this.map.values()) if (e.expiresAt > t) yield e.value;
  }
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly nodeId: string;
  private policy: PolicyParams;
  /** newest first, at most maxretry */
  private readonly windows: ExpiringTable<Failure[]>;
  private readonly bans: ExpiringTable<BanRecord>;
  /** newest first, at most HISTORY_CAP */
  private readonly histories: ExpiringTable<HistoryEntry[]>;
  /** unanswered challenges (ms), newest first */
  private readonly challenges: ExpiringTable<number[]>;
  /** trusted since (ms) */
  private readonly trusted: ExpiringTable<number>;
  private readonly sweeper: NodeJS.Timeout;

  constructor(opts: MemoryStoreOptions) {
    this.nodeId = opts.nodeId;
    this.policy = checkPolicy(opts.policy);
    const cap = opts.maxAddresses ?? 200_000;
    const clock = opts.clock ?? Date.now;
    this.windows = new ExpiringTable(cap, clock);
    this.bans = new ExpiringTable(cap, clock);
    this.histories = new ExpiringTable(cap, clock);
    this.challenges = new ExpiringTable(cap, clock);
    this.trusted = new ExpiringTable(cap, clock);
    this.sweeper = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? 30_000);
    this.sweeper.unref();
  }

  /** A reloaded policy (SIGHUP): the next decision uses it; windows, bans and history stay as they are. */
  setPolicy(params: PolicyParams): void {
    this.policy = checkPolicy(params);
  }

  /** current entries per table, for metrics and tests */
  sizes(): { windows: number; bans: number; histories: number } {
    return { windows: this.windows.size, bans: this.bans.size, histories: this.histories.size };
  }

  async recordFailure(input: FailureInput): Promise<FailureVerdict> {
    checkFailure(input);
    const address = input.address.text;
    const { now } = input;
    const p = this.policy;
    const banned = this.activeBan(address, now);
    if (banned) return banned;

    // the same thresholds as record-failure.lua: trusted higher, known offender lower
    let threshold = p.maxretry;
    if (this.trusted.get(address) !== undefined) threshold = p.trust.maxretry;
    else if ((this.histories.get(address) ?? []).length > 0) threshold = Math.min(p.maxretry, p.offenderMaxretry);
    const cap = Math.max(p.maxretry, p.trust.maxretry);

    const failure: Failure = { at: now, kind: input.kind, account: input.account.slice(0, ACCOUNT_MAX) };
    const added = Array<Failure>(Math.min(input.weight, cap)).fill(failure);
    const window = added.concat(this.windows.get(address) ?? []).slice(0, cap);

    const cutoff = now - p.findtimeMs;
    const counted = window.filter((f) => f.at > cutoff);
    if (counted.length < threshold) {
      this.windows.set(address, window, p.findtimeMs);
      return { type: 'counted', count: counted.length };
    }

    const byKind = new Map<string, number>();
    for (const f of counted) byKind.set(f.kind, (byKind.get(f.kind) ?? 0) + 1);
    const times = counted.map((f) => f.at);
    this.windows.delete(address);
    return { type: 'banned', ban: this.decideBan(address, now, 'failures', Object.fromEntries(byKind), counted.length, times) };
  }

  async recordChallenge(input: ChallengeInput): Promise<FailureVerdict> {
    const address = input.address.text;
    const { now } = input;
    const { maxretry, findtimeMs } = this.policy.scanner;
    const banned = this.activeBan(address, now);
    if (banned) return banned;
    const pending = [now, ...(this.challenges.get(address) ?? [])].slice(0, maxretry);
    const counted = pending.filter((t) => t > now - findtimeMs);
    if (counted.length < maxretry) {
      this.challenges.set(address, pending, findtimeMs);
      return { type: 'counted', count: counted.length };
    }
    this.challenges.delete(address);
    return { type: 'banned', ban: this.decideBan(address, now, 'scanner', { ChallengeSent: counted.length }, counted.length, counted) };
  }

  async recordSuccess(input: SuccessInput): Promise<void> {
    const address = input.address.text;
    const pending = this.challenges.get(address);
    // one challenge answered: the newest, as record-success.lua pops it
    if (pending && pending.length > 0) this.challenges.set(address, pending.slice(1), this.policy.scanner.findtimeMs);
    if (input.trust) this.trusted.set(address, input.now, this.policy.trust.ttlMs);
  }

  async trustedUntil(target: IpTarget, now: number): Promise<number | null> {
    const since = this.trusted.get(target.text);
    return since === undefined ? null : since + this.policy.trust.ttlMs > now ? since + this.policy.trust.ttlMs : null;
  }

  private activeBan(address: string, now: number): FailureVerdict | null {
    const existing = this.bans.get(address);
    if (!existing) return null;
    if (existing.until > now) return { type: 'already-banned', until: existing.until };
    this.bans.delete(address);
    return null;
  }

  /** include/ban.lua in TypeScript: escalation by earlier bans, capped, with jitter; the recidive rule. */
  private decideBan(address: string, now: number, reason: string, kinds: Record<string, number>, count: number, times: number[]): BanRecord {
    const rule = banRule(this.policy, this.nodeId);
    const history = this.histories.get(address) ?? [];
    let duration = Math.min(rule.bantimeMs * rule.factor ** history.length, rule.maxtimeMs);
    duration = Math.floor(duration + rule.jitterMs);
    const recent = history.filter((h) => h.at > now - rule.recidiveFindtimeMs).length;
    const recidive = recent + 1 >= rule.recidiveMaxretry;
    if (recidive) duration = Math.max(duration, rule.recidiveBantimeMs);
    return this.writeBan(address, {
      reason: recidive ? 'recidive' : reason, kinds, count, firstSeen: Math.min(...times), lastSeen: Math.max(...times),
      bannedAt: now, until: now + duration,
    });
  }

  async ban(input: ManualBanInput): Promise<BanRecord> {
    checkManualBan(input);
    const address = input.target.text;
    const { now } = input;
    this.windows.delete(address);
    const note = (input.note ?? '').slice(0, REASON_MAX);
    return this.writeBan(address, {
      reason: input.reason.slice(0, REASON_MAX), kinds: {}, count: 0, firstSeen: now, lastSeen: now, bannedAt: now,
      until: now + input.durationMs, ...(note ? { note } : {}),
    });
  }

  async unban(target: IpTarget): Promise<boolean> {
    this.windows.delete(target.text);
    this.challenges.delete(target.text);
    return this.bans.delete(target.text);
  }

  async getBan(target: IpTarget, now: number): Promise<BanRecord | null> {
    const ban = this.bans.get(target.text);
    return ban && ban.until > now ? ban : null;
  }

  async history(target: IpTarget): Promise<HistoryEntry[]> {
    return [...(this.histories.get(target.text) ?? [])];
  }

  async recentFailures(target: IpTarget): Promise<RecentFailure[]> {
    return (this.windows.get(target.text) ?? []).map((f) => ({ ...f }));
  }

  async *activeBans(now: number): AsyncIterable<ActiveBan[]> {
    // a snapshot: the table reorders on writes, and a live walk could meet a re-written ban twice
    const active: ActiveBan[] = [];
    for (const b of this.bans.values()) if (b.until > now) active.push({ address: b.address, until: b.until });
    for (let i = 0; i < active.length; i += PAGE_SIZE) yield active.slice(i, i + PAGE_SIZE);
  }

  async ping(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    this.windows.sweep();
    this.bans.sweep();
    this.histories.sweep();
    this.challenges.sweep();
    this.trusted.sweep();
  }

  private writeBan(address: string, b: Omit<BanRecord, 'address' | 'node' | 'previousBans'>): BanRecord {
    const history = this.histories.get(address) ?? [];
    const ban: BanRecord = { ...b, address, node: this.nodeId, previousBans: history.length };
    this.bans.set(address, ban, b.until - b.bannedAt);
    const entry: HistoryEntry = { at: b.bannedAt, until: b.until, reason: b.reason, node: this.nodeId };
    this.histories.set(address, [entry, ...history].slice(0, HISTORY_CAP), this.policy.historyTtlMs);
    return ban;
  }
}
