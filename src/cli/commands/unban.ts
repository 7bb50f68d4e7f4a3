import { Policy } from '../../policy/policy.js';
import type { AppConfig } from '../../config/schema.js';
import type { IpTarget } from '../../net/ip.js';
import { CliError, EXIT_USAGE, connect, loadCliConfig, localFirewall, parseTargets, type ConfigOption, type Connected } from '../context.js';
import { announce } from '../notify.js';
import { activeBanRecords } from '../records.js';
import { banQuery, type BanQuery, type BanQueryOptions } from '../ban-query.js';
import { isoTime, jsonText, left, print, printable } from '../output.js';
import { coveringBans, type CoveringBan } from '../covering.js';

export interface UnbanOptions extends ConfigOption, Omit<BanQueryOptions, 'sort' | 'reverse'> {
  json?: boolean;
  /** every active ban (that matches the filters) */
  all?: boolean;
  /** confirms --all */
  yes?: boolean;
}

/** unbans in flight at once: enough to hide Redis round trips, few enough to stay polite to a shared Redis */
const CONCURRENCY = 64;

/**
 * Lifts bans everywhere: the Redis record and the failure window go (history stays: recidive reads it), every
 * daemon of the fleet hears it on the channel, and this host's set drops the element at once. `--all` lifts every
 * active ban matching the filters, each through this same path, and only with `--yes`.
 */
export async function unban(args: string[], opts: UnbanOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const filters = banQuery(opts);
  if (opts.origin?.includes('feed')) {
    throw new CliError(EXIT_USAGE, 'a feed\'s entries are not lifted with unban: they leave when their list drops them; to let one through, add it to policy.ignoreip');
  }
  if (opts.all && args.length > 0) throw new CliError(EXIT_USAGE, 'give addresses or --all, not both');
  if (!opts.all && filters.filtered) throw new CliError(EXIT_USAGE, '--reason, --node and --origin choose bans for --all');
  if (!opts.all && args.length === 0) throw new CliError(EXIT_USAGE, 'give the addresses to unban, or --all');
  const targets = opts.all ? [] : parseTargets(args, { allowNetworks: true });
  const conn = await connect(cfg, new Policy(cfg.policy));
  let results: Array<{ address: string; wasBanned: boolean }>;
  let covered: CoveringBan[][] = [];
  try {
    if (opts.all) {
      targets.push(...(await matching(conn, filters)));
      if (targets.length > 0 && !opts.yes) {
        throw new CliError(
          EXIT_USAGE,
          `unban --all would lift ${targets.length} ban${targets.length === 1 ? '' : 's'} on every PBX sharing this Redis; add --yes to do it`,
        );
      }
    }
    results = await lift(conn, cfg, targets);
    // an address counted in a banned prefix or subnet stays blocked by that ban: say so, and how to lift it
    if (!opts.all) covered = await Promise.all(targets.map((t) => coveringBans(conn.store, cfg.policy, t, Date.now())));
  } finally {
    await conn.close();
  }
  const fw = await localFirewall(cfg);
  if (fw && targets.length > 0) await fw.delete(targets);
  await announce(cfg, [], results.filter((r) => r.wasBanned).map((r) => r.address));

  if (opts.json) {
    const now = Date.now();
    const out = opts.all ? results.filter((r) => r.wasBanned) : results.map((r, i) => (covered[i]?.length
      ? { ...r, coveredBy: covered[i]!.map((c) => ({ network: c.network.text, reason: c.ban.reason, until: isoTime(c.ban.until), remainingSeconds: Math.max(0, Math.floor((c.ban.until - now) / 1000)) })) }
      : r));
    await print(`${jsonText(out)}\n`);
    return 0;
  }
  if (!opts.all) {
    const now = Date.now();
    await print(`${results.map((r, i) => describe(r, covered[i] ?? [], now)).join('\n')}\n`);
    return 0;
  }
  const lifted = results.filter((r) => r.wasBanned);
  // a ban that expired between the listing and its unban is simply not there any more
  const gone = results.length - lifted.length;
  const summary = results.length === 0
    ? filters.filtered ? 'no active bans match' : 'no active bans'
    : `${lifted.length} ban${lifted.length === 1 ? '' : 's'} lifted${gone ? ` (${gone} expired meanwhile)` : ''}`;
  await print(`${[...lifted.map((r) => `unbanned ${r.address}`), summary].join('\n')}\n`);
  return 0;
}

/** One line per address: lifted or not, and the network ban that still blocks it, with the command that lifts it. */
function describe(r: { address: string; wasBanned: boolean }, covered: readonly CoveringBan[], now: number): string {
  const done = r.wasBanned ? `unbanned ${r.address}` : `${r.address} was not banned`;
  if (covered.length === 0) return done;
  const nets = covered.map((c) => `${c.network.text} (${printable(c.ban.reason)}, ${left(c.ban.until, now)} left)`);
  const head = r.wasBanned ? `${done}, but it stays blocked:` : `${r.address} is not banned itself:`;
  return `${head} it is covered by the ban of ${nets.join(' and ')}; lift that with: ami-guard unban ${covered.map((c) => c.network.text).join(' ')}`;
}

async function matching(conn: Connected, filters: BanQuery): Promise<IpTarget[]> {
  const out: IpTarget[] = [];
  for await (const page of activeBanRecords(conn.store, Date.now())) {
    for (const e of page) if (filters.matches(e)) out.push(e.target);
  }
  return out;
}

/** Each target through the one unban path: the store, then the fleet channel. */
async function lift(conn: Connected, cfg: AppConfig, targets: readonly IpTarget[]): Promise<Array<{ address: string; wasBanned: boolean }>> {
  const results: Array<{ address: string; wasBanned: boolean }> = new Array(targets.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < targets.length && !failed) {
      const i = next++;
      const target = targets[i]!;
      try {
        const wasBanned = await conn.store.unban(target);
        await conn.channel.publish({ type: 'unban', address: target.text, until: 0, reason: 'manual', node: cfg.node.id, origin: conn.origin });
        results[i] = { address: target.text, wasBanned };
      } catch (err) {
        // the others stop taking new work: what was lifted so far has been told to the fleet
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, targets.length) }, worker));
  return results;
}
