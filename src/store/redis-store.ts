// The shared store: a fleet of PBXs pointed at one Redis sees one failure window and one ban per address.
import type { Cluster, Redis } from 'ioredis';
import type { IpTarget } from '../net/ip.js';
import { KeySpace } from './keys.js';
import { banBlock, storeScripts, parseKinds, type Arg, type BanRule, type RecordReply, type StoreScripts } from './scripts.js';
import type {
  ActiveBan, BanRecord, ChallengeInput, FailureInput, FailureVerdict, HistoryEntry, ManualBanInput, PolicyParams,
  RecentFailure, Store, SuccessInput,
} from './store.js';

/** bans kept per address; a ban record's `prev` counts up to this */
export const HISTORY_CAP = 50;
/** characters of an account id kept with a failure (the normaliser truncates already; this bounds memory anyway) */
export const ACCOUNT_MAX = 128;
/** characters of a manual ban reason kept */
export const REASON_MAX = 200;
const PAGE_SIZE = 5_000;

export interface RedisStoreOptions {
  readonly client: Redis | Cluster;
  /** `redis.keyPrefix`, e.g. `ami-guard:` */
  readonly keyPrefix: string;
  /** node.id, written into every ban and history entry */
  readonly nodeId: string;
  readonly policy: PolicyParams;
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  private readonly client: Redis | Cluster;
  private readonly keys: KeySpace;
  private readonly scripts: StoreScripts;
  private readonly nodeId: string;
  private policy: PolicyParams;
  private fixedBanArgs: readonly Arg[];

  constructor(opts: RedisStoreOptions) {
    this.client = opts.client;
    this.keys = new KeySpace(opts.keyPrefix);
    this.scripts = storeScripts(opts.client);
    this.nodeId = opts.nodeId;
    this.policy = checkPolicy(opts.policy);
    this.fixedBanArgs = banBlock(banRule(this.policy, this.nodeId));
  }

  /** A reloaded policy (SIGHUP): the next script call carries it; what Redis holds stays as it is. */
  setPolicy(params: PolicyParams): void {
    const policy = checkPolicy(params);
    this.fixedBanArgs = banBlock(banRule(policy, this.nodeId));
    this.policy = policy;
  }

  async recordFailure(input: FailureInput): Promise<FailureVerdict> {
    const address = input.address.text;
    const keys = this.keys.target(address);
    checkFailure(input);
    // `|` separates the fields of a window entry; kinds are Asterisk event names, which never contain it
    if (input.kind.includes('|')) throw new RangeError(`invalid failure kind ${JSON.stringify(input.kind)}`);
    const p = this.policy;
    const reply = await this.scripts.recordFailure(keys, {
      now: input.now, kind: input.kind, account: input.account.slice(0, ACCOUNT_MAX), weight: input.weight,
      maxretry: p.maxretry, findtimeMs: p.findtimeMs, trustMaxretry: p.trust.maxretry,
      offenderMaxretry: p.offenderMaxretry, banArgs: this.banArgs(),
    });
    return this.verdict(address, input.now, reply);
  }

  async recordChallenge(input: ChallengeInput): Promise<FailureVerdict> {
    checkTime(input.now);
    const address = input.address.text;
    const p = this.policy;
    const reply = await this.scripts.recordChallenge(this.keys.target(address), {
      now: input.now, maxretry: p.scanner.maxretry, findtimeMs: p.scanner.findtimeMs, banArgs: this.banArgs(),
    });
    return this.verdict(address, input.now, reply);
  }

  async recordSuccess(input: SuccessInput): Promise<void> {
    checkTime(input.now);
    await this.scripts.recordSuccess(this.keys.target(input.address.text), {
      now: input.now, trustTtlMs: this.policy.trust.ttlMs, trust: input.trust,
    });
  }

  async trustedUntil(target: IpTarget, now: number): Promise<number | null> {
    const ttl = await this.client.pttl(this.keys.target(target.text).trust);
    return ttl > 0 ? now + ttl : null;
  }

  /** The ban block of every scripted event: built once, fresh only when rndtime asks for a new jitter draw. */
  private banArgs(): readonly Arg[] {
    return this.policy.increment.rndtimeMs > 0 ? banBlock(banRule(this.policy, this.nodeId)) : this.fixedBanArgs;
  }

  private async verdict(address: string, now: number, reply: RecordReply): Promise<FailureVerdict> {
    if (reply.type === 'counted') return { type: 'counted', count: reply.count };
    if (reply.type !== 'banned') return reply;
    await this.indexBan(address, reply.until, reply.until - now);
    return {
      type: 'banned',
      ban: {
        address, reason: reply.reason, kinds: reply.kinds, count: reply.count, firstSeen: reply.first,
        lastSeen: reply.last, bannedAt: now, until: reply.until, node: this.nodeId, previousBans: reply.prev,
      },
    };
  }

  async ban(input: ManualBanInput): Promise<BanRecord> {
    checkManualBan(input);
    const address = input.target.text;
    const until = input.now + input.durationMs;
    const reason = input.reason.slice(0, REASON_MAX);
    const note = (input.note ?? '').slice(0, REASON_MAX);
    const prev = await this.scripts.ban(this.keys.target(address), {
      now: input.now, until, reason, node: this.nodeId, historyTtlMs: this.policy.historyTtlMs,
      historyCap: HISTORY_CAP, note,
    });
    await this.indexBan(address, until, input.durationMs);
    return {
      address, reason, kinds: {}, count: 0, firstSeen: input.now, lastSeen: input.now, bannedAt: input.now, until,
      node: this.nodeId, previousBans: prev, ...(note ? { note } : {}),
    };
  }

  /**
   * Writes back a ban decided elsewhere (this node's fallback store while Redis was away), keeping its node and
   * times. Idempotent; resolves to whether it was written (false: a ban as long is already there, or it is over).
   */
  async restoreBan(ban: BanRecord, now: number): Promise<boolean> {
    checkTime(now);
    const { written, until } = await this.scripts.restoreBan(this.keys.target(ban.address), {
      now, until: ban.until, bannedAt: ban.bannedAt, reason: ban.reason.slice(0, REASON_MAX), kinds: ban.kinds,
      count: ban.count, first: ban.firstSeen, last: ban.lastSeen, node: ban.node, historyTtlMs: this.policy.historyTtlMs,
      historyCap: HISTORY_CAP,
    });
    if (until > now) await this.indexBan(ban.address, until, until - now);
    return written;
  }

  async unban(target: IpTarget): Promise<boolean> {
    const [existed] = await Promise.all([
      this.scripts.unban(this.keys.target(target.text)),
      this.client.zrem(this.keys.banIndex, target.text),
    ]);
    return existed;
  }

  async getBan(target: IpTarget, now: number): Promise<BanRecord | null> {
    const h = await this.client.hgetall(this.keys.target(target.text).ban);
    const until = num(h.until);
    if (until === undefined || until <= now) return null;
    // fields an older version did not write read as neutral values
    const bannedAt = num(h.at) ?? 0;
    return {
      address: target.text,
      reason: h.reason ?? 'failures',
      kinds: parseKinds(h.kinds),
      count: num(h.count) ?? 0,
      firstSeen: num(h.first) ?? bannedAt,
      lastSeen: num(h.last) ?? bannedAt,
      bannedAt,
      until,
      node: h.node ?? '',
      previousBans: num(h.prev) ?? 0,
      ...(h.note ? { note: h.note } : {}),
    };
  }

  async recentFailures(target: IpTarget): Promise<RecentFailure[]> {
    const raw = await this.client.lrange(this.keys.target(target.text).fail, 0, -1);
    return raw.flatMap((entry) => {
      // `<ms>|<kind>|<account>`: the account is last because it may itself contain `|`
      const m = /^(\d+)\|([^|]*)\|(.*)$/s.exec(entry);
      return m ? [{ at: Number(m[1]), kind: m[2]!, account: m[3]! }] : [];
    });
  }

  async history(target: IpTarget): Promise<HistoryEntry[]> {
    const raw = await this.client.lrange(this.keys.target(target.text).hist, 0, -1);
    return raw.flatMap((json) => {
      const entry = parseHistoryEntry(json);
      return entry ? [entry] : [];
    });
  }

  async *activeBans(now: number): AsyncIterable<ActiveBan[]> {
    const index = this.keys.banIndex;
    await this.client.zremrangebyscore(index, '-inf', now);
    // Offset paging: a ban added or removed between pages can shift the rest by one, so a concurrent change may be
    // missed or seen twice in this pass; reconciliation runs periodically and catches it on the next one.
    for (let offset = 0; ; offset += PAGE_SIZE) {
      const flat = await this.client.zrange(
        index, `(${now}`, '+inf', 'BYSCORE', 'LIMIT', offset, PAGE_SIZE, 'WITHSCORES');
      const page: ActiveBan[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) page.push({ address: flat[i]!, until: Number(flat[i + 1]) });
      if (page.length > 0) yield page;
      if (page.length < PAGE_SIZE) return;
    }
  }

  async ping(): Promise<number> {
    const started = performance.now();
    await this.client.ping();
    return performance.now() - started;
  }

  async close(): Promise<void> {
    // QUIT waits for a reply; with Redis away that would hold a shutdown for the reconnect attempts
    if (this.client.status === 'ready') await this.client.quit();
    else this.client.disconnect();
  }

  /**
   * Adds a ban to the index, from here rather than from the script because the index lives in a slot of its own.
   * Expired members are pruned by activeBans; the key itself expires with its longest ban, so a fleet whose
   * reconciliation stopped still cannot grow it for ever.
   */
  private async indexBan(address: string, until: number, durationMs: number): Promise<void> {
    const index = this.keys.banIndex;
    await Promise.all([
      this.client.zadd(index, until, address),
      // NX gives a new index its first TTL; GT extends it and never shortens it
      this.client.pexpire(index, durationMs, 'NX'),
      this.client.pexpire(index, durationMs, 'GT'),
    ]);
  }
}

/** Config validation is the first line; this one keeps a bad policy from reaching the scripts as nonsense. */
export function checkPolicy(policy: PolicyParams): PolicyParams {
  const positive: Array<[string, number]> = [
    ['maxretry', policy.maxretry], ['findtime', policy.findtimeMs], ['bantime', policy.bantimeMs],
    ['history.ttl', policy.historyTtlMs], ['increment.maxtime', policy.increment.maxtimeMs],
    ['offender.maxretry', policy.offenderMaxretry], ['scanner.maxretry', policy.scanner.maxretry],
    ['scanner.findtime', policy.scanner.findtimeMs], ['trust.ttl', policy.trust.ttlMs], ['trust.maxretry', policy.trust.maxretry],
    ['recidive.maxretry', policy.recidive.maxretry], ['recidive.findtime', policy.recidive.findtimeMs],
    ['recidive.bantime', policy.recidive.bantimeMs],
  ];
  for (const [name, v] of positive) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`invalid policy ${name}: ${v}`);
  }
  if (!Number.isFinite(policy.increment.factor) || policy.increment.factor < 1) {
    throw new RangeError(`invalid policy increment.factor: ${policy.increment.factor}`);
  }
  if (!Number.isSafeInteger(policy.increment.rndtimeMs) || policy.increment.rndtimeMs < 0) {
    throw new RangeError(`invalid policy increment.rndtime: ${policy.increment.rndtimeMs}`);
  }
  return policy;
}

/** The ban block of the scripts, with a fresh jitter draw (fail2ban's bantime.rndtime). */
export function banRule(p: PolicyParams, node: string): BanRule {
  return {
    bantimeMs: p.bantimeMs, factor: p.increment.factor, maxtimeMs: p.increment.maxtimeMs,
    jitterMs: p.increment.rndtimeMs > 0 ? Math.floor(Math.random() * (p.increment.rndtimeMs + 1)) : 0,
    recidiveMaxretry: p.recidive.maxretry, recidiveFindtimeMs: p.recidive.findtimeMs,
    recidiveBantimeMs: p.recidive.bantimeMs, historyTtlMs: p.historyTtlMs, historyCap: HISTORY_CAP, node,
  };
}

function checkTime(now: number): void {
  if (!Number.isSafeInteger(now)) throw new RangeError(`invalid time ${now}`);
}

/** Checks what both stores rely on: integer ms (they are written into entries and JSON as digits) and weight. */
export function checkFailure(input: FailureInput): void {
  if (!Number.isSafeInteger(input.now)) throw new RangeError(`invalid time ${input.now}`);
  if (!Number.isSafeInteger(input.weight) || input.weight < 1) throw new RangeError(`invalid weight ${input.weight}`);
}

export function checkManualBan(input: ManualBanInput): void {
  if (!Number.isSafeInteger(input.now)) throw new RangeError(`invalid time ${input.now}`);
  if (!Number.isSafeInteger(input.durationMs) || input.durationMs < 1) {
    throw new RangeError(`invalid ban duration ${input.durationMs}`);
  }
}

function num(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function parseHistoryEntry(json: string): HistoryEntry | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.at !== 'number') return null;
  return {
    at: o.at,
    until: typeof o.until === 'number' ? o.until : o.at,
    reason: typeof o.reason === 'string' ? o.reason : 'failures',
    node: typeof o.node === 'string' ? o.node : '',
  };
}
