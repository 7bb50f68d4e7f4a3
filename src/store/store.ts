// The Store seam: everything ami-guard remembers (failure windows, bans, history) lives behind this interface.
// Implemented by Redis (shared by a fleet) and by the embedded in-process store (one PBX, nothing persisted).
import type { IpAddress, IpTarget } from '../net/ip.js';

export interface PolicyParams {
  /** failures within findtime that trigger a ban */
  readonly maxretry: number;
  readonly findtimeMs: number;
  readonly bantimeMs: number;
  /** how long an address's ban history is kept */
  readonly historyTtlMs: number;
}

export interface FailureInput {
  readonly address: IpAddress;
  readonly kind: string;
  /** attacker-controlled, stored as data only (already truncated by the normaliser) */
  readonly account: string;
  /** how many failures this event counts for (integer >= 1) */
  readonly weight: number;
  /** ms since the epoch */
  readonly now: number;
}

export interface BanRecord {
  /** canonical address or network (IpTarget.text) */
  readonly address: string;
  /** `failures`, `manual`, … */
  readonly reason: string;
  /** failures by kind counted in the window that led to the ban */
  readonly kinds: Record<string, number>;
  /** failures counted at the moment of the ban */
  readonly count: number;
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly bannedAt: number;
  readonly until: number;
  /** node.id of the PBX that made the ban */
  readonly node: string;
  /** bans of this address in its history before this one */
  readonly previousBans: number;
  /** the operator's words for a manual ban (`ami-guard ban --reason`) */
  readonly note?: string;
}

/** One failure in an address's current window. */
export interface RecentFailure {
  readonly at: number;
  readonly kind: string;
  /** attacker-controlled, data only */
  readonly account: string;
}

export interface HistoryEntry {
  readonly at: number;
  readonly until: number;
  readonly reason: string;
  readonly node: string;
}

export type FailureVerdict =
  | { readonly type: 'counted'; readonly count: number }
  | { readonly type: 'banned'; readonly ban: BanRecord }
  | { readonly type: 'already-banned'; readonly until: number };

/** What reconciliation needs of a ban: what to block and until when. */
export interface ActiveBan {
  readonly address: string;
  readonly until: number;
}

export interface ManualBanInput {
  readonly target: IpTarget;
  readonly reason: string;
  readonly durationMs: number;
  readonly now: number;
  readonly note?: string;
}

export interface Store {
  readonly kind: 'redis' | 'memory';
  /** records one failure atomically and decides: counted, banned now, or already banned */
  recordFailure(input: FailureInput): Promise<FailureVerdict>;
  /** a ban decided outside the failure counter (operator, later rules); replaces an existing ban of the target */
  ban(input: ManualBanInput): Promise<BanRecord>;
  /** removes the ban and resets the failure window; history stays. Returns whether a ban existed. */
  unban(target: IpTarget): Promise<boolean>;
  getBan(target: IpTarget, now: number): Promise<BanRecord | null>;
  history(target: IpTarget): Promise<HistoryEntry[]>;
  /** the failures in the target's current window, newest first */
  recentFailures(target: IpTarget): Promise<RecentFailure[]>;
  /** active bans (until > now), a page at a time, so 100k bans never sit in one reply */
  activeBans(now: number): AsyncIterable<ActiveBan[]>;
  /** one round trip to the store; resolves with its time in ms (health check and latency metric) */
  ping(): Promise<number>;
  close(): Promise<void>;
}
