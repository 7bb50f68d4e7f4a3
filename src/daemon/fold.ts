// Folds the decided events of one batch into one entry per counting target: a flood from one address becomes one
// store update, and what grows with the load is the number of distinct targets waiting, which is bounded.
import type { SecurityEvent } from '../events/types.js';
import type { IpTarget } from '../net/ip.js';
import type { EventDecision } from '../policy/policy.js';
import type { TargetActivity } from '../store/store.js';

interface Entry {
  target: IpTarget;
  failures: number;
  kinds: Record<string, number>;
  account: string;
  challenges: number;
  successes: number;
  trust: boolean;
  first: number;
  last: number;
}

export class ActivityFold {
  private entries = new Map<string, Entry>();

  get size(): number {
    return this.entries.size;
  }

  has(target: IpTarget): boolean {
    return this.entries.has(target.text);
  }

  add(target: IpTarget, decision: Exclude<EventDecision, { action: 'skip' }>, event: SecurityEvent): void {
    let e = this.entries.get(target.text);
    if (!e) {
      e = { target, failures: 0, kinds: {}, account: '', challenges: 0, successes: 0, trust: false, first: event.receivedAt, last: event.receivedAt };
      this.entries.set(target.text, e);
    }
    if (event.receivedAt > e.last) e.last = event.receivedAt;
    switch (decision.action) {
      case 'count':
        e.failures += decision.weight;
        e.kinds[event.kind] = (e.kinds[event.kind] ?? 0) + 1;
        e.account = event.accountId;
        return;
      case 'challenge':
        e.challenges++;
        return;
      case 'success':
        e.successes++;
        if (decision.trust) e.trust = true;
        return;
    }
  }

  /** Takes up to `max` entries, oldest first. */
  take(max: number): TargetActivity[] {
    const out: TargetActivity[] = [];
    for (const [key, e] of this.entries) {
      if (out.length >= max) break;
      out.push(e);
      this.entries.delete(key);
    }
    return out;
  }
}

/** One event as a batch entry of its own: what the dry run records, one event at a time, on the recording's clock. */
export function singleActivity(target: IpTarget, decision: Exclude<EventDecision, { action: 'skip' }>, event: SecurityEvent, now: number): TargetActivity {
  const fold = new ActivityFold();
  fold.add(target, decision, { ...event, receivedAt: now });
  return fold.take(1)[0]!;
}
