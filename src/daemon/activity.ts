// The daemon's folded batch, handed to the store as it is: Store.recordActivity records it in one call (one per
// Cluster master) and answers one verdict per entry. Kept as the daemon's seam so its callers need no change.
import type { FailureVerdict, Store, TargetActivity } from '../store/store.js';

export type { TargetActivity } from '../store/store.js';

export function recordActivity(store: Store, batch: readonly TargetActivity[], now: number): Promise<FailureVerdict[]> {
  return store.recordActivity(batch, now);
}
