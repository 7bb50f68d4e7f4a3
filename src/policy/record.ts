import type { SecurityEvent } from '../events/types.js';
import type { FailureVerdict, Store } from '../store/store.js';
import type { EventDecision } from './policy.js';

/**
 * Hands one decided event to the store: the one place where a decision becomes a store call, shared by the daemon
 * and the `replay` dry run so both apply the same rules. `now` is the receiving node's clock (the daemon) or the
 * recording's (replay). Resolves to the store's verdict, or null for an event that cannot ban (a login).
 */
export async function recordEvent(
  store: Store,
  event: SecurityEvent,
  decision: Exclude<EventDecision, { action: 'skip' }>,
  now: number,
): Promise<FailureVerdict | null> {
  switch (decision.action) {
    case 'count':
      return store.recordFailure({ address: event.address, kind: event.kind, account: event.accountId, weight: decision.weight, now });
    case 'challenge':
      return store.recordChallenge({ address: event.address, now });
    case 'success':
      await store.recordSuccess({ address: event.address, now, trust: decision.trust });
      return null;
  }
}
