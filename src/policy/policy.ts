// Pure decisions about single events: what an event means for its address. The windows, thresholds and bans are
// decided atomically in the store (a Lua script on Redis) with the parameters derived here, so every node of a
// fleet decides the same way.
import type { SecurityEvent } from '../events/types.js';
import type { IpAddress, IpPrefix, IpTarget } from '../net/ip.js';
import type { PolicyParams } from '../store/store.js';
import { IgnoreList } from './ignore-list.js';
import { NeverBan } from './never-ban.js';
import { PrefixChoice } from './prefixes.js';
import { DEFAULT_WEIGHTS, type AppConfig } from '../config/schema.js';

export type SkipReason = 'not-a-failure' | 'ignored' | 'unbannable' | 'same-request';

export type EventDecision =
  /** a failure: counts `weight` against its address */
  | { readonly action: 'count'; readonly weight: number }
  /** a challenge sent: pending until a successful login answers it (the silent-scanner rule) */
  | { readonly action: 'challenge' }
  /** a successful login: answers a pending challenge, and trusts the address when `trust` */
  | { readonly action: 'success'; readonly trust: boolean }
  | { readonly action: 'skip'; readonly why: SkipReason };

const SKIP_IGNORED: EventDecision = Object.freeze({ action: 'skip', why: 'ignored' });
const SKIP_UNBANNABLE: EventDecision = Object.freeze({ action: 'skip', why: 'unbannable' });
const SKIP_NOT_FAILURE: EventDecision = Object.freeze({ action: 'skip', why: 'not-a-failure' });
const CHALLENGE: EventDecision = Object.freeze({ action: 'challenge' });
const SUCCESS: EventDecision = Object.freeze({ action: 'success', trust: false });
const SUCCESS_TRUST: EventDecision = Object.freeze({ action: 'success', trust: true });

/** Services whose SuccessfulAuth with a password proves a real phone (AMI logins only when policy.trust.ami). */
const PHONE_SERVICES = new Set(['PJSIP', 'SIP', 'IAX2']);

export class Policy {
  readonly ignore: IgnoreList;
  /** what no ban may cover, whoever asks; learns this host's addresses, gateways and services at run time */
  readonly neverBan: NeverBan;
  readonly params: PolicyParams;
  readonly weights: Readonly<Record<string, number>>;
  private readonly trustAmi: boolean;
  /** the decision for each kind that counts, made once: the hot path allocates none */
  private readonly counts = new Map<string, EventDecision>();
  private readonly prefixes: PrefixChoice;

  constructor(cfg: AppConfig['policy']) {
    this.ignore = new IgnoreList(cfg.ignoreip);
    this.neverBan = new NeverBan({ widest: cfg.widest, ignoreself: cfg.ignoreself });
    this.weights = { ...DEFAULT_WEIGHTS, ...cfg.weights };
    this.trustAmi = cfg.trust.ami;
    let heaviestWeight = 1;
    for (const [kind, weight] of Object.entries(this.weights)) {
      if (weight > 0 && kind !== 'ChallengeSent' && kind !== 'SuccessfulAuth') {
        this.counts.set(kind, Object.freeze({ action: 'count', weight }));
        heaviestWeight = Math.max(heaviestWeight, weight);
      }
    }
    this.params = {
      maxretry: cfg.maxretry,
      findtimeMs: cfg.findtime,
      bantimeMs: cfg.bantime,
      historyTtlMs: cfg.history.ttl,
      increment: { factor: cfg.increment.factor, maxtimeMs: cfg.increment.maxtime, rndtimeMs: cfg.increment.rndtime },
      offenderMaxretry: cfg.offender.maxretry,
      scanner: { maxretry: cfg.scanner.maxretry, findtimeMs: cfg.scanner.findtime },
      trust: { ttlMs: cfg.trust.ttl, maxretry: cfg.trust.maxretry },
      recidive: { maxretry: cfg.recidive.maxretry, findtimeMs: cfg.recidive.findtime, bantimeMs: cfg.recidive.bantime },
      subnet: { maxbans: cfg.subnet.maxbans, bantimeMs: cfg.subnet.bantime },
      heaviestWeight,
    };
    this.prefixes = new PrefixChoice(
      { ipv6prefix: cfg.ipv6prefix, subnet: cfg.subnet },
      (t) => this.refusal(t),
      () => this.neverBan.generation,
    );
  }

  /**
   * What an event from `address` is counted and banned as: an IPv6 address's /policy.ipv6prefix, unless a ban of
   * that prefix would be refused here (then the address itself); an IPv4 address is itself.
   */
  countingTarget(address: IpAddress): IpTarget {
    return this.prefixes.countingTarget(address);
  }

  /**
   * The subnet (policy.subnet.ipv4 / ipv6) a ban of `target` counts toward, or null: escalation is off, the target
   * is no narrower, or this node would refuse a ban of the subnet. Trust inside it is the store's to check.
   */
  subnetOf(target: IpTarget): IpPrefix | null {
    return this.prefixes.subnetOf(target);
  }

  /**
   * Why a ban of `target` may not be applied here: this node's ignore list holds for every ban, whoever made it, and
   * no ban may cover what the host needs. Null when it may.
   */
  refusal(target: IpTarget): string | null {
    const r = this.neverBan.reason(target);
    if (r) return NeverBan.describe(target, r);
    return this.ignore.covers(target) ? `${target.text} is covered by policy.ignoreip` : null;
  }

  /**
   * Every range a ban may not overlap here (the never-ban rules' and the ignore list's): refusal() refuses a target
   * exactly when it overlaps one of these or is wider than policy.widest. A feed splits its networks around them.
   */
  protectedRanges(): IpTarget[] {
    return [...this.neverBan.ranges().map((r) => r.target), ...this.ignore.targets];
  }

  /** The weight of a kind (0: informational). */
  weight(kind: string): number {
    return Object.hasOwn(this.weights, kind) ? this.weights[kind]! : 0;
  }

  decide(event: SecurityEvent): EventDecision {
    // an ignored address is not even counted: a later change of ignoreip must not find a loaded counter
    if (this.ignore.has(event.address)) return SKIP_IGNORED;
    if (this.neverBan.reason(event.address)) return SKIP_UNBANNABLE;
    if (event.kind === 'ChallengeSent') return CHALLENGE;
    if (event.kind === 'SuccessfulAuth') {
      const phone = PHONE_SERVICES.has(event.service) && event.usingPassword;
      return phone || (this.trustAmi && event.service === 'AMI') ? SUCCESS_TRUST : SUCCESS;
    }
    return this.counts.get(event.kind) ?? SKIP_NOT_FAILURE;
  }
}
