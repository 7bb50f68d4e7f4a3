import { Policy } from '../../policy/policy.js';
import { redactUrl } from '../../log.js';
import { readNodeStatuses, type NodeStatus } from '../../fleet/node-status.js';
import { connect, loadCliConfig, localFirewall, type ConfigOption } from '../context.js';
import { activeBanRecords } from '../records.js';
import { Table, ago } from '../output.js';
import { version } from '../version.js';

export interface StatusOptions extends ConfigOption {
  json?: boolean;
}

/** a daemon writes its record every 5 s; three missed writes and it is reported silent */
const SILENT_AFTER_MS = 15_000;

function state(n: NodeStatus, now: number): 'running' | 'stopped' | 'silent' {
  if (n.stopped) return 'stopped';
  return now - n.updatedAt <= SILENT_AFTER_MS ? 'running' : 'silent';
}

export async function status(opts: StatusOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const conn = await connect(cfg, new Policy(cfg.policy));
  const now = Date.now();
  const byReason: Record<string, number> = {};
  let active = 0;
  let nodes: NodeStatus[];
  try {
    nodes = await readNodeStatuses(conn.redis!, cfg.redis.keyPrefix, now, (why, node) => {
      process.stderr.write(`ami-guard: status of node ${JSON.stringify(node)} skipped: ${why}\n`);
    });
    for await (const records of activeBanRecords(conn.store, now)) {
      for (const r of records) {
        active++;
        byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
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
    process.stdout.write(
      `${JSON.stringify({
        version: version(),
        redis: { url: redactUrl(cfg.redis.url), reachable: true },
        bans: { active, byReason },
        firewall,
        nodes: nodes.map((n) => ({ ...n, state: state(n, now) })),
      })}\n`,
    );
    return 0;
  }
  const reasons = Object.entries(byReason).map(([r, n]) => `${r} ${n}`).join(', ');
  process.stdout.write(`ami-guard ${version()}\n`);
  process.stdout.write(`redis   ${redactUrl(cfg.redis.url)}: reachable\n`);
  process.stdout.write(`bans    ${active} active${reasons ? `: ${reasons}` : ''}\n`);
  process.stdout.write(
    firewall
      ? `nft     table ${firewall.table} present on this host: ${firewall.elements.v4} IPv4, ${firewall.elements.v6} IPv6 elements\n`
      : `nft     no table inet ${cfg.nft.table} on this host (or nft not usable here)\n`,
  );
  if (!nodes.length) {
    process.stdout.write('nodes   none has reported to this Redis\n');
    return 0;
  }
  process.stdout.write('nodes\n');
  const table = new Table([
    { title: '  NODE', width: 16 },
    { title: 'STATE', width: 8 },
    { title: 'AMI', width: 12 },
    { title: 'NFT', width: 7 },
    { title: 'EVENTS', width: 9 },
    { title: 'BANS', width: 6 },
    { title: 'SEEN', width: 0 },
  ]);
  table.header();
  for (const n of nodes) {
    table.row([
      `  ${n.node.slice(0, 14)}`,
      state(n, now),
      n.ami.connected ? 'connected' : 'down',
      n.firewall.present ? 'ok' : 'missing',
      String(n.events),
      String(n.bans),
      ago(n.updatedAt, now),
    ]);
  }
  return 0;
}
