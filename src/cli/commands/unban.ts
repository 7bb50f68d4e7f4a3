import { Policy } from '../../policy/policy.js';
import type { IpTarget } from '../../net/ip.js';
import { CliError, EXIT_USAGE, parseTargets, readCliConfig, type ConfigOption } from '../context.js';
import { banQuery, type BanQuery, type BanQueryOptions } from '../ban-query.js';
import { openOperator, type Covering, type Operator, type UnbanResult } from '../operator.js';
import { jsonText, left, print, printable } from '../output.js';
import { usesRedis } from '../backends.js';
import { say } from './say.js';

export interface UnbanOptions extends ConfigOption, Omit<BanQueryOptions, 'sort' | 'reverse'> {
  json?: boolean;
  /** every active ban (that matches the filters) */
  all?: boolean;
  /** confirms --all */
  yes?: boolean;
}

/**
 * Lifts bans everywhere: the record and the failure window go (history stays: recidive reads it), every daemon of
 * the fleet hears it on the channel, and this host's set drops the element at once. An address inside a banned
 * network is named with that network and how to lift it. `--all` lifts every active ban matching the filters, each
 * through this same path, and only with `--yes`.
 */
export async function unban(args: string[], opts: UnbanOptions): Promise<number> {
  const loaded = readCliConfig(opts);
  const filters = banQuery(opts);
  if (opts.origin?.includes('feed')) {
    throw new CliError(
      EXIT_USAGE,
      "a feed's entries are not lifted with unban: they leave when their list drops them; to let one through, add it to policy.ignoreip",
    );
  }
  if (opts.all && args.length > 0) throw new CliError(EXIT_USAGE, 'give addresses or --all, not both');
  if (!opts.all && filters.filtered) throw new CliError(EXIT_USAGE, '--reason, --node and --origin choose bans for --all');
  if (!opts.all && args.length === 0) throw new CliError(EXIT_USAGE, 'give the addresses to unban, or --all');
  const targets = opts.all ? [] : parseTargets(args, { allowNetworks: true });
  const op = await openOperator(loaded, new Policy(loaded.cfg.policy));
  let results: UnbanResult[] = [];
  let note: string | undefined;
  try {
    if (opts.all) {
      targets.push(...(await matching(op, filters)));
      if (targets.length > 0 && !opts.yes) {
        const where = usesRedis(loaded.cfg) ? 'on every PBX sharing this Redis' : 'on this PBX';
        throw new CliError(
          EXIT_USAGE,
          `unban --all would lift ${targets.length} ban${targets.length === 1 ? '' : 's'} ${where}; add --yes to do it`,
        );
      }
    }
    if (targets.length > 0) ({ results, note } = await op.unban(targets));
  } finally {
    await op.close();
  }
  if (note) say(note);

  if (opts.json) {
    await print(`${jsonText(opts.all ? results.filter((r) => r.wasBanned) : results)}\n`);
    return 0;
  }
  if (!opts.all) {
    await print(`${results.map(describe).join('\n')}\n`);
    return 0;
  }
  const lifted = results.filter((r) => r.wasBanned);
  // a ban that expired between the listing and its unban is simply not there any more
  const gone = results.length - lifted.length;
  const summary =
    results.length === 0
      ? filters.filtered
        ? 'no active bans match'
        : 'no active bans'
      : `${lifted.length} ban${lifted.length === 1 ? '' : 's'} lifted${gone ? ` (${gone} expired meanwhile)` : ''}`;
  await print(`${[...lifted.map((r) => `unbanned ${r.address}`), summary].join('\n')}\n`);
  return 0;
}

/** One line per address: lifted or not, and the network bans that still block it, with the command that lifts them. */
function describe(r: UnbanResult): string {
  const done = r.wasBanned ? `unbanned ${r.address}` : `${r.address} was not banned`;
  if (r.coveredBy.length === 0) return done;
  const now = Date.now();
  const nets = r.coveredBy.map((c: Covering) => `${c.network} (${c.reason ? `${printable(c.reason)}, ` : ''}${left(c.until, now)} left)`);
  const head = r.wasBanned ? `${done}, but it stays blocked:` : `${r.address} is not banned itself:`;
  return `${head} it is covered by the network ban ${nets.join(' and ')}; lift that with: ami-guard unban ${r.coveredBy.map((c) => c.network).join(' ')}`;
}

async function matching(op: Operator, filters: BanQuery): Promise<IpTarget[]> {
  const out: IpTarget[] = [];
  // a ban known only by its end (Redis down) is still a ban this host enforces: --all lifts it
  await op.eachBan((page) => {
    for (const e of page) if (filters.matches(e)) out.push(e.target);
  });
  return out;
}
