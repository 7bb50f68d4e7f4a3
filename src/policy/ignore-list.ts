import { BlockList } from 'node:net';
import { parseTarget, prefixContains, type IpAddress, type IpTarget } from '../net/ip.js';

/**
 * fail2ban's ignoreip: addresses and networks that are never counted and never banned. Entries are parsed with the
 * same parser as events, so `::ffff:10.0.0.1` in the list and `10.0.0.1` in an event are the same address.
 */
export class IgnoreList {
  private readonly list = new BlockList();
  private readonly targets: IpTarget[] = [];
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    const canonical: string[] = [];
    for (const entry of entries) {
      const t = parseTarget(entry);
      if (!t) throw new Error(`ignoreip: ${JSON.stringify(entry)} is not an IP address or CIDR network`);
      const type = t.family === 4 ? 'ipv4' : 'ipv6';
      if (t.kind === 'address') this.list.addAddress(t.text, type);
      else this.list.addSubnet(t.network, t.bits, type);
      canonical.push(t.text);
      this.targets.push(t);
    }
    this.entries = canonical;
  }

  has(address: IpAddress): boolean {
    return this.list.check(address.text, address.family === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * Whether banning `target` would block an ignored address: the address itself, or for a network, any ignored
   * address inside it. Bans that reach this node from elsewhere (the fleet, the store) pass through here too: each
   * PBX's ignore list holds, whoever made the ban.
   */
  covers(target: IpTarget): boolean {
    if (target.kind === 'address') return this.has(target);
    if (this.list.check(target.network, target.family === 4 ? 'ipv4' : 'ipv6')) return true;
    return this.targets.some((t) => t.family === target.family && prefixContains(target, t.kind === 'address' ? t.text : t.network));
  }
}
