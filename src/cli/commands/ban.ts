import { Policy } from '../../policy/policy.js';
import { parseDuration, formatDuration } from '../../config/duration.js';
import { MAX_BAN_MS, MAX_NOTE, inert } from '../../control/protocol.js';
import { jsonText, print, printable } from '../output.js';
import { toJson } from './list.js';
import { CliError, EXIT_USAGE, parseTargets, readCliConfig, refuseUnbannable, type ConfigOption } from '../context.js';
import { openOperator } from '../operator.js';
import { say } from './say.js';

export interface BanOptions extends ConfigOption {
  for?: string;
  permanent?: boolean;
  reason?: string;
  json?: boolean;
}

/**
 * A manual ban, recorded like any other (reason `manual`, the operator's words as its note) and told to the fleet:
 * by the daemon on this host when one runs (it also enforces it at once and announces it), else through Redis.
 */
export async function ban(args: string[], opts: BanOptions): Promise<number> {
  const loaded = readCliConfig(opts);
  const targets = parseTargets(args, { allowNetworks: true });
  if (opts.permanent && opts.for !== undefined) throw new CliError(EXIT_USAGE, '--permanent and --for exclude each other');
  // permanent: the longest a kernel set's timeout holds (an element without one would outlive every record of it)
  const durationMs = opts.permanent ? MAX_BAN_MS : opts.for === undefined ? null : parseDuration(opts.for);
  if (opts.for !== undefined && (durationMs === null || durationMs < 1000 || durationMs > MAX_BAN_MS)) {
    throw new CliError(
      EXIT_USAGE,
      `invalid --for ${JSON.stringify(opts.for)}: a duration such as 90s, 10m, 1h, 3d (at least 1s, at most 3 years; --permanent for the longest)`,
    );
  }
  const note = inert(opts.reason ?? '').slice(0, MAX_NOTE);

  const policy = new Policy(loaded.cfg.policy);
  // what no ban may cover is refused before anything is reached (the daemon, when it answers, checks with its own
  // policy again): a ban of the gateway or of a Sentinel must not wait for, or depend on, that Sentinel answering
  await refuseUnbannable(targets, policy, loaded.cfg);
  const op = await openOperator(loaded, policy);
  let result;
  try {
    result = await op.ban(targets, durationMs, note);
  } finally {
    await op.close();
  }
  if (result.note) say(result.note);
  if (opts.json) {
    const now = Date.now();
    await print(`${jsonText(result.bans.map((r) => toJson(r, now)))}\n`);
  } else {
    const how = (r: { until: number; bannedAt: number }) =>
      r.until - r.bannedAt >= MAX_BAN_MS ? 'permanently (3 years, until unbanned)' : `for ${formatDuration(r.until - r.bannedAt)}`;
    await print(result.bans.map((r) => `banned ${printable(r.address)} ${how(r)}${r.note ? ` (${printable(r.note)})` : ''}\n`).join(''));
  }
  return 0;
}
