// Folds the decided events of one batch into one entry per counting target: a flood from one address (or from one
// IPv6 prefix, however many addresses it uses) becomes one store update, and what grows with the load is the number
// of distinct targets waiting, which is bounded.
import type { SecurityEvent } from '../events/types.js';
import type { IpAddress, IpPrefix, IpTarget } from '../net/ip.js';
import type { EventDecision } from '../policy/policy.js';
import type { TargetActivity } from '../store/store.js';

/**
 * One target's events while they wait for the store. Under a flood from many sources the fold holds one of these per
 * source, up to `pipeline.maxPending` (100k by default), so it keeps no more than it must: the event kinds as one kind
 * and its count (nearly every target fails one way), a record of the others only when a second kind comes, and the
 * sending address only for a network, the one target whose ban may fall on its source instead. The TargetActivity
 * the store reads is made when the entry leaves, for the few hundred in flight. Times are kept as ms after the fold's
 * first event: a small integer is stored in the entry itself, where a time since the epoch takes a heap number each.
 */
class Entry {
  failures = 0;
  kind = '';
  kindCount = 0;
  otherKinds: Record<string, number> | undefined = undefined;
  account = '';
  challenges = 0;
  successes = 0;
  trust = false;
  /** ms after the fold's base, as `first` */
  last: number;
  source: IpAddress | undefined = undefined;
  subnet: IpPrefix | undefined = undefined;

  constructor(
    readonly target: IpTarget,
    /** ms after the fold's base */
    readonly first: number,
  ) {
    this.last = first;
  }

  countKind(kind: string): void {
    if (this.kindCount === 0 || kind === this.kind) {
      this.kind = kind;
      this.kindCount++;
      return;
    }
    this.otherKinds ??= {};
    this.otherKinds[kind] = (this.otherKinds[kind] ?? 0) + 1;
  }

  activity(base: number): TargetActivity {
    // in the order they came, as the ban record lists them
    const kinds: Record<string, number> = {};
    if (this.kindCount > 0) kinds[this.kind] = this.kindCount;
    if (this.otherKinds) Object.assign(kinds, this.otherKinds);
    return {
      target: this.target,
      failures: this.failures,
      kinds,
      account: this.account,
      challenges: this.challenges,
      successes: this.successes,
      trust: this.trust,
      first: base + this.first,
      last: base + this.last,
      ...(this.source ? { source: this.source } : {}),
      ...(this.subnet ? { subnet: this.subnet } : {}),
    };
  }
}

/** The subnet a ban of a target would escalate into, or null (Policy.subnetOf). */
export type SubnetOf = (target: IpTarget) => IpPrefix | null;

export class ActivityFold {
  private entries = new Map<string, Entry>();
  /** the time entries count from (the first event's) */
  private base: number | undefined;

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
    this.base ??= event.receivedAt;
    const at = event.receivedAt - this.base;
    let e = this.entries.get(target.text);
    if (!e) {
      e = new Entry(target, at);
      const subnet = this.subnetOf(target);
      if (subnet) e.subnet = subnet;
      this.entries.set(target.text, e);
    }
    if (at > e.last) e.last = at;
    // A network holding a trusted address has its source banned instead: the sender of the last failure, or of the
    // last challenge when there was none, never a phone's login.
    const network = target.kind === 'prefix';
    switch (decision.action) {
      case 'count':
        e.failures += decision.weight;
        e.countKind(event.kind);
        e.account = event.accountId;
        if (network) e.source = event.address;
        return;
      case 'challenge':
        e.challenges++;
        if (network && e.failures === 0) e.source = event.address;
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
      out.push(e.activity(this.base!));
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
