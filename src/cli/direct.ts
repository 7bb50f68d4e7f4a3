// The verbs carried out against Redis directly: on a host where no daemon runs (an admin box of the fleet). The
// store is the truth; the fleet's daemons apply bans and unbans from the fleet channel; this process announces them
// to the webhook itself (no daemon here will), and touches this host's nft table only if it has one.
import { contains, parseTarget, type IpTarget } from '../net/ip.js';
import type { AppConfig } from '../config/schema.js';
import type { Policy } from '../policy/policy.js';
import type { BanRecord } from '../store/store.js';
import { readNodeStatuses } from '../fleet/node-status.js';
import { describeRedis } from './backends.js';
import { localFirewall, type Connected } from './context.js';
import { announce } from './notify.js';
import { activeBanRecords, failingView, type ActiveBanEntry } from './records.js';
import { cliFeeds, type FeedsRead } from './feeds.js';
import type { Covering, Inspection, Operator, StatusView, UnbanResult } from './operator.js';

/** failing targets a status names: the text prints 5 of them, --json all (as through the daemon) */
const FAILING_SHOWN = 20;
/** unbans in flight at once: enough to hide Redis round trips, few enough to stay polite to a shared Redis */
const CONCURRENCY = 64;

export class DirectOperator implements Operator {
  readonly via = 'redis' as const;

  constructor(
    private readonly conn: Connected,
    private readonly cfg: AppConfig,
    private readonly policy: Policy,
  ) {}

  async eachBan(fn: (entries: ActiveBanEntry[]) => void | Promise<void>): Promise<{ note?: string }> {
    for await (const page of activeBanRecords(this.conn.store, Date.now())) await fn(page);
    return {};
  }

  async inspect(target: IpTarget): Promise<Inspection> {
    const now = Date.now();
    const s = this.conn.store;
    const [ban, failures, history, trustedUntil, networks] = await Promise.all([
      s.getBan(target, now),
      s.recentFailures(target),
      s.history(target),
      s.trustedUntil(target, now),
      this.bannedNetworks(now),
    ]);
    return {
      target,
      ban,
      enforcedUntil: null,
      failures,
      history,
      trustedUntil,
      ignored: this.policy.ignore.covers(target),
      coveredBy: await this.describe(coveringOf(target, networks), now),
    };
  }

  async ban(targets: readonly IpTarget[], durationMs: number | null, note: string): Promise<{ bans: BanRecord[] }> {
    // the ban verb refused what no ban may cover before connecting (refuseUnbannable)
    const duration = durationMs ?? this.cfg.policy.bantime;
    const records: BanRecord[] = [];
    for (const target of targets) {
      const rec = await this.conn.store.ban({ target, reason: 'manual', durationMs: duration, now: Date.now(), ...(note ? { note } : {}) });
      await this.conn.channel.publish({
        type: 'ban',
        address: rec.address,
        until: rec.until,
        reason: 'manual',
        node: this.cfg.node.id,
        origin: this.conn.origin,
      });
      records.push(rec);
    }
    const fw = await localFirewall(this.cfg);
    if (fw) await fw.add(targets.map((target) => ({ target, timeoutMs: duration })));
    await announce(this.cfg, records, []);
    return { bans: records };
  }

  /** Each target through the one unban path: the store, then the fleet channel; networks still covering it named. */
  async unban(targets: readonly IpTarget[]): Promise<{ results: UnbanResult[] }> {
    const lifted: boolean[] = new Array(targets.length);
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (next < targets.length && !failed) {
        const i = next++;
        const target = targets[i]!;
        try {
          lifted[i] = await this.conn.store.unban(target);
          await this.conn.channel.publish({
            type: 'unban',
            address: target.text,
            until: 0,
            reason: 'manual',
            node: this.cfg.node.id,
            origin: this.conn.origin,
          });
        } catch (err) {
          // the others stop taking new work: what was lifted so far has been told to the fleet
          failed = true;
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, targets.length) }, worker));
    const fw = await localFirewall(this.cfg);
    if (fw && targets.length > 0) await fw.delete(targets);
    const now = Date.now();
    const networks = await this.bannedNetworks(now);
    const results = await Promise.all(
      targets.map(async (target, i) => ({
        address: target.text,
        wasBanned: lifted[i]!,
        coveredBy: await this.describe(
          coveringOf(target, networks).filter((n) => n.target.text !== target.text),
          now,
        ),
      })),
    );
    await announce(
      this.cfg,
      [],
      results.filter((r) => r.wasBanned).map((r) => r.address),
    );
    return { results };
  }

  async status(): Promise<StatusView> {
    const now = Date.now();
    const byReason: Record<string, number> = {};
    let active = 0;
    let unreadableNodes = 0;
    const nodes: unknown[] = await readNodeStatuses(this.conn.redis!, this.cfg.redis.keyPrefix, now, () => unreadableNodes++);
    for await (const page of activeBanRecords(this.conn.store, now)) {
      for (const { record } of page) {
        active++;
        byReason[record.reason] = (byReason[record.reason] ?? 0) + 1;
      }
    }
    const failing = failingView(await this.conn.store.failing(now, FAILING_SHOWN));
    const fw = await localFirewall(this.cfg);
    let firewall: StatusView['firewall'] = null;
    if (fw) {
      const elements = await fw.list();
      firewall = {
        table: `inet ${this.cfg.nft.table}`,
        present: true,
        elements: { v4: elements.filter((e) => e.family === 4).length, v6: elements.filter((e) => e.family === 6).length },
      };
    }
    return {
      store: { kind: 'redis', url: describeRedis(this.cfg), reachable: true },
      bans: { active, byReason },
      failing,
      firewall,
      nodes,
      ...(unreadableNodes ? { unreadableNodes } : {}),
    };
  }

  feeds(opts: { entries: boolean }): Promise<FeedsRead> {
    return cliFeeds(this.cfg, this.policy, opts, this.conn);
  }

  close(): Promise<void> {
    return this.conn.close();
  }

  /**
   * The banned networks, from the ban index (networks are few, but the index mixes them with addresses: one pass).
   * The index is shared, so each entry is parsed and checked canonical like any other outside text.
   */
  private async bannedNetworks(now: number): Promise<Array<{ target: IpTarget; until: number }>> {
    const out: Array<{ target: IpTarget; until: number }> = [];
    for await (const page of this.conn.store.activeBans(now)) {
      for (const b of page) {
        if (!b.address.includes('/')) continue;
        const target = parseTarget(b.address);
        if (target?.kind === 'prefix' && target.text === b.address) out.push({ target, until: b.until });
      }
    }
    return out;
  }

  private async describe(networks: ReadonlyArray<{ target: IpTarget; until: number }>, now: number): Promise<Covering[]> {
    return Promise.all(
      networks.map(async ({ target, until }) => {
        const rec = await this.conn.store.getBan(target, now);
        return {
          network: target.text,
          until,
          ...(rec ? { reason: rec.reason, node: rec.node, ...(rec.note ? { note: rec.note } : {}) } : {}),
        };
      }),
    );
  }
}

/** The networks among `networks` that contain `target`, itself excluded. */
function coveringOf(
  target: IpTarget,
  networks: ReadonlyArray<{ target: IpTarget; until: number }>,
): Array<{ target: IpTarget; until: number }> {
  return networks.filter((n) => n.target.text !== target.text && contains(n.target, target));
}
