// The verbs carried out by the daemon on this host, through its control socket (src/control/). The daemon owns the
// store, the kernel sets, the fleet link and the webhook: it records, enforces and announces; this side asks and
// reads the answer, which it checks like any other text before printing it.
import type { Socket } from 'node:net';
import { userInfo } from 'node:os';
import { parseTarget, type IpTarget } from '../net/ip.js';
import type { BanRecord, HistoryEntry, RecentFailure } from '../store/store.js';
import { ControlError, connectControl, request } from '../control/client.js';
import { MAX_TARGETS, MAX_USER, type ControlRequest } from '../control/protocol.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from './context.js';
import { enforcedOnly, readFailing, type ActiveBanEntry } from './records.js';
import type { AppConfig } from '../config/schema.js';
import type { Policy } from '../policy/policy.js';
import { cliFeeds, type FeedsRead } from './feeds.js';
import type { Covering, DaemonFacts, Inspection, Operator, StatusView, UnbanResult } from './operator.js';

export class DaemonOperator implements Operator {
  readonly via = 'daemon' as const;

  /** @param first the connection that found the daemon, used for the first request */
  constructor(
    private readonly path: string,
    private first: Socket | null,
    private readonly cfg: AppConfig,
    private readonly policy: Policy,
  ) {}

  feeds(opts: { entries: boolean }): Promise<FeedsRead> {
    return cliFeeds(this.cfg, this.policy, opts);
  }

  async eachBan(fn: (entries: ActiveBanEntry[]) => void | Promise<void>): Promise<{ note?: string }> {
    const result = (await this.ask({ verb: 'list' }, async (items) => {
      const entries: ActiveBanEntry[] = [];
      for (const item of items) {
        const e = entryOf(item);
        if (e) entries.push(e);
      }
      await fn(entries);
    })) as { note?: unknown } | null;
    return typeof result?.note === 'string' ? { note: result.note } : {};
  }

  async inspect(target: IpTarget): Promise<Inspection> {
    const r = (await this.ask({ verb: 'show', target })) as Record<string, unknown>;
    const ban = recordOf(r.ban);
    return {
      target,
      ban: ban && ban.address === target.text ? ban : null,
      enforcedUntil: typeof r.enforcedUntil === 'number' ? r.enforcedUntil : null,
      failures: Array.isArray(r.failures) ? (r.failures as RecentFailure[]) : [],
      history: Array.isArray(r.history) ? (r.history as HistoryEntry[]) : [],
      trustedUntil: typeof r.trustedUntil === 'number' ? r.trustedUntil : null,
      ignored: r.ignored === true,
      coveredBy: coveringOf(r.coveredBy),
      ...(typeof r.note === 'string' ? { note: r.note } : {}),
    };
  }

  async ban(targets: readonly IpTarget[], durationMs: number | null, note: string): Promise<{ bans: BanRecord[]; note?: string }> {
    const bans: BanRecord[] = [];
    let said: string | undefined;
    for (let i = 0; i < targets.length; i += MAX_TARGETS) {
      const r = (await this.ask({ verb: 'ban', targets: targets.slice(i, i + MAX_TARGETS), durationMs, note, user: cliUser() })) as {
        bans?: unknown;
        note?: unknown;
      };
      for (const b of Array.isArray(r.bans) ? r.bans : []) {
        const rec = recordOf(b);
        if (rec) bans.push(rec);
      }
      if (typeof r.note === 'string') said = r.note;
    }
    return { bans, ...(said ? { note: said } : {}) };
  }

  async unban(targets: readonly IpTarget[]): Promise<{ results: UnbanResult[]; note?: string }> {
    const results: UnbanResult[] = [];
    let said: string | undefined;
    for (let i = 0; i < targets.length; i += MAX_TARGETS) {
      const r = (await this.ask({ verb: 'unban', targets: targets.slice(i, i + MAX_TARGETS), user: cliUser() })) as {
        results?: unknown;
        note?: unknown;
      };
      for (const x of Array.isArray(r.results) ? (r.results as Array<Record<string, unknown>>) : []) {
        if (typeof x.address !== 'string') continue;
        results.push({ address: x.address, wasBanned: x.wasBanned === true, coveredBy: coveringOf(x.coveredBy) });
      }
      if (typeof r.note === 'string') said = r.note;
    }
    return { results, ...(said ? { note: said } : {}) };
  }

  async status(): Promise<StatusView> {
    const r = (await this.ask({ verb: 'status' })) as Record<string, unknown>;
    const store = (r.store ?? {}) as StatusView['store'];
    const daemon = r.daemon as DaemonFacts;
    return {
      daemon,
      store,
      bans: (r.bans ?? null) as StatusView['bans'],
      failing: readFailing(r.failing),
      enforced: typeof r.enforced === 'number' ? r.enforced : 0,
      firewall: daemon?.firewall ?? null,
      nodes: Array.isArray(r.nodes) ? r.nodes : null,
      ...(typeof r.unreadableNodes === 'number' && Number.isSafeInteger(r.unreadableNodes) && r.unreadableNodes > 0
        ? { unreadableNodes: r.unreadableNodes }
        : {}),
      ...(typeof r.note === 'string' ? { note: r.note } : {}),
    };
  }

  async close(): Promise<void> {
    this.first?.destroy();
    this.first = null;
  }

  /** One request on its own connection; the daemon's refusals become the CLI's errors with their exit codes. */
  private async ask(req: ControlRequest, onPage?: (items: unknown[]) => void | Promise<void>): Promise<unknown> {
    let sock = this.first;
    this.first = null;
    try {
      sock ??= await connectControl(this.path);
      if (!sock) throw new ControlError(`the daemon stopped (nothing listens on ${this.path} any more)`);
      return await request(sock, req, onPage ? { onPage } : {});
    } catch (err) {
      if (err instanceof ControlError) throw new CliError(err.usage ? EXIT_USAGE : EXIT_FAILURE, err.message);
      throw err;
    }
  }
}

/** A record as the daemon sent it, checked for the fields the verbs print; null when it is not one. */
function recordOf(value: unknown): BanRecord | null {
  const r = value as Partial<BanRecord> | null;
  if (typeof r !== 'object' || r === null || typeof r.address !== 'string' || typeof r.reason !== 'string' || typeof r.node !== 'string')
    return null;
  for (const n of [r.until, r.bannedAt, r.firstSeen, r.lastSeen, r.count, r.previousBans]) if (typeof n !== 'number') return null;
  return { ...r, kinds: typeof r.kinds === 'object' && r.kinds !== null ? r.kinds : {} } as BanRecord;
}

/** A listing's entry: a full record, or `{address, until}` for a ban enforced whose record cannot be read now. */
function entryOf(value: unknown): ActiveBanEntry | null {
  const v = value as { address?: unknown; until?: unknown } | null;
  if (typeof v?.address !== 'string') return null;
  const target = parseTarget(v.address);
  if (!target || target.text !== v.address) return null;
  const record = recordOf(value);
  if (record) return { target, record };
  return typeof v.until === 'number' ? enforcedOnly(target, v.until) : null;
}

function coveringOf(value: unknown): Covering[] {
  if (!Array.isArray(value)) return [];
  return value.filter((c): c is Covering => typeof c?.network === 'string' && typeof c.until === 'number');
}

/** Who runs the CLI, for the daemon's audit log: the user behind sudo when there is one. */
export function cliUser(): string {
  const sudo = process.env.SUDO_USER;
  if (sudo) return sudo.slice(0, MAX_USER);
  try {
    return userInfo().username.slice(0, MAX_USER);
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`; // a uid without a passwd entry (a container)
  }
}
