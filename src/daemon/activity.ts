// Bridge until the store records folded batches itself (Store.recordActivity): applies a batch target by target
// through the single-event calls, in the order the batch contract gives (challenges, logins, failures).
import type { FailureVerdict, Store } from '../store/store.js';
import type { IpTarget } from '../net/ip.js';

export interface TargetActivity {
  readonly target: IpTarget;
  readonly failures: number;
  readonly kinds: Readonly<Record<string, number>>;
  readonly account: string;
  readonly challenges: number;
  readonly successes: number;
  readonly trust: boolean;
  readonly first: number;
  readonly last: number;
}

export async function recordActivity(store: Store, batch: readonly TargetActivity[], now: number): Promise<FailureVerdict[]> {
  return Promise.all(batch.map(async (a): Promise<FailureVerdict> => {
    if (a.target.kind !== 'address') throw new Error('network targets need the batch store');
    const address = a.target;
    let verdict: FailureVerdict = { type: 'counted', count: 0 };
    for (let i = 0; i < a.challenges; i++) {
      verdict = await store.recordChallenge({ address, now });
      if (verdict.type !== 'counted') return verdict;
    }
    for (let i = 0; i < a.successes; i++) await store.recordSuccess({ address, now, trust: a.trust });
    for (const [kind, n] of Object.entries(a.kinds)) {
      for (let i = 0; i < n; i++) {
        verdict = await store.recordFailure({ address, kind, account: a.account, weight: Math.max(1, Math.round(a.failures / totalOf(a.kinds))), now });
        if (verdict.type !== 'counted') return verdict;
      }
    }
    return verdict;
  }));
}

function totalOf(kinds: Readonly<Record<string, number>>): number {
  let n = 0;
  for (const k in kinds) n += kinds[k]!;
  return n || 1;
}
