// The Firewall seam, shaped like the CrowdSec bouncer's backends: init, add, delete, reconcile, commit, shutdown.
import type { IpTarget } from '../net/ip.js';

export interface FirewallBan {
  readonly target: IpTarget;
  /** remaining ban time; becomes the element's kernel timeout so the ban expires even while we are down */
  readonly timeoutMs: number;
}

export interface FirewallElement {
  /** canonical address or network */
  readonly address: string;
  /** the same, as the IP parser made it when the listing was read */
  readonly target: IpTarget;
  readonly family: 4 | 6;
  /** remaining time as the kernel reports it, ms (null if the element has no timeout) */
  readonly expiresMs: number | null;
}

export interface ReconcileResult {
  readonly added: number;
  readonly removed: number;
  readonly total: number;
  /** the elements the reconciliation took out of the sets (those in force before it that the bans left out) */
  readonly removedTargets: readonly IpTarget[];
}

export interface Firewall {
  /** creates our table, sets and chain if missing (idempotent); throws a clear error when nft is unusable */
  init(): Promise<void>;
  /** queues bans; resolves once they are in the kernel (batched with whatever else is queued) */
  add(bans: readonly FirewallBan[]): Promise<void>;
  /** removes elements; absent ones are not an error */
  delete(targets: readonly IpTarget[]): Promise<void>;
  /**
   * makes the sets hold exactly these bans, with refreshed timeouts, in one atomic transaction; `at` is when the
   * bans' timeouts were counted from (default: now), so an element ending in time can be told apart
   */
  reconcile(bans: readonly FirewallBan[], at?: number): Promise<ReconcileResult>;
  /**
   * bans the reconciliation that follows will be given, handed over while the store is still being read, so that a
   * firewall whose sets are known to be empty can start writing them; the reconciliation still decides what stays
   */
  preload?(bans: readonly FirewallBan[]): void;
  /** resolves when everything queued so far has been applied */
  commit(): Promise<void>;
  /** what the kernel sets hold now */
  list(): Promise<FirewallElement[]>;
  /** whether our table, both sets and the drop chain exist */
  present(): Promise<boolean>;
  /** flushes queued work; leaves the table and its elements in the kernel */
  shutdown(): Promise<void>;
}
