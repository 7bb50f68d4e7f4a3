// Pure decisions about single events: what an event means for its address. The windows, thresholds and bans are
// decided atomically in the store (a Lua script on Redis) with the parameters derived here, so every node of a
// fleet decides the same way.
import type { SecurityEvent } from '../events/types.js';
import type { PolicyParams } from '../store/store.js';
import { unbannableReason } from '../net/ip.js';
import { IgnoreList } from './ignore-list.js';
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

/** Services whose SuccessfulAuth with a password proves a real phone (AMI logins only when policy.trust.ami). */
const PHONE_SERVICES = new Set(['PJSIP', 'SIP', 'IAX2']);

export class Policy {
  readonly ignore: IgnoreList;
  readonly params: PolicyParams;
  readonly weights: Readonly<Record<string, number>>;
  private readonly trustAmi: boolean;

  constructor(cfg: AppConfig['policy']) {
    this.ignore = new IgnoreList(cfg.ignoreip);
    this.weights = { ...DEFAULT_WEIGHTS, ...cfg.weights };
    this.trustAmi = cfg.trust.ami;
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
    };
  }

  /** The weight of a kind (0: informational). */
  weight(kind: string): number {
    return Object.hasOwn(this.weights, kind) ? this.weights[kind]! : 0;
  }

  decide(event: SecurityEvent): EventDecision {
    // an ignored address is not even counted: a later change of ignoreip must not find a loaded counter
    if (this.ignore.has(event.address)) return { action: 'skip', why: 'ignored' };
    if (unbannableReason(event.address)) return { action: 'skip', why: 'unbannable' };
    if (event.kind === 'ChallengeSent') return { action: 'challenge' };
    if (event.kind === 'SuccessfulAuth') {
      const phone = PHONE_SERVICES.has(event.service) && event.usingPassword;
      return { action: 'success', trust: phone || (this.trustAmi && event.service === 'AMI') };
    }
    const weight = this.weight(event.kind);
    if (weight === 0) return { action: 'skip', why: 'not-a-failure' };
    return { action: 'count', weight };
  }
}
