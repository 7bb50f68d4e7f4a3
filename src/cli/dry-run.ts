// The decisions of `ami-guard replay`: batches of security events and injection reports (from an AMI recording or a
// security log) through the daemon's decider and the embedded store's rules, on the recording's own clock (EventTV).
// Like the daemon, an address already banned is not counted again, and an injection's genuine source is banned at
// once for policy.injection.bantime. Each decision can be shown as it is taken (`replay --verbose`).
import type { AppConfig } from '../config/schema.js';
import type { IntakeBatch } from '../events/intake.js';
import type { Injection, SecurityEvent } from '../events/types.js';
import { Policy } from '../policy/policy.js';
import { StreamDecider } from '../policy/same-request.js';
import { NeverBan } from '../policy/never-ban.js';
import { MemoryStore } from '../store/memory-store.js';
import type { BanRecord } from '../store/store.js';
import type { IpTarget } from '../net/ip.js';
import { singleActivity } from '../daemon/fold.js';
import { isoTime } from './output.js';

export interface AddressReport {
  address: string;
  /** what it was counted toward, when not itself: its IPv6 prefix (policy.ipv6prefix) */
  countedAs?: string;
  /** banned: the ban that covers it, when not its own (its prefix's or its subnet's) */
  bannedAs?: string;
  /** well-formed security events by kind */
  events: Record<string, number>;
  /** failures counted against it (weights included), not those that came while it was banned */
  counted: number;
  verdict: 'banned' | 'not banned' | 'ignored';
  /** the first ban */
  bannedAt: string | null;
  /** failures counted when the ban fell */
  countAtBan: number | null;
  reason: string | null;
}

/** One decision, as `replay --verbose` shows it. */
export type Decision = EventDecision | InjectionDecision;

export interface EventDecision {
  readonly type: 'event';
  /** EventTV */
  readonly time: string;
  readonly kind: string;
  readonly service: string;
  readonly address: string;
  /** what the event counted toward, when not its address: the address's IPv6 prefix */
  readonly target?: string;
  /** attacker text: control characters already replaced; escape again for a terminal */
  readonly account: string;
  readonly decision: 'counted' | 'challenge' | 'login' | 'skipped' | 'banned';
  /** banned: what was banned, when not `target` (or the address): the address inside a network holding a trusted one */
  readonly banned?: string;
  /** banned: the subnet this ban escalated into, and the bans that led to it */
  readonly subnet?: string;
  readonly members?: readonly string[];
  /** counted, challenge: the address's count in its window after this event; banned: when the ban fell */
  readonly count?: number;
  /** the count that bans: maxretry, or the trusted, known offender or scanner threshold */
  readonly threshold?: number;
  /** counted: `trusted` or `known offender` when those thresholds apply; skipped: why */
  readonly why?: string;
  /** counted: a weight above 1 */
  readonly weight?: number;
  /** banned: failures, scanner, recidive */
  readonly reason?: string;
  /** banned, skipped because banned: until when */
  readonly until?: string;
  /** banned: how long */
  readonly bantime?: number;
  /** login: the address is trusted from now */
  readonly trusted?: boolean;
}

export interface InjectionDecision {
  readonly type: 'injection';
  readonly time: string;
  /** the kind of the event that carried it; '' for a fragment */
  readonly kind: string;
  /** how it showed itself */
  readonly sign: string;
  /** its genuine source; null when it could not be told */
  readonly address: string | null;
  readonly account: string;
  readonly decision: 'banned' | 'skipped' | 'unattributed';
  readonly why?: string;
  readonly reason?: string;
  readonly until?: string;
  readonly bantime?: number;
}

export class DryRun {
  readonly policy: Policy;
  /** security events decided, and injections */
  securityEvents = 0;
  injections = 0;
  private readonly decider: StreamDecider;
  private readonly store: MemoryStore;
  private readonly injectionBantimeMs: number;
  private readonly byAddress = new Map<string, AddressReport>();
  /** the first ban of each target (addresses, prefixes, subnets), for the report of the addresses it covers */
  private readonly bans = new Map<string, BanRecord>();
  /** address → the subnet its counting target escalates into */
  private readonly subnets = new Map<string, string>();
  /** the recording's clock: the latest EventTV seen */
  private clock = 0;

  constructor(
    cfg: AppConfig,
    private readonly show?: (d: Decision) => void | Promise<void>,
  ) {
    this.policy = new Policy(cfg.policy);
    this.decider = new StreamDecider(this.policy);
    this.store = new MemoryStore({ nodeId: 'replay', policy: this.policy.params, clock: () => this.clock });
    this.injectionBantimeMs = cfg.policy.injection.bantime;
  }

  /** Everything about one batch decided, in order: its events, then its injections (as the daemon does). */
  async apply(batch: IntakeBatch): Promise<void> {
    for (const e of batch.events) await this.event(e);
    for (const inj of batch.injections) await this.injection(inj);
  }

  /** the recording's clock: the latest EventTV decided on */
  get now(): number {
    return this.clock;
  }

  addresses(): AddressReport[] {
    // an address that was never banned itself is banned by its prefix's or its subnet's ban, if one fell
    for (const a of this.byAddress.values()) {
      if (a.verdict !== 'not banned') continue;
      const subnet = this.subnets.get(a.address);
      for (const by of [a.countedAs, subnet]) {
        const ban = by === undefined ? undefined : this.bans.get(by);
        if (!ban) continue;
        this.banned(a, ban);
        a.bannedAs = by;
        break;
      }
    }
    return [...this.byAddress.values()].sort((x, y) => x.address.localeCompare(y.address));
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  private entry(address: string): AddressReport {
    let a = this.byAddress.get(address);
    if (!a) {
      a = { address, events: {}, counted: 0, verdict: 'not banned', bannedAt: null, countAtBan: null, reason: null };
      this.byAddress.set(address, a);
    }
    return a;
  }

  private async event(e: SecurityEvent): Promise<void> {
    this.securityEvents++;
    this.clock = Math.max(this.clock, e.eventTime ?? this.clock);
    const now = this.clock;
    const a = this.entry(e.address.text);
    a.events[e.kind] = (a.events[e.kind] ?? 0) + 1;
    const base = {
      type: 'event',
      time: isoTime(e.eventTime ?? now),
      kind: e.kind,
      service: e.service,
      address: e.address.text,
      account: e.accountId,
    } as const;
    const d = this.decider.decide(e);
    if (d.action === 'skip') {
      if (d.why === 'ignored' || d.why === 'unbannable') a.verdict = a.verdict === 'banned' ? a.verdict : 'ignored';
      await this.show?.({ ...base, decision: 'skipped', why: this.skipWhy(d.why, e) });
      return;
    }
    const target = this.policy.countingTarget(e.address);
    const counted = target === e.address ? base : { ...base, target: target.text };
    if (target !== e.address) a.countedAs = target.text;
    const subnet = this.policy.subnetOf(target);
    if (subnet) this.subnets.set(a.address, subnet.text);
    // the daemon remembers its bans and spends nothing on the events of what they cover (the kernel drops them)
    const ban = await this.covering([e.address, target, subnet], now);
    if (ban) {
      await this.show?.({ ...counted, decision: 'skipped', why: 'already banned', until: isoTime(ban.until) });
      return;
    }
    const threshold = d.action === 'count' ? await this.failureThreshold(target) : null;
    if (d.action === 'count') a.counted += d.weight;
    const [v] = await this.store.recordActivity([singleActivity(target, d, e, now, (t) => this.policy.subnetOf(t))], now);
    if (v?.type === 'banned') {
      this.remember(v.ban);
      if (v.subnet) this.remember(v.subnet.ban);
      if (v.ban.address === a.address) this.banned(a, v.ban);
      await this.show?.({
        ...counted,
        decision: 'banned',
        count: v.ban.count,
        reason: v.ban.reason,
        until: isoTime(v.ban.until),
        bantime: v.ban.until - v.ban.bannedAt,
        ...(v.target && v.target !== target ? { banned: v.target.text } : {}),
        ...(v.subnet ? { subnet: v.subnet.target.text, members: v.subnet.ban.members ?? [] } : {}),
      });
      return;
    }
    if (d.action === 'success') {
      await this.show?.({ ...counted, decision: 'login', ...(d.trust ? { trusted: true } : {}) });
      return;
    }
    const count = v?.type === 'counted' ? v.count : 0;
    if (d.action === 'challenge') {
      await this.show?.({ ...counted, decision: 'challenge', count, threshold: this.policy.params.scanner.maxretry });
      return;
    }
    await this.show?.({
      ...counted,
      decision: 'counted',
      count,
      threshold: threshold!.value,
      ...(threshold!.why ? { why: threshold!.why } : {}),
      ...(d.action === 'count' && d.weight > 1 ? { weight: d.weight } : {}),
    });
  }

  /** The count that bans this target now, as the store decides it: trusted higher, known offender lower. */
  private async failureThreshold(target: IpTarget): Promise<{ value: number; why?: string }> {
    const p = this.policy.params;
    if ((await this.store.trustedUntil(target, this.clock)) !== null) {
      return { value: p.trust.maxretry, why: target.kind === 'prefix' ? 'holds a trusted address' : 'trusted' };
    }
    if ((await this.store.history(target)).length > 0) return { value: Math.min(p.maxretry, p.offenderMaxretry), why: 'known offender' };
    return { value: p.maxretry };
  }

  /** The ban in force of the first of `targets` that has one (an address, its prefix, its subnet). */
  private async covering(targets: ReadonlyArray<IpTarget | null>, now: number): Promise<BanRecord | null> {
    for (const t of targets) {
      const ban = t ? await this.store.getBan(t, now) : null;
      if (ban) return ban;
    }
    return null;
  }

  private remember(ban: BanRecord): void {
    if (!this.bans.has(ban.address)) this.bans.set(ban.address, ban);
  }

  private skipWhy(why: string, e: SecurityEvent): string {
    switch (why) {
      case 'ignored':
        return 'in policy.ignoreip';
      case 'unbannable': {
        const r = this.policy.neverBan.reason(e.address);
        return r ? `never banned: ${NeverBan.describe(e.address, r)}` : 'never banned';
      }
      case 'same-request':
        return 'the same request as the FailedACL before it';
      default:
        return 'not a failure';
    }
  }

  private banned(a: AddressReport, ban: BanRecord): void {
    if (a.verdict === 'banned') return;
    a.verdict = 'banned';
    a.bannedAt = isoTime(ban.bannedAt);
    a.countAtBan = ban.reason === 'injection' ? null : ban.count;
    a.reason = ban.reason;
  }

  private async injection(inj: Injection): Promise<void> {
    this.injections++;
    this.clock = Math.max(this.clock, inj.receivedAt);
    const base = { type: 'injection', time: isoTime(this.clock), kind: inj.kind, sign: inj.sign, account: inj.account } as const;
    if (!inj.source) {
      await this.show?.({ ...base, address: null, decision: 'unattributed' });
      return;
    }
    const target = inj.source;
    const a = this.entry(target.text);
    const refusal = this.policy.refusal(target);
    if (refusal) {
      if (a.verdict !== 'banned') a.verdict = 'ignored';
      await this.show?.({ ...base, address: target.text, decision: 'skipped', why: refusal });
      return;
    }
    const existing = await this.store.getBan(target, this.clock);
    if (existing) {
      await this.show?.({ ...base, address: target.text, decision: 'skipped', why: 'already banned', until: isoTime(existing.until) });
      return;
    }
    const ban = await this.store.ban({
      target,
      reason: 'injection',
      durationMs: this.injectionBantimeMs,
      now: this.clock,
      note: `${inj.sign} in ${inj.kind || 'a fragment'}`,
    });
    this.remember(ban);
    this.banned(a, ban);
    await this.show?.({
      ...base,
      address: target.text,
      decision: 'banned',
      reason: ban.reason,
      until: isoTime(ban.until),
      bantime: ban.until - ban.bannedAt,
    });
  }
}
