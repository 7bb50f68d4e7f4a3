// Pure decisions about single events: does this event count against its address, and how much. The window, the
// threshold and the ban itself are decided atomically in the store (a Lua script on Redis), with the parameters
// derived here, so every node of a fleet decides the same way.
import type { SecurityEvent } from '../events/types.js';
import type { PolicyParams } from '../store/store.js';
import { unbannableReason } from '../net/ip.js';
import { IgnoreList } from './ignore-list.js';
import type { AppConfig } from '../config/schema.js';

export type EventDecision =
  | { readonly action: 'count'; readonly weight: number }
  | { readonly action: 'skip'; readonly why: 'not-a-failure' | 'ignored' | 'unbannable' };

export class Policy {
  readonly ignore: IgnoreList;
  readonly params: PolicyParams;
  private readonly failures: ReadonlySet<string>;

  constructor(cfg: AppConfig['policy']) {
    this.ignore = new IgnoreList(cfg.ignoreip);
    this.failures = new Set(cfg.failures);
    this.params = {
      maxretry: cfg.maxretry,
      findtimeMs: cfg.findtime,
      bantimeMs: cfg.bantime,
      historyTtlMs: cfg.history.ttl,
    };
  }

  decide(event: SecurityEvent): EventDecision {
    if (!this.failures.has(event.kind)) return { action: 'skip', why: 'not-a-failure' };
    // an ignored address is not even counted: a later change of ignoreip must not find a loaded counter
    if (this.ignore.has(event.address)) return { action: 'skip', why: 'ignored' };
    if (unbannableReason(event.address)) return { action: 'skip', why: 'unbannable' };
    return { action: 'count', weight: 1 };
  }
}
