import { BlockList } from 'node:net';
import { parseTarget, type IpAddress } from '../net/ip.js';

/**
 * fail2ban's ignoreip: addresses and networks that are never counted and never banned. Entries are parsed with the
 * same parser as events, so `::ffff:10.0.0.1` in the list and `10.0.0.1` in an event are the same address.
 */
export class IgnoreList {
  private readonly list = new BlockList();
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
    }
    this.entries = canonical;
  }

  has(address: IpAddress): boolean {
    return this.list.check(address.text, address.family === 4 ? 'ipv4' : 'ipv6');
  }
}
