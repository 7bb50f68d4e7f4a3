// Who carries out a verb: the daemon on this host, through its control socket, whenever one runs here (it works
// with the embedded store and while Redis is down, and it announces what it does); Redis directly only when no
// daemon runs here (an admin host of the fleet). The verbs parse, check and print; an Operator does.
import type { IpTarget } from '../net/ip.js';
import type { BanRecord, HistoryEntry, RecentFailure } from '../store/store.js';
import type { FallbackState } from '../store/fallback-store.js';
import type { ActiveBanEntry, FailingView } from './records.js';
import type { Policy } from '../policy/policy.js';
import { connectControl } from '../control/client.js';
import { usesRedis } from './backends.js';
import { CliError, EXIT_FAILURE, connect, noConfigFileHint, type LoadedConfig } from './context.js';
import { DirectOperator } from './direct.js';
import { DaemonOperator } from './via-daemon.js';
import type { FeedsRead } from './feeds.js';

/** A banned network that contains the address asked about. */
export interface Covering {
  readonly network: string;
  readonly until: number;
  readonly reason?: string;
  readonly node?: string;
  readonly note?: string;
}

export interface Inspection {
  readonly target: IpTarget;
  /** the target's own ban record */
  readonly ban: BanRecord | null;
  /** through the daemon: until when it enforces the target's own ban (also when its record cannot be read) */
  readonly enforcedUntil: number | null;
  readonly failures: readonly RecentFailure[];
  readonly history: readonly HistoryEntry[];
  readonly trustedUntil: number | null;
  /** whether policy.ignoreip covers it (the daemon's, reloaded, when it answers) */
  readonly ignored: boolean;
  readonly coveredBy: readonly Covering[];
  /** what the answer comes from when it is not the store (Redis down) */
  readonly note?: string;
}

export interface UnbanResult {
  readonly address: string;
  readonly wasBanned: boolean;
  /** banned networks that still contain it */
  readonly coveredBy: readonly Covering[];
}

export interface StatusView {
  /** the daemon on this host, when it answered */
  readonly daemon?: DaemonFacts;
  readonly store: {
    readonly kind: 'redis' | 'memory';
    readonly url?: string;
    readonly reachable: boolean;
    readonly fallback?: FallbackState;
  };
  /** active bans by reason, from the store; null when it cannot be read */
  readonly bans: { readonly active: number; readonly byReason: Record<string, number> } | null;
  /** targets counting failures toward a ban without being banned; null when the store cannot be read */
  readonly failing: FailingView | null;
  /** bans the daemon enforces (kernel sets), when it answered */
  readonly enforced?: number;
  readonly firewall: {
    readonly table: string;
    readonly present: boolean;
    readonly elements: { readonly v4: number; readonly v6: number };
  } | null;
  /** the fleet's status records as read from Redis (checked by the caller); null when there is no Redis to read */
  readonly nodes: readonly unknown[] | null;
  /** status records in Redis that could not be read (not shown) */
  readonly unreadableNodes?: number;
  readonly note?: string;
}

/** What the daemon says of itself in `status`. */
export interface DaemonFacts {
  readonly node: string;
  readonly pid: number;
  readonly version: string;
  readonly startedAt: number;
  readonly configFile: string | null;
  /** 'detect-only' under `run --detect-only`; absent from a daemon older than the mode */
  readonly mode?: 'enforcing' | 'detect-only';
  readonly ami: { readonly connected: boolean; readonly reconnects: number };
  readonly firewall: { readonly table: string; readonly present: boolean; readonly elements: { readonly v4: number; readonly v6: number } };
  readonly reload: {
    readonly at: number;
    readonly ok: boolean;
    readonly error?: string;
    readonly restartNeeded?: readonly string[];
  } | null;
}

export interface Operator {
  readonly via: 'daemon' | 'redis';
  /** the active bans, a page at a time; resolves with a note when they come from elsewhere than the store */
  eachBan(fn: (entries: ActiveBanEntry[]) => void | Promise<void>): Promise<{ note?: string }>;
  inspect(target: IpTarget): Promise<Inspection>;
  /** durationMs null: policy.bantime (the daemon's, when it answers) */
  ban(targets: readonly IpTarget[], durationMs: number | null, note: string): Promise<{ bans: BanRecord[]; note?: string }>;
  unban(targets: readonly IpTarget[]): Promise<{ results: UnbanResult[]; note?: string }>;
  status(): Promise<StatusView>;
  /** the blocklist feeds' shared records (see ./feeds.ts) */
  feeds(opts: { entries: boolean }): Promise<FeedsRead>;
  close(): Promise<void>;
}

/**
 * The daemon on this host when one answers on control.socket; Redis directly when none runs here and Redis is
 * configured; otherwise an error saying there is nothing to ask.
 */
export async function openOperator(loaded: LoadedConfig, policy: Policy): Promise<Operator> {
  const { cfg, choice } = loaded;
  if (cfg.control.socket) {
    let sock;
    try {
      sock = await connectControl(cfg.control.socket);
    } catch (err) {
      throw new CliError(EXIT_FAILURE, (err as Error).message);
    }
    if (sock) return new DaemonOperator(cfg.control.socket, sock, cfg, policy);
  }
  if (!usesRedis(cfg)) {
    const where = cfg.control.socket ? `nothing listens on ${cfg.control.socket}` : 'control.socket is empty';
    throw new CliError(
      EXIT_FAILURE,
      `no ami-guard daemon runs on this host (${where}) and no Redis is configured (redis.url, redis.sentinels or redis.cluster): nothing to ask${noConfigFileHint(choice)}`,
    );
  }
  return new DirectOperator(await connect(cfg, policy), cfg, policy);
}
