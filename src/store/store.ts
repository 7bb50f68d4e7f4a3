// The Store seam: everything ami-guard remembers (failure windows, bans, history) lives behind this interface.
// Implemented by Redis (shared by a fleet) and by the embedded in-process store (one PBX, its bans, history and trust
// kept in a state file).
import type { IpAddress, IpPrefix, IpTarget } from '../net/ip.js';

export interface PolicyParams {
  /** failures within findtime that trigger a ban */
  readonly maxretry: number;
  readonly findtimeMs: number;
  readonly bantimeMs: number;
  /** how long an address's ban history is kept */
  readonly historyTtlMs: number;
  /** fail2ban's bantime.increment: bantime x factor^(earlier bans), capped at maxtime, plus up to rndtime */
  readonly increment: { readonly factor: number; readonly maxtimeMs: number; readonly rndtimeMs: number };
  /** threshold for an address with ban history (a known offender): fewer failures ban it */
  readonly offenderMaxretry: number;
  /** unanswered challenges within findtime that make an address a silent scanner */
  readonly scanner: { readonly maxretry: number; readonly findtimeMs: number };
  /** a successful login trusts its address this long, with this (higher) failure threshold */
  readonly trust: { readonly ttlMs: number; readonly maxretry: number };
  /** the recidive jail: the maxretry-th ban within findtime lasts bantime */
  readonly recidive: { readonly maxretry: number; readonly findtimeMs: number; readonly bantimeMs: number };
  /**
   * Subnet escalation: the maxbans-th ban of a subnet's addresses or prefixes within findtime bans the subnet for
   * bantime (maxbans 0: off). Which subnet a target belongs to is the caller's (TargetActivity.subnet).
   */
  readonly subnet: { readonly maxbans: number; readonly bantimeMs: number };
  /** what one failure event weighs at most (policy.weights); a target this close to its threshold is on the brink. Default 1 */
  readonly heaviestWeight?: number;
}

/** Defaults for the rules beyond maxretry/findtime/bantime (the config's defaults; tests build on them). */
export const DEFAULT_RULES: Pick<PolicyParams, 'increment' | 'offenderMaxretry' | 'scanner' | 'trust' | 'recidive' | 'subnet'> = {
  increment: { factor: 2, maxtimeMs: 604_800_000, rndtimeMs: 0 },
  offenderMaxretry: 3,
  scanner: { maxretry: 10, findtimeMs: 60_000 },
  trust: { ttlMs: 86_400_000, maxretry: 10 },
  recidive: { maxretry: 5, findtimeMs: 86_400_000, bantimeMs: 604_800_000 },
  subnet: { maxbans: 0, bantimeMs: 86_400_000 },
};

export interface ChallengeInput {
  readonly address: IpAddress;
  readonly now: number;
}

export interface SuccessInput {
  readonly address: IpAddress;
  readonly now: number;
  /** whether this login makes the address trusted (pjsip/chan_sip with a password; AMI only if configured) */
  readonly trust: boolean;
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
  /** the account id of the last failure before a threshold ban (attacker text, data only) */
  readonly account?: string;
  /** a subnet ban: the bans of its addresses or prefixes that led to it (canonical texts), oldest first */
  readonly members?: readonly string[];
}

/** One failure in an address's current window. */
export interface RecentFailure {
  readonly at: number;
  readonly kind: string;
  /** attacker-controlled, data only */
  readonly account: string;
}

/** A target counting failures toward a ban without being banned (Store.failing). */
export interface FailingTarget {
  readonly target: IpTarget;
  /** failures within findtime, weighted as counted */
  readonly failures: number;
  /** the failures that ban it: maxretry, trust.maxretry when trusted, offender.maxretry for a known offender */
  readonly threshold: number;
  /** the newest failure, ms since the epoch */
  readonly last: number;
  /** the account id of the last failure (attacker text, data only), '' when none */
  readonly account: string;
}

/** What Store.failing answers. */
export interface Failing {
  /** targets with at least one failure within findtime and no ban in force */
  readonly total: number;
  /** the `limit` of them with the most failures, the most recent first among equals */
  readonly top: FailingTarget[];
  /** set when the answer comes from this node's local fallback store while Redis is unreachable */
  readonly local?: true;
}

export interface HistoryEntry {
  readonly at: number;
  readonly until: number;
  readonly reason: string;
  readonly node: string;
}

/** A subnet banned because enough of its addresses or prefixes were (policy.subnet.*). */
export interface SubnetBan {
  readonly target: IpPrefix;
  readonly ban: BanRecord;
}

/**
 * A counted target this close to its threshold: failures weighing `remaining` more, before `until` (when the oldest
 * failure counted leaves findtime), ban it, whatever else happens to it. Reported only when `remaining` is no more
 * than one failure may weigh (PolicyParams.heaviestWeight), and never for a trusted target, whose ban is the store's
 * to place; the daemon bans on it before the store has answered for that failure (src/daemon/early-bans.ts).
 */
export interface Brink {
  readonly remaining: number;
  readonly until: number;
}

export type FailureVerdict =
  | { readonly type: 'counted'; readonly count: number; readonly brink?: Brink }
  | {
      readonly type: 'banned';
      readonly ban: BanRecord;
      /**
       * What was banned when it is not the entry's target: the source address, when the entry's network crossed its
       * threshold while it holds a trusted address (the network itself is never banned then).
       */
      readonly target?: IpTarget;
      /** the subnet this ban escalated into */
      readonly subnet?: SubnetBan;
    }
  | { readonly type: 'already-banned'; readonly until: number; readonly target?: IpTarget };

/**
 * What one batch of events did to one counting target, folded: the daemon reads a socket chunk (up to hundreds of
 * events), decides each event, and hands the store one entry per target instead of one call per event. Within an
 * entry the store applies the challenges first, then the logins (each answers one pending challenge, and may trust
 * the target), then the failures, which is the order a phone's REGISTER produces them and never harsher on it. When
 * both the failures and the challenges of an entry cross their thresholds, the ban is for the failures: a
 * brute-forcer's ChallengeSent before each guess must not make it a `scanner`.
 */
export interface TargetActivity {
  /** what is counted and banned: an address, or a network (an IPv6 prefix) standing for its addresses */
  readonly target: IpTarget;
  /** weighted failures in this batch; 0 when there were none */
  readonly failures: number;
  /** failures by event kind in this batch (unweighted counts), for the ban record */
  readonly kinds: Readonly<Record<string, number>>;
  /** the account id of the last failure (attacker text, already sanitised and truncated), '' when none */
  readonly account: string;
  /** ChallengeSent events in this batch (the silent-scanner rule) */
  readonly challenges: number;
  /** SuccessfulAuth events in this batch */
  readonly successes: number;
  /** whether one of those logins makes the target trusted */
  readonly trust: boolean;
  /** when the first and the last of these events arrived, ms since the epoch */
  readonly first: number;
  readonly last: number;
  /**
   * The address of the last event, when `target` is a network: what is banned instead of the network when the
   * network holds a trusted address.
   */
  readonly source?: IpAddress;
  /**
   * The subnet a ban of this target counts toward (subnet escalation), when that is on and this node would allow a
   * ban of it; a trusting login marks it as holding a trusted address.
   */
  readonly subnet?: IpPrefix;
}

/** The store's answer for one TargetActivity; `counted` also stands for "nothing to do" (a login). */
export type ActivityVerdict = FailureVerdict;

/** What reconciliation needs of a ban: what to block and until when. */
export interface ActiveBan {
  /** canonical text of `target` */
  readonly address: string;
  /** parsed once where the text left the store, so no reader parses it again */
  readonly target: IpTarget;
  readonly until: number;
}

/** A ban the kernel enforces that the store is asked to hold (restoreBans). */
export interface RestoredBan {
  readonly target: IpTarget;
  readonly until: number;
}

/** What restoreBans did: bans written anew, bans in force made to last longer, bans in force already as long. */
export interface RestoreResult {
  readonly written: number;
  readonly extended: number;
  readonly covered: number;
}

/** Who a store is (see Store.identity). */
export interface StoreIdentity {
  readonly id: string;
  /** the store had none: this call gave it one (a new store, or one whose data is gone) */
  readonly created: boolean;
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
  /**
   * Records a batch of folded activity atomically per target and decides for each target: counted, banned now, or
   * already banned. One round trip per batch (per Cluster node group); verdicts come back in the batch's order.
   * `now` is the batch's clock (the receiving node's, or the recording's for replay).
   */
  recordActivity(batch: readonly TargetActivity[], now: number): Promise<ActivityVerdict[]>;
  /**
   * Who this store is: a random id written once, the first time the store is used, and never expiring. It stays the
   * same for as long as the store keeps its data; a different answer than the one seen before means the data is gone
   * (Redis restarted without persistence, FLUSHALL, a failover to an empty replica), and with it every ban it held:
   * the caller must not take the store's empty ban index for the truth (a reconciliation would lift every ban of the
   * fleet) and re-seeds it from what it enforces instead (restoreBans). Call it at start and before each
   * reconciliation. The embedded store keeps its id in its state file; without one it answers a fresh id per process,
   * which is the truth about it.
   */
  identity(): Promise<StoreIdentity>;
  /**
   * Re-seeds the store with bans it may have lost, from what the kernel enforces (a store that lost its data, the
   * embedded store at start): a target with a ban in force keeps it, made to last until `until` when that is later,
   * with no new history entry; any other gets a ban record (`reason`, this node) with one history entry. Running it
   * twice, or from every node of a fleet, adds nothing the first run did not.
   */
  restoreBans(bans: readonly RestoredBan[], reason: string, now: number): Promise<RestoreResult>;
  /** until when the target is trusted, or null */
  trustedUntil(target: IpTarget, now: number): Promise<number | null>;
  /** a ban decided outside the failure counter (operator, later rules); replaces an existing ban of the target */
  ban(input: ManualBanInput): Promise<BanRecord>;
  /**
   * Removes the ban and resets the failure window; history and trust stay. Returns whether a ban was in force at
   * `now` (default: this host's clock).
   */
  unban(target: IpTarget, now?: number): Promise<boolean>;
  getBan(target: IpTarget, now: number): Promise<BanRecord | null>;
  history(target: IpTarget): Promise<HistoryEntry[]>;
  /** the failures in the target's current window, newest first */
  recentFailures(target: IpTarget): Promise<RecentFailure[]>;
  /**
   * The targets counting failures toward a ban without being banned (`status`): how many, and the `limit` with the
   * most failures within policy findtime of `now`. Reads every window once: for an operator's question, not a hot path.
   */
  failing(now: number, limit: number): Promise<Failing>;
  /** active bans (until > now), a page at a time, so 100k bans never sit in one reply */
  activeBans(now: number): AsyncIterable<ActiveBan[]>;
  /** a reloaded policy (SIGHUP) for the decisions to come; nothing stored changes */
  setPolicy(params: PolicyParams): void;
  /** one round trip to the store; resolves with its time in ms (health check and latency metric) */
  ping(): Promise<number>;
  close(): Promise<void>;
}
