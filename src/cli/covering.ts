// The automatic network bans that may cover an address: its IPv6 prefix's (policy.ipv6prefix) and its subnet's
// (policy.subnet.*). An address counted inside such a network has no ban of its own, so `unban` and `show` of it name
// the network ban instead, and how to lift it.
import { prefixOf, type IpTarget } from '../net/ip.js';
import type { AppConfig } from '../config/schema.js';
import type { BanRecord, Store } from '../store/store.js';

export interface CoveringBan {
  readonly network: IpTarget;
  readonly ban: BanRecord;
}

/** The networks an automatic ban of `target` could have fallen on, narrowest first (none for a network that wide). */
export function coveringNetworks(policy: AppConfig['policy'], target: IpTarget): IpTarget[] {
  const bits = target.family === 6 ? [policy.ipv6prefix, policy.subnet.ipv6] : [policy.subnet.ipv4];
  const out: IpTarget[] = [];
  for (const b of bits) if (b < target.bits && !out.some((t) => t.bits === b)) out.push(prefixOf(target, b));
  return out;
}

/** The bans in force of those networks. */
export async function coveringBans(store: Store, policy: AppConfig['policy'], target: IpTarget, now: number): Promise<CoveringBan[]> {
  const networks = coveringNetworks(policy, target);
  const bans = await Promise.all(networks.map((n) => store.getBan(n, now)));
  return networks.flatMap((network, i) => (bans[i] ? [{ network, ban: bans[i]! }] : []));
}
