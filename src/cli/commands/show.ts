import { Policy } from '../../policy/policy.js';
import { prefixOf, unbannableReason } from '../../net/ip.js';
import { formatDuration } from '../../config/duration.js';
import { parseTargets, readCliConfig, type ConfigOption } from '../context.js';
import { openOperator, type Covering } from '../operator.js';
import { ago, isoTime, jsonText, left, print, printable } from '../output.js';
import { feedJson, toJson } from './list.js';
import { say } from './say.js';
import { feedNames } from '../../feeds/feeds.js';
import { feedMatches, type FeedEntryRow } from '../../feeds/read.js';

export interface ShowOptions extends ConfigOption {
  json?: boolean;
}

/**
 * Everything known about one address: its ban and why, the banned networks that cover it, the feeds that list it
 * (or a network around it), its current failures, its history, the ignore list.
 */
export async function show(args: string[], opts: ShowOptions): Promise<number> {
  const loaded = readCliConfig(opts);
  const [target] = parseTargets(args.slice(0, 1), { allowNetworks: true });
  const cfg = loaded.cfg;
  const policy = new Policy(cfg.policy);
  const op = await openOperator(loaded, policy);
  let facts;
  let listed: FeedEntryRow[] = [];
  let feedNote: string | undefined;
  try {
    facts = await op.inspect(target!);
    const feeds = await op.feeds({ entries: true });
    feedNote = feeds.note;
    listed = feedMatches(feeds.readings, target!, Date.now());
  } finally {
    await op.close();
  }
  const now = Date.now();
  const { ban, failures, history, trustedUntil, coveredBy, ignored, enforcedUntil } = facts;
  const unbannable = unbannableReason(target!);
  // what its events count toward when that is not itself (where the daemon refuses the prefix, the address itself)
  const countedAs =
    target!.kind === 'address' && target!.family === 6 && cfg.policy.ipv6prefix < 128
      ? prefixOf(target!, cfg.policy.ipv6prefix).text
      : undefined;
  const banned = ban !== null || enforcedUntil !== null || coveredBy.length > 0;
  if (facts.note) say(facts.note);
  if (feedNote) say(feedNote);

  if (opts.json) {
    await print(
      `${jsonText({
        address: target!.text,
        banned,
        ban: ban ? toJson(ban, now) : null,
        ...(enforcedUntil !== null && !ban ? { enforcedUntil: isoTime(enforcedUntil) } : {}),
        coveredBy: coveredBy.map((c) => ({ ...c, until: isoTime(c.until) })),
        ...(countedAs ? { countedAs } : {}),
        listed: listed.length > 0,
        feeds: listed.map((row) => feedJson(row, now)),
        failures: failures.map((f) => ({ at: isoTime(f.at), kind: f.kind, account: f.account })),
        history: history.map((h) => ({ at: isoTime(h.at), until: isoTime(h.until), reason: h.reason, node: h.node })),
        ignored,
        unbannable: unbannable ?? false,
        trusted: trustedUntil !== null,
        trustedUntil: trustedUntil === null ? null : isoTime(trustedUntil),
      })}\n`,
    );
    return 0;
  }

  const lines: string[] = [target!.text];
  if (ban) {
    const note = ban.note ? ` "${ban.note}"` : '';
    lines.push(
      `  banned:    yes, ${ban.reason}${note}, by ${ban.node} ${ago(ban.bannedAt, now)}, ${left(ban.until, now)} left (until ${isoTime(ban.until)})`,
    );
    if (ban.members?.length) {
      lines.push(
        `  why:       ${ban.members.length} of its addresses or prefixes banned from ${isoTime(ban.firstSeen)} to ${isoTime(ban.lastSeen)}: ${ban.members.join(', ')}`,
      );
    } else if (ban.count > 0) {
      const kinds = Object.entries(ban.kinds)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ');
      lines.push(`  why:       ${ban.count} failures from ${isoTime(ban.firstSeen)} to ${isoTime(ban.lastSeen)}: ${kinds}`);
    }
  } else if (enforcedUntil !== null) {
    lines.push(
      `  banned:    yes, enforced here until ${isoTime(enforcedUntil)} (${left(enforcedUntil, now)} left); its record cannot be read now`,
    );
  } else if (coveredBy.length > 0) {
    lines.push(`  banned:    yes, by the network ban ${coveredBy.map((c) => covering(c, now)).join(' and ')}`);
  } else {
    lines.push('  banned:    no');
  }
  if ((ban || enforcedUntil !== null) && coveredBy.length > 0)
    lines.push(`  also:      covered by the network ban ${coveredBy.map((c) => covering(c, now)).join(' and ')}`);
  if (coveredBy.length > 0)
    lines.push(`  lift:      ami-guard unban ${coveredBy.map((c) => c.network).join(' ')} (lifts the whole network)`);
  if (countedAs) lines.push(`  counted:   as ${countedAs} (policy.ipv6prefix): \`ami-guard show ${countedAs}\` has its failures and trust`);
  for (const [i, row] of listed.entries()) {
    const entry = row.target.text === target!.text ? '' : ` as ${row.target.text}`;
    const held =
      row.until === null
        ? `listed, pulled ${ago(row.pulledAt, now)} by ${row.node}`
        : `last listed ${ago(row.seenAt!, now)}, ${left(row.until, now)} left (until ${isoTime(row.until)})`;
    lines.push(`  ${i === 0 ? 'feeds:    ' : '          '} ${row.feed}${entry}: ${held}`);
  }
  if (feedNames(cfg.blocklists).length > 0 && listed.length === 0 && !feedNote) lines.push('  feeds:     not listed');
  lines.push(`  ignoreip:  ${ignored ? 'yes (never counted, never banned)' : 'no'}${unbannable ? `; never bannable (${unbannable})` : ''}`);
  lines.push(
    `  trusted:   ${trustedUntil === null ? 'no' : `yes, after a successful login, until ${isoTime(trustedUntil)} (ban threshold ${policy.params.trust.maxretry} instead of ${policy.params.maxretry})`}`,
  );
  if (failures.length) {
    lines.push(`  failures in the current window (${failures.length}, newest first):`);
    for (const f of failures) lines.push(`    ${isoTime(f.at)}  ${f.kind.padEnd(24)} ${JSON.stringify(f.account)}`);
  } else {
    lines.push('  failures in the current window: none');
  }
  if (history.length) {
    lines.push(`  ban history (${history.length}, newest first):`);
    for (const h of history)
      lines.push(`    ${isoTime(h.at)}  ${h.reason.padEnd(9)} ${formatDuration(h.until - h.at).padEnd(7)} by ${h.node}`);
  } else {
    lines.push('  ban history: none');
  }
  // every line may quote Redis (reasons, notes, nodes, account ids an attacker chose): escaped for the terminal
  await print(`${lines.map((l) => printable(l)).join('\n')}\n`);
  return 0;
}

/** `203.0.113.0/24 (manual "abuse #42", by pbx2, 1h59m left)` */
function covering(c: Covering, now: number): string {
  const what = [
    c.reason ? `${c.reason}${c.note ? ` "${c.note}"` : ''}` : '',
    c.node ? `by ${c.node}` : '',
    `${left(c.until, now)} left`,
  ].filter(Boolean);
  return `${c.network} (${what.join(', ')})`;
}
