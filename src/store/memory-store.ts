// The in-process store: one PBX without Redis, `replay`, and the fallback while Redis is unreachable. Same semantics
// as the Redis scripts (record-activity.lua and include/record.lua line by line), with the same bound on memory:
// every record expires, and each table holds at most `maxAddresses` entries, so a flood from spoofed sources can
// cost a fixed amount of memory and no more. As the daemon's embedded store its bans, history and trust outlive the
// process: it says when they change (observe) and hands them over (snapshot) for the state file, which gives them
// back at the next start (load; memory-state.ts). Failure windows are not kept: they last minutes.
import { randomBytes } from 'node:crypto';
import { isParsedTarget, parseTarget, type IpPrefix, type IpTarget } from '../net/ip.js';
import { HISTORY_CAP, REASON_MAX, checkBatch, checkTime, counted, storedAccount } from './activity.js';
import { recentOf, type WindowFailure } from './codec.js';
import { TopFailing, checkLimit, countWithin, thresholdOf } from './failing.js';
import { CHALLENGE_CODE, codesOf, tallyCodes } from './kinds.js';
import { banRule, checkManualBan, checkPolicy } from './redis-store.js';
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
  SubnetBan,
  TargetActivity,
} from './store.js';
import { afterEviction, evictOldest } from '../evict-oldest.js';

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

interface Counting {
  /** oldest first, the newest `max(maxretry, trust.maxretry)` failures */
  readonly failures: WindowFailure[];
  /** ChallengeSent no login has answered yet, oldest first */
  readonly challenges: number[];
  /** of the last failure */
  readonly account: string;
}

interface Ban {
  readonly record: BanRecord;
  readonly target: IpTarget;
}

/**
 * What the embedded store keeps across restarts, every entry alive when it was taken. Addresses are canonical texts
 * of the IP parser (a ban also carries its parsed target): whoever builds one from a file has parsed them.
 */
export interface MemorySnapshot {
  readonly id: string;
  readonly bans: ReadonlyArray<{ readonly target: IpTarget; readonly record: BanRecord }>;
  /** entries newest first; `expiresAt`: when the history is forgotten (policy.history.ttl after its last ban) */
  readonly histories: ReadonlyArray<{ readonly address: string; readonly entries: readonly HistoryEntry[]; readonly expiresAt: number }>;
  readonly trusted: ReadonlyArray<{ readonly address: string; readonly until: number }>;
}

interface Expiring<T> {
  readonly value: T;
  readonly expiresAt: number;
}

/**
 * A Map bounded in size and time: insertion order is write order, so the first keys are the ones to evict, the
 * oldest 1/64 at once when it outgrows its cap (evictOldest).
 */
class ExpiringTable<T> {
  private readonly map = new Map<string, Expiring<T>>();

  constructor(
    private readonly cap: number,
    private readonly clock: () => number,
  ) {}

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
    this.setUntil(key, value, this.clock() + ttlMs);
  }

  setUntil(key: string, value: T, expiresAt: number): void {
    this.map.delete(key); // re-insert at the end: most recently written
    this.map.set(key, { value, expiresAt });
    if (this.map.size > this.cap) evictOldest(this.map, afterEviction(this.cap));
  }

  /** the live entries with their keys, oldest written first, copied (the caller may take its time over them) */
  live(): Array<[string, Expiring<T>]> {
    const t = this.clock();
    const out: Array<[string, Expiring<T>]> = [];
    for (const entry of this.map) if (entry[1].expiresAt > t) out.push(entry);
    return out;
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
  private cap: number;
  private windowTtl: number;
  private readonly windows: ExpiringTable<Counting>;
  private readonly bans: ExpiringTable<Ban>;
  /** newest first, at most HISTORY_CAP */
  private readonly histories: ExpiringTable<HistoryEntry[]>;
  /** trusted until (ms); for a network or subnet: until when it holds a trusted address */
  private readonly trusted: ExpiringTable<number>;
  /** subnet → the recent bans of its addresses or prefixes (subnet escalation), oldest first */
  private readonly subnetBans: ExpiringTable<Array<{ readonly member: string; readonly at: number }>>;
  private readonly sweeper: NodeJS.Timeout;
  private readonly clock: () => number;
  private id = randomBytes(12).toString('hex');
  /** whether the id has been handed out (identity) or came from a state file (load) */
  private idGiven = false;
  private onChange: (() => void) | undefined;

  constructor(opts: MemoryStoreOptions) {
    this.nodeId = opts.nodeId;
    this.policy = checkPolicy(opts.policy);
    this.cap = Math.max(this.policy.maxretry, this.policy.trust.maxretry);
    this.windowTtl = Math.max(this.policy.findtimeMs, this.policy.scanner.findtimeMs);
    const cap = opts.maxAddresses ?? 200_000;
    this.clock = opts.clock ?? Date.now;
    this.windows = new ExpiringTable(cap, this.clock);
    this.bans = new ExpiringTable(cap, this.clock);
    this.histories = new ExpiringTable(cap, this.clock);
    this.trusted = new ExpiringTable(cap, this.clock);
    this.subnetBans = new ExpiringTable(cap, this.clock);
    this.sweeper = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? 30_000);
    this.sweeper.unref();
  }

  /** A reloaded policy (SIGHUP): the next decision uses it; windows, bans, history and trust stay as they are. */
  setPolicy(params: PolicyParams): void {
    const policy = checkPolicy(params);
    this.cap = Math.max(policy.maxretry, policy.trust.maxretry);
    this.windowTtl = Math.max(policy.findtimeMs, policy.scanner.findtimeMs);
    this.policy = policy;
  }

  /** Called after every change a state file must keep (a ban, an unban, a trust): one listener. */
  observe(onChange: () => void): void {
    this.onChange = onChange;
  }

  /** Bans, histories and trust in force, copied: what the state file writes. */
  snapshot(): MemorySnapshot {
    return {
      id: this.id,
      bans: this.bans.live().map(([, e]) => e.value),
      histories: this.histories.live().map(([address, e]) => ({ address, entries: e.value, expiresAt: e.expiresAt })),
      trusted: this.trusted.live().map(([address, e]) => ({ address, until: e.value })),
    };
  }

  /**
   * Takes over a snapshot written by an earlier process (checked entry by entry by whoever read it), and its
   * identity: the store is the one it was. Entries over by now are left out; what the tables hold already stays
   * unless the snapshot has the same target.
   */
  load(state: MemorySnapshot): void {
    const now = this.clock();
    this.id = state.id;
    this.idGiven = true;
    for (const b of state.bans) if (b.record.until > now) this.bans.setUntil(b.record.address, b, b.record.until);
    for (const h of state.histories) {
      if (h.expiresAt > now) this.histories.setUntil(h.address, h.entries.slice(0, HISTORY_CAP), h.expiresAt);
    }
    for (const t of state.trusted) if (t.until > now) this.trusted.setUntil(t.address, t.until, t.until);
  }

  /** current entries per table, for metrics and tests */
  sizes(): { windows: number; bans: number; histories: number } {
    return { windows: this.windows.size, bans: this.bans.size, histories: this.histories.size };
  }

  async recordActivity(batch: readonly TargetActivity[], now: number): Promise<ActivityVerdict[]> {
    checkBatch(batch, now);
    return batch.map((a) => this.record(a, now));
  }

  /** record-activity.lua for one entry, then escalate.lua for the subnet of a ban it made */
  private record(a: TargetActivity, now: number): ActivityVerdict {
    const v = this.count(a, now);
    if (v.type !== 'banned' || !a.subnet) return v;
    const subnet = this.escalate(a.subnet, v.target ?? a.target, now);
    return subnet ? { ...v, subnet } : v;
  }

  private count(a: TargetActivity, now: number): ActivityVerdict {
    const p = this.policy;
    const t = a.target.text;
    if (a.trust && a.successes > 0) {
      this.trusted.set(t, now + p.trust.ttlMs, p.trust.ttlMs);
      // the subnet now holds a trusted address: it is never banned whole while that lasts
      if (a.subnet) this.trusted.set(a.subnet.text, now + p.trust.ttlMs, p.trust.ttlMs);
      this.onChange?.();
    }
    const banned = this.bans.get(t)?.record;
    if (banned && banned.until > now) return { type: 'already-banned', until: banned.until };

    const state = this.windows.get(t);
    const cutoff = now - p.findtimeMs;
    const failures = (state?.failures ?? []).filter((f) => f.at > cutoff);
    const challenges = (state?.challenges ?? []).filter((c) => c > now - p.scanner.findtimeMs);
    const scanMax = p.scanner.maxretry;
    for (let i = 0; i < Math.min(a.challenges, scanMax); i++) challenges.push(a.last);
    if (challenges.length > scanMax) challenges.splice(0, challenges.length - scanMax);
    challenges.length -= Math.min(a.successes, challenges.length);
    const account = a.failures > 0 && a.account !== '' ? storedAccount(a.account) : (state?.account ?? '');
    const trusted = (this.trusted.get(t) ?? 0) > now;

    let count = 0;
    let crossed: { reason: string; codes: string; count: number; first: number; last: number } | undefined;
    let threshold = p.maxretry;
    if (a.failures > 0) {
      // the same thresholds as record-activity.lua: trusted higher, known offender lower
      if (trusted) threshold = p.trust.maxretry;
      else if ((this.histories.get(t) ?? []).length > 0) threshold = Math.min(p.maxretry, p.offenderMaxretry);
      let codes = codesOf(a.kinds, 1_000);
      let weight = a.failures;
      // crossing the threshold: the ban falls at the event that crosses it (weights taken as even over the events)
      let prior = 0;
      for (const f of failures) prior += f.weight;
      if (prior + weight >= threshold) {
        const n = Math.max(codes.length, 1);
        const k = Math.min(n, Math.max(1, Math.ceil(((threshold - prior) * n) / weight)));
        weight = Math.ceil((k * weight) / n);
        codes = codes.slice(0, k);
      }
      failures.push({ at: a.last, codes, weight });
      count = trim(failures, this.cap);
      if (count >= threshold) {
        let first = a.first;
        let last = a.last;
        for (let i = 0; i < failures.length - 1; i++) first = Math.min(first, failures[i]!.at);
        for (const f of failures) last = Math.max(last, f.at);
        crossed = { reason: 'failures', codes: failures.map((f) => f.codes).join(''), count, first, last };
      }
    } else {
      count = challenges.length;
    }
    // the failures first: a brute-forcer's ChallengeSent before each guess must not make it a scanner
    if (!crossed && a.challenges > 0 && challenges.length >= scanMax) {
      crossed = {
        reason: 'scanner',
        codes: CHALLENGE_CODE.repeat(challenges.length),
        count: challenges.length,
        first: Math.min(...challenges),
        last: Math.max(...challenges),
      };
    }
    if (crossed && a.target.kind === 'prefix' && trusted) {
      // A network that holds a trusted address is never banned whole: the address that sent these is, and the
      // network's window starts afresh. Without a source there is nobody to ban.
      if (!a.source) return counted(count);
      this.windows.delete(t);
      const own = this.bans.get(a.source.text)?.record;
      if (own && own.until > now) return { type: 'already-banned', until: own.until, target: a.source };
      const ban = this.decideBan(a.source, now, crossed.reason, crossed.codes, crossed.count, crossed.first, crossed.last, account);
      return { type: 'banned', ban, target: a.source };
    }
    if (crossed) {
      this.windows.delete(t);
      const ban = this.decideBan(a.target, now, crossed.reason, crossed.codes, crossed.count, crossed.first, crossed.last, account);
      return { type: 'banned', ban };
    }
    if (failures.length > 0 || challenges.length > 0) this.windows.set(t, { failures, challenges, account }, this.windowTtl);
    else this.windows.delete(t);
    const remaining = threshold - count;
    if (a.failures > 0 && !trusted && remaining <= (p.heaviestWeight ?? 1)) {
      let oldest = a.last;
      for (const f of failures) oldest = Math.min(oldest, f.at);
      return counted(count, { remaining, until: oldest + p.findtimeMs });
    }
    return counted(count);
  }

  /**
   * escalate.lua's subnet rule: `member`'s ban counts toward `subnet`; the maxbans-th distinct member within
   * findtime bans the subnet, unless it holds a trusted address or is banned already.
   */
  private escalate(subnet: IpPrefix, member: IpTarget, now: number): SubnetBan | undefined {
    const rule = this.policy.subnet;
    if (rule.maxbans === 0) return undefined;
    const key = subnet.text;
    const banned = this.bans.get(key)?.record;
    if (banned && banned.until > now) return undefined;
    const members = (this.subnetBans.get(key) ?? []).filter((m) => m.at > now - this.policy.findtimeMs && m.member !== member.text);
    members.push({ member: member.text, at: now });
    if (members.length > rule.maxbans) members.splice(0, members.length - rule.maxbans);
    if (members.length < rule.maxbans || (this.trusted.get(key) ?? 0) > now) {
      this.subnetBans.set(key, members, this.policy.findtimeMs);
      return undefined;
    }
    this.subnetBans.delete(key);
    this.windows.delete(key);
    const ban = this.writeBan(subnet, {
      reason: 'subnet',
      kinds: {},
      count: members.length,
      firstSeen: members[0]!.at,
      lastSeen: now,
      bannedAt: now,
      until: now + rule.bantimeMs,
      members: members.map((m) => m.member),
    });
    return { target: subnet, ban };
  }

  async trustedUntil(target: IpTarget, now: number): Promise<number | null> {
    const until = this.trusted.get(target.text);
    return until !== undefined && until > now ? until : null;
  }

  /** include/record.lua in TypeScript: escalation by earlier bans, capped, with jitter; the recidive rule. */
  private decideBan(
    target: IpTarget,
    now: number,
    reason: string,
    codes: string,
    count: number,
    first: number,
    last: number,
    account: string,
  ): BanRecord {
    const rule = banRule(this.policy, this.nodeId);
    const history = this.histories.get(target.text) ?? [];
    let duration = Math.min(rule.bantimeMs * rule.factor ** history.length, rule.maxtimeMs);
    const jitter = rule.rndtimeMs > 0 ? Math.floor(Math.random() * (rule.rndtimeMs + 1)) : 0;
    duration = Math.floor(duration + jitter);
    const recent = history.filter((h) => h.at > now - rule.recidiveFindtimeMs).length;
    const recidive = recent + 1 >= rule.recidiveMaxretry;
    if (recidive) duration = Math.max(duration, rule.recidiveBantimeMs);
    return this.writeBan(target, {
      reason: recidive ? 'recidive' : reason,
      kinds: tallyCodes(codes),
      count,
      firstSeen: first,
      lastSeen: last,
      bannedAt: now,
      until: now + duration,
      ...(account ? { account } : {}),
    });
  }

  async ban(input: ManualBanInput): Promise<BanRecord> {
    checkManualBan(input);
    const { now } = input;
    this.windows.delete(input.target.text);
    this.subnetBans.delete(input.target.text);
    const note = (input.note ?? '').slice(0, REASON_MAX);
    // a ban of what is banned now replaces it: its history entry goes, so no second offence is made of one
    const current = this.bans.get(input.target.text)?.record;
    if (current && current.until > now) {
      const history = this.histories.get(input.target.text);
      if (history?.[0]?.at === current.bannedAt) this.histories.set(input.target.text, history.slice(1), this.policy.historyTtlMs);
    }
    return this.writeBan(input.target, {
      reason: input.reason.slice(0, REASON_MAX),
      kinds: {},
      count: 0,
      firstSeen: now,
      lastSeen: now,
      bannedAt: now,
      until: now + input.durationMs,
      ...(note ? { note } : {}),
    });
  }

  async unban(target: IpTarget, now = Date.now()): Promise<boolean> {
    this.windows.delete(target.text);
    this.subnetBans.delete(target.text);
    const ban = this.bans.get(target.text);
    if (this.bans.delete(target.text)) this.onChange?.();
    return ban !== undefined && ban.record.until > now;
  }

  /** Store.restoreBans, as restore-ban.lua does it in extend mode. */
  async restoreBans(bans: readonly RestoredBan[], reason: string, now: number): Promise<RestoreResult> {
    checkTime(now);
    let written = 0;
    let extended = 0;
    let covered = 0;
    for (const { target, until } of bans) {
      if (!isParsedTarget(target)) throw new RangeError('a ban to restore whose target did not come from the IP parser');
      checkTime(until);
      if (until <= now) {
        covered++;
        continue;
      }
      const held = this.bans.get(target.text)?.record;
      if (held && held.until >= until) {
        covered++;
      } else if (held && held.until > now) {
        this.bans.set(target.text, { record: { ...held, until }, target }, until - now);
        extended++;
      } else {
        this.writeBan(target, {
          reason: reason.slice(0, REASON_MAX),
          kinds: {},
          count: 0,
          firstSeen: now,
          lastSeen: now,
          bannedAt: now,
          until,
        });
        written++;
      }
    }
    if (written + extended > 0) this.onChange?.();
    return { written, extended, covered };
  }

  async getBan(target: IpTarget, now: number): Promise<BanRecord | null> {
    const ban = this.bans.get(target.text)?.record;
    return ban && ban.until > now ? ban : null;
  }

  async history(target: IpTarget): Promise<HistoryEntry[]> {
    return [...(this.histories.get(target.text) ?? [])];
  }

  async recentFailures(target: IpTarget): Promise<RecentFailure[]> {
    const w = this.windows.get(target.text);
    return recentOf(w ? { failures: w.failures, challenges: w.challenges, account: w.account } : null);
  }

  async failing(now: number, limit: number): Promise<Failing> {
    checkTime(now);
    const p = this.policy;
    const top = new TopFailing<{ target: IpTarget; failures: number; last: number; account: string }>(checkLimit(limit));
    const cutoff = now - p.findtimeMs;
    for (const [text, { value: w }] of this.windows.live()) {
      const counted = countWithin(w.failures, cutoff);
      if (!counted) continue;
      const ban = this.bans.get(text);
      if (ban && ban.record.until > now) continue;
      const target = ban?.target ?? parseTarget(text);
      if (!target) continue;
      top.add({ target, failures: counted.failures, last: counted.last, account: w.account });
    }
    return {
      total: top.total,
      top: top.kept.map((c) => ({
        ...c,
        threshold: thresholdOf(p, (this.trusted.get(c.target.text) ?? 0) > now, (this.histories.get(c.target.text) ?? []).length > 0),
      })),
    };
  }

  async *activeBans(now: number): AsyncIterable<ActiveBan[]> {
    // a snapshot: the table reorders on writes, and a live walk could meet a re-written ban twice
    const active: ActiveBan[] = [];
    for (const { record, target } of this.bans.values()) {
      if (record.until > now) active.push({ address: record.address, target, until: record.until });
    }
    for (let i = 0; i < active.length; i += PAGE_SIZE) yield active.slice(i, i + PAGE_SIZE);
  }

  async identity(): Promise<StoreIdentity> {
    const created = !this.idGiven;
    this.idGiven = true;
    return { id: this.id, created };
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
    this.trusted.sweep();
    this.subnetBans.sweep();
  }

  private writeBan(target: IpTarget, b: Omit<BanRecord, 'address' | 'node' | 'previousBans'>): BanRecord {
    const address = target.text;
    const history = this.histories.get(address) ?? [];
    const record: BanRecord = { address, ...b, node: this.nodeId, previousBans: history.length };
    this.bans.set(address, { record, target }, b.until - b.bannedAt);
    const entry: HistoryEntry = { at: b.bannedAt, until: b.until, reason: b.reason, node: this.nodeId };
    this.histories.set(address, [entry, ...history].slice(0, HISTORY_CAP), this.policy.historyTtlMs);
    this.onChange?.();
    return record;
  }
}

/** Keeps the newest `cap` failures (the oldest entry loses weight first); returns how many are left. */
function trim(failures: WindowFailure[], cap: number): number {
  let total = 0;
  for (const f of failures) total += f.weight;
  while (total > cap) {
    const oldest = failures[0]!;
    const excess = total - cap;
    if (oldest.weight <= excess) {
      failures.shift();
      total -= oldest.weight;
    } else {
      const weight = oldest.weight - excess;
      failures[0] = { at: oldest.at, weight, codes: oldest.codes.length > weight ? oldest.codes.slice(-weight) : oldest.codes };
      total = cap;
    }
  }
  return total;
}
