import { Policy } from '../../policy/policy.js';
import type { NodeStatus } from '../../fleet/node-status.js';
import { describeRedis } from '../backends.js';
import { readCliConfig, type ConfigOption } from '../context.js';
import { openOperator, type StatusView } from '../operator.js';
import type { FailingView } from '../records.js';
import { age, ago, isoTime, jsonText, print, printable, renderTable } from '../output.js';
import { version } from '../version.js';
import type { FeedReading } from '../../feeds/read.js';
import type { FeedsRead } from '../feeds.js';
import { formatDuration } from '../../config/duration.js';

export interface StatusOptions extends ConfigOption {
  json?: boolean;
}

/** a daemon writes its record every 5 s; three missed writes and it is reported silent */
const SILENT_AFTER_MS = 15_000;

type NodeState = 'running' | 'stopped' | 'silent';

function state(n: NodeStatus, now: number): NodeState {
  if (n.stopped) return 'stopped';
  return now - n.updatedAt <= SILENT_AFTER_MS ? 'running' : 'silent';
}

/** Status records come from Redis, which every node and admin box writes to: one of the wrong shape is skipped. */
function wellFormed(n: unknown): n is NodeStatus {
  const r = n as Partial<NodeStatus> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.node === 'string' &&
    typeof r.version === 'string' &&
    typeof r.pid === 'number' &&
    typeof r.startedAt === 'number' &&
    typeof r.updatedAt === 'number' &&
    typeof r.stopped === 'boolean' &&
    typeof r.ami?.connected === 'boolean' &&
    typeof r.ami.reconnects === 'number' &&
    typeof r.firewall?.present === 'boolean' &&
    [r.events, r.failures, r.invalid, r.bans].every((x) => typeof x === 'number')
  );
}

/**
 * A node as JSON: times in ISO 8601. A stopped node is connected to nothing, and nobody checks its table any more:
 * its last report of those is not passed off as the present.
 */
function nodeJson(n: NodeStatus, now: number): Record<string, unknown> {
  const s = state(n, now);
  return {
    node: n.node,
    state: s,
    version: n.version,
    pid: n.pid,
    startedAt: isoTime(n.startedAt),
    updatedAt: isoTime(n.updatedAt),
    ami: { connected: s === 'stopped' ? false : n.ami.connected, reconnects: n.ami.reconnects },
    firewall: { present: s === 'stopped' ? null : n.firewall.present },
    events: n.events,
    failures: n.failures,
    invalid: n.invalid,
    bans: n.bans,
  };
}

/** A feed as JSON: its last good pull (when, by whom, how many entries), the next one, and how it is failing. */
function feedJson(r: FeedReading): Record<string, unknown> {
  const rec = r.record;
  let stats: unknown = null;
  try {
    stats = rec?.stats ? (JSON.parse(rec.stats) as unknown) : null;
  } catch {
    // counts we cannot read are left out
  }
  return {
    feed: r.feed.name,
    kind: r.feed.kind,
    source: r.feed.where,
    interval: formatDuration(r.feed.intervalMs),
    entries: r.count,
    pulledAt: rec?.pulledAt ? isoTime(rec.pulledAt) : null,
    pulledBy: rec?.pulledAt ? rec.node : null,
    nextPullInSeconds: r.nextPullMs === null ? 0 : Math.ceil(r.nextPullMs / 1000),
    failures: rec?.failures ?? 0,
    lastError: rec?.error ? { message: rec.error, at: rec.errorAt ? isoTime(rec.errorAt) : null } : null,
    lastPull: stats,
  };
}

/** addresses the text output names; --json has all the answer holds */
const FAILING_TEXT = 5;

/** The targets counting toward a ban as JSON: times in ISO 8601. */
function failingJson(f: FailingView): Record<string, unknown> {
  return {
    total: f.total,
    top: f.top.map((e) => ({
      address: e.address,
      failures: e.failures,
      threshold: e.threshold,
      lastFailure: isoTime(e.last),
      account: e.account,
    })),
    ...(f.note ? { note: f.note } : {}),
  };
}

/** `failing N addresses counting toward a ban; most:` then one line per address (escaped with the rest, below). */
function failingLines(f: FailingView | null, now: number): string[] {
  if (!f) return ['failing unknown (the store cannot be read)'];
  const note = f.note ? ` (${f.note})` : '';
  if (f.total === 0) return [`failing none counting toward a ban${note}`];
  const shown = f.top.slice(0, FAILING_TEXT);
  const lines = [
    `failing ${f.total} ${f.total === 1 ? 'address' : 'addresses'} counting toward a ban${note}${shown.length ? `; most:` : ''}`,
  ];
  for (const e of shown) {
    lines.push(
      `        ${e.address} ${e.failures}/${e.threshold} (last ${ago(e.last, now)}${e.account ? `, account ${printable(e.account)}` : ''})`,
    );
  }
  if (f.total > shown.length)
    lines.push(`        … and ${f.total - shown.length} more (status --json lists ${Math.min(f.total, f.top.length)})`);
  return lines;
}

export async function status(opts: StatusOptions): Promise<number> {
  const loaded = readCliConfig(opts);
  const cfg = loaded.cfg;
  const policy = new Policy(cfg.policy);
  const op = await openOperator(loaded, policy);
  let view: StatusView;
  let feeds: FeedsRead;
  try {
    view = await op.status();
    feeds = await op.feeds({ entries: false });
  } finally {
    await op.close();
  }
  const now = Date.now();
  const records = view.nodes ?? [];
  const nodes = records.filter(wellFormed);
  const unreadable = (view.unreadableNodes ?? 0) + records.length - nodes.length;
  const d = view.daemon;
  const redis = view.store.kind === 'redis' ? { url: view.store.url ?? describeRedis(cfg), reachable: view.store.reachable } : null;

  if (opts.json) {
    await print(
      `${jsonText({
        version: version(),
        ...(d
          ? { daemon: { ...d, startedAt: isoTime(d.startedAt), reload: d.reload ? { ...d.reload, at: isoTime(d.reload.at) } : null } }
          : {}),
        store: { kind: view.store.kind, ...(view.store.fallback ? { fallback: view.store.fallback } : {}) },
        redis,
        bans: view.bans,
        failing: view.failing ? failingJson(view.failing) : null,
        ...(view.enforced !== undefined ? { enforced: view.enforced } : {}),
        firewall: view.firewall,
        feeds: feeds.readings.map(feedJson),
        ...(feeds.note ? { feedsNote: feeds.note } : {}),
        nodes: view.nodes === null ? null : nodes.map((n) => nodeJson(n, now)),
        ...(unreadable ? { unreadableNodeRecords: unreadable } : {}),
        ...(view.note ? { note: view.note } : {}),
      })}\n`,
    );
    return 0;
  }
  const lines = [`ami-guard ${version()}`];
  if (d) {
    lines.push(
      `daemon  ${d.node}, pid ${d.pid}, version ${d.version}, up ${age(d.startedAt, now)}, config ${d.configFile ?? '(none: defaults and AMI_GUARD_* variables)'}`,
    );
    lines.push(`        AMI ${d.ami.connected ? 'connected' : 'not connected'} (${d.ami.reconnects} reconnects)`);
    if (d.mode === 'detect-only') lines.push('        DETECT-ONLY: bans are decided and logged, none is enforced');
    if (d.reload) {
      lines.push(
        d.reload.ok
          ? `        last reload ${ago(d.reload.at, now)}: applied${d.reload.restartNeeded?.length ? `; needs a restart to apply ${d.reload.restartNeeded.join(', ')}` : ''}`
          : `        last reload ${ago(d.reload.at, now)}: FAILED, the configuration in force is the one before: ${d.reload.error ?? ''}`,
      );
    }
  }
  if (redis) {
    const fallback = view.store.fallback?.active
      ? `; counting and banning in the local fallback since ${ago(view.store.fallback.since ?? now, now)}, ${view.store.fallback.pendingWriteback} bans to write back`
      : '';
    lines.push(`redis   ${redis.url}: ${redis.reachable ? 'reachable' : 'UNREACHABLE'}${fallback}`);
  } else {
    lines.push('store   embedded (in the daemon process; nothing shared with other PBXs)');
  }
  const reasons = view.bans
    ? Object.entries(view.bans.byReason)
        .map(([r, n]) => `${printable(r)} ${n}`)
        .join(', ')
    : '';
  if (view.bans)
    lines.push(
      `bans    ${view.bans.active} active${reasons ? `: ${reasons}` : ''}${view.enforced !== undefined ? `; ${view.enforced} enforced by this daemon` : ''}`,
    );
  else
    lines.push(
      `bans    unknown (the store cannot be read)${view.enforced !== undefined ? `; ${view.enforced} enforced by this daemon` : ''}`,
    );
  lines.push(...failingLines(view.failing, now));
  const fw = view.firewall;
  lines.push(
    fw
      ? `nft     table ${fw.table} ${fw.present ? 'present' : 'MISSING'} on this host: ${fw.elements.v4} IPv4, ${fw.elements.v6} IPv6 elements`
      : `nft     no table inet ${cfg.nft.table} on this host (or nft not usable here)`,
  );
  if (view.note) lines.push(`note    ${view.note}`);
  if (unreadable) lines.push(`        ${unreadable} node status record(s) in Redis could not be read and are not shown`);
  if (feeds.note) lines.push(`feeds   ${feeds.note}`);
  if (feeds.readings.length > 0) {
    lines.push('feeds');
    const rows = feeds.readings.map((r) => {
      const rec = r.record;
      const next = r.nextPullMs === null ? 'now' : `in ${formatDuration(r.nextPullMs)}`;
      const error = rec?.failures ? `${rec.error}${rec.errorAt ? ` (${ago(rec.errorAt, now)})` : ''}` : '';
      return [
        r.feed.name,
        String(r.count),
        rec?.pulledAt ? ago(rec.pulledAt, now) : 'never',
        rec?.pulledAt ? rec.node : '-',
        next,
        String(rec?.failures ?? 0),
        error,
      ];
    });
    // a line each: every line is escaped for the terminal below (the cells already are)
    lines.push(
      ...renderTable(['FEED', 'ENTRIES', 'PULLED', 'BY', 'NEXT', 'FAILURES', 'LAST ERROR'], rows)
        .replace(/^/gm, '  ')
        .trimEnd()
        .split('\n'),
    );
  }
  if (view.nodes === null) {
    await print(`${lines.map((l) => printable(l)).join('\n')}\n`);
    return 0;
  }
  if (!nodes.length) {
    lines.push('nodes   none has reported to this Redis');
    await print(`${lines.map((l) => printable(l)).join('\n')}\n`);
    return 0;
  }
  lines.push('nodes');
  const rows = nodes.map((n) => {
    const s = state(n, now);
    // a stopped daemon holds no AMI login and checks no table: a dash, not its last report
    const ami = s === 'stopped' ? '-' : n.ami.connected ? 'connected' : 'down';
    const nft = s === 'stopped' ? '-' : n.firewall.present ? 'ok' : 'missing';
    return [n.node, s, ami, nft, String(n.events), String(n.bans), ago(n.updatedAt, now)];
  });
  const table = renderTable(['NODE', 'STATE', 'AMI', 'NFT', 'EVENTS', 'BANS', 'SEEN'], rows);
  await print(`${lines.map((l) => printable(l)).join('\n')}\n${table.replace(/^/gm, '  ').trimEnd()}\n`);
  return 0;
}
