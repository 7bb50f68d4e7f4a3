// Folds the decided events of one batch into one entry per counting target: a flood from one address (or from one
// IPv6 prefix, however many addresses it uses) becomes one store update, and what grows with the load is the number
// of distinct targets waiting, which is bounded.
import type { SecurityEvent } from '../events/types.js';
import type { IpAddress, IpPrefix, IpTarget } from '../net/ip.js';
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
  source: IpAddress;
  subnet?: IpPrefix;
}

/** The subnet a ban of a target would escalate into, or null (Policy.subnetOf). */
export type SubnetOf = (target: IpTarget) => IpPrefix | null;

export class ActivityFold {
  private entries = new Map<string, Entry>();

  /** asked once per entry, not per event */
  constructor(private readonly subnetOf: SubnetOf = () => null) {}

  get size(): number {
    return this.entries.size;
  }

  has(target: IpTarget): boolean {
    return this.entries.has(target.text);
  }

  /** One event counted toward `target`: its own address, or the network that address is counted in. */
  add(target: IpTarget, decision: Exclude<EventDecision, { action: 'skip' }>, event: SecurityEvent): void {
    let e = this.entries.get(target.text);
    if (!e) {
      e = {
        target,
        failures: 0,
        kinds: {},
        account: '',
        challenges: 0,
        successes: 0,
        trust: false,
        first: event.receivedAt,
        last: event.receivedAt,
        source: event.address,
      };
      const subnet = this.subnetOf(target);
      if (subnet) e.subnet = subnet;
      this.entries.set(target.text, e);
    }
    if (event.receivedAt > e.last) e.last = event.receivedAt;
    // The source is what is banned instead of a network that holds a trusted address: the sender of the last
    // failure, or of the last challenge when there was none, never a phone's login.
    switch (decision.action) {
      case 'count':
        e.failures += decision.weight;
        e.kinds[event.kind] = (e.kinds[event.kind] ?? 0) + 1;
        e.account = event.accountId;
        e.source = event.address;
        return;
      case 'challenge':
        e.challenges++;
        if (e.failures === 0) e.source = event.address;
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

/**
 * One event as a batch entry of its own, counted toward `target` (its address, or its network): what the dry run
 * records, one event at a time, on the recording's clock.
 */
export function singleActivity(
  target: IpTarget,
  decision: Exclude<EventDecision, { action: 'skip' }>,
  event: SecurityEvent,
  now: number,
  subnetOf?: SubnetOf,
): TargetActivity {
  const fold = new ActivityFold(subnetOf);
  fold.add(target, decision, { ...event, receivedAt: now });
  return fold.take(1)[0]!;
}
