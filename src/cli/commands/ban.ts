import { Policy } from '../../policy/policy.js';
import { parseDuration, formatDuration } from '../../config/duration.js';
import type { BanRecord } from '../../store/store.js';
import { announce } from '../notify.js';
import { jsonText, print, printable } from '../output.js';
import { toJson } from './list.js';
import { CliError, EXIT_USAGE, connect, loadCliConfig, localFirewall, parseTargets, refuseUnbannable, type ConfigOption } from '../context.js';

export interface BanOptions extends ConfigOption {
  for?: string;
  reason?: string;
  json?: boolean;
}

const NOTE_MAX = 200;

/** A manual ban, recorded like any other (reason `manual`, the operator's words as its note) and told to the fleet. */
export async function ban(args: string[], opts: BanOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const policy = new Policy(cfg.policy);
  const targets = parseTargets(args, { allowNetworks: true });
  await refuseUnbannable(targets, policy, cfg);
  const durationMs = opts.for === undefined ? cfg.policy.bantime : parseDuration(opts.for);
  if (durationMs === null || durationMs < 1000) {
    throw new CliError(EXIT_USAGE, `invalid --for ${JSON.stringify(opts.for)}: a duration such as 90s, 10m, 1h, 3d (at least 1s)`);
  }
   
  const note = (opts.reason ?? '').replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, NOTE_MAX);

  const conn = await connect(cfg, policy);
  const records: BanRecord[] = [];
  try {
    for (const target of targets) {
      const rec = await conn.store.ban({ target, reason: 'manual', durationMs, now: Date.now(), ...(note ? { note } : {}) });
      await conn.channel.publish({ type: 'ban', address: rec.address, until: rec.until, reason: 'manual', node: cfg.node.id, origin: conn.origin });
      records.push(rec);
    }
  } finally {
    await conn.close();
  }
  const fw = await localFirewall(cfg);
  if (fw) await fw.add(targets.map((target) => ({ target, timeoutMs: durationMs })));
  await announce(cfg, records, []);

  if (opts.json) {
    const now = Date.now();
    await print(`${jsonText(records.map((r) => toJson(r, now)))}\n`);
  } else {
    await print(records.map((r) => `banned ${printable(r.address)} for ${formatDuration(durationMs)}${note ? ` (${note})` : ''}\n`).join(''));
  }
  return 0;
}
