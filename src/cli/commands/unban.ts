import { Policy } from '../../policy/policy.js';
import { connect, loadCliConfig, localFirewall, parseTargets, type ConfigOption } from '../context.js';
import { announce } from '../notify.js';

export interface UnbanOptions extends ConfigOption {
  json?: boolean;
}

/**
 * Lifts bans everywhere: the Redis record and the failure window go (history stays: recidive reads it), every
 * daemon of the fleet hears it on the channel, and this host's set drops the element at once.
 */
export async function unban(args: string[], opts: UnbanOptions): Promise<number> {
  const cfg = loadCliConfig(opts);
  const targets = parseTargets(args, { allowNetworks: true });
  const policy = new Policy(cfg.policy);
  const conn = await connect(cfg, policy);
  const results: Array<{ address: string; wasBanned: boolean }> = [];
  try {
    for (const target of targets) {
      const wasBanned = await conn.store.unban(target);
      await conn.channel.publish({ type: 'unban', address: target.text, until: 0, reason: 'manual', node: cfg.node.id, origin: conn.origin });
      results.push({ address: target.text, wasBanned });
    }
  } finally {
    await conn.close();
  }
  const fw = await localFirewall(cfg);
  if (fw) await fw.delete(targets);
  await announce(cfg, [], results.filter((r) => r.wasBanned).map((r) => r.address));

  if (opts.json) {
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } else {
    for (const r of results) {
      process.stdout.write(r.wasBanned ? `unbanned ${r.address}\n` : `${r.address} was not banned\n`);
    }
  }
  return 0;
}
