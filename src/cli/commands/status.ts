import { Policy } from '../../policy/policy.js';
import { readNodeStatuses, type NodeStatus } from '../../fleet/node-status.js';
import { describeRedis } from '../backends.js';
import { connect, loadCliConfig, localFirewall, type ConfigOption } from '../context.js';
import { activeBanRecords } from '../records.js';
import { ago, isoTime, jsonText, print, printable, renderTable } from '../output.js';
import { version } from '../version.js';
import { readFeeds, type FeedReading } from '../../feeds/read.js';
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
  return typeof r === 'object' && r !== null && typeof r.node === 'string' && typeof r.version === 'string'
    && typeof r.pid === 'number' && typeof r.startedAt === 'number' && typeof r.updatedAt === 'number'
    && typeof r.stopped === 'boolean' && typeof r.ami?.connected === 'boolean' && typeof r.ami.reconnects === 'number'
    && typeof r.firewall?.present === 'boolean'
    && [r.events, r.failures, r.invalid, r.bans].every((x) => typeof x === 'number');
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
    stats = rec?.stats ? JSON.parse(rec.stats) as unknown : null;
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

export async function status(opts: StatusOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const conn = await connect(cfg, new Policy(cfg.policy));
  const now = Date.now();
  const byReason: Record<string, number> = {};
  let active = 0;
  let nodes: NodeStatus[];
  let unreadable = 0;
  let feeds: FeedReading[] = [];
  try {
    feeds = await readFeeds(conn.redis!, cfg, { entries: false });
    const records: unknown[] = await readNodeStatuses(conn.redis!, cfg.redis.keyPrefix, now, () => unreadable++);
    nodes = records.filter(wellFormed);
    unreadable += records.length - nodes.length;
    for await (const page of activeBanRecords(conn.store, now)) {
      for (const { record } of page) {
        active++;
        byReason[record.reason] = (byReason[record.reason] ?? 0) + 1;
      }
    }
  } finally {
    await conn.close();
  }
  const fw = await localFirewall(cfg);
  let firewall: { table: string; present: boolean; elements: { v4: number; v6: number } } | null = null;
  if (fw) {
    const elements = await fw.list();
    firewall = {
      table: `inet ${cfg.nft.table}`,
      present: true,
      elements: { v4: elements.filter((e) => e.family === 4).length, v6: elements.filter((e) => e.family === 6).length },
    };
  }

  if (opts.json) {
    await print(
      `${jsonText({
        version: version(),
        redis: { url: describeRedis(cfg), reachable: true },
        bans: { active, byReason },
        firewall,
        feeds: feeds.map(feedJson),
        nodes: nodes.map((n) => nodeJson(n, now)),
        ...(unreadable ? { unreadableNodeRecords: unreadable } : {}),
      })}\n`,
    );
    return 0;
  }
  const reasons = Object.entries(byReason).map(([r, n]) => `${printable(r)} ${n}`).join(', ');
  const lines = [
    `ami-guard ${version()}`,
    `redis   ${describeRedis(cfg)}: reachable`,
    `bans    ${active} active${reasons ? `: ${reasons}` : ''}`,
    firewall
      ? `nft     table ${firewall.table} present on this host: ${firewall.elements.v4} IPv4, ${firewall.elements.v6} IPv6 elements`
      : `nft     no table inet ${cfg.nft.table} on this host (or nft not usable here)`,
  ];
  if (unreadable) lines.push(`        ${unreadable} node status record(s) in Redis could not be read and are not shown`);
  if (feeds.length > 0) {
    lines.push('feeds');
    const rows = feeds.map((r) => {
      const rec = r.record;
      const next = r.nextPullMs === null ? 'now' : `in ${formatDuration(r.nextPullMs)}`;
      const error = rec?.failures ? `${rec.error}${rec.errorAt ? ` (${ago(rec.errorAt, now)})` : ''}` : '';
      return [r.feed.name, String(r.count), rec?.pulledAt ? ago(rec.pulledAt, now) : 'never', rec?.pulledAt ? rec.node : '-', next, String(rec?.failures ?? 0), error];
    });
    lines.push(renderTable(['FEED', 'ENTRIES', 'PULLED', 'BY', 'NEXT', 'FAILURES', 'LAST ERROR'], rows).replace(/^/gm, '  ').trimEnd());
  }
  if (!nodes.length) {
    lines.push('nodes   none has reported to this Redis');
    await print(`${lines.join('\n')}\n`);
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
  await print(`${lines.join('\n')}\n${table.replace(/^/gm, '  ').trimEnd()}\n`);
  return 0;
}
