import { contains, overlaps, parseTarget, type IpAddress, type IpTarget } from '../net/ip.js';

/**
 * fail2ban's ignoreip: addresses and networks that are never counted and never banned. Entries are parsed with the
 * same parser as events, so `::ffff:10.0.0.1` in the list and `10.0.0.1` in an event are the same address, and
 * checks compare the parsed words: nothing is parsed again per event.
 */
export class IgnoreList {
  /** the parsed entries: what a feed's network is split around */
  readonly targets: readonly IpTarget[];
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    const canonical: string[] = [];
    const targets: IpTarget[] = [];
    for (const entry of entries) {
      const t = parseTarget(entry);
      if (!t) throw new Error(`ignoreip: ${JSON.stringify(entry)} is not an IP address or CIDR network`);
      canonical.push(t.text);
      targets.push(t);
    }
    this.targets = targets;
    this.entries = canonical;
  }

  has(address: IpAddress): boolean {
    for (const t of this.targets) if (contains(t, address)) return true;
    return false;
  }

  /**
   * Whether banning `target` would block an ignored address: the address itself, or for a network, any ignored
   * address inside it. Bans that reach this node from elsewhere (the fleet, the store) pass through here too: each
   * PBX's ignore list holds, whoever made the ban.
   */
  covers(target: IpTarget): boolean {
    for (const t of this.targets) if (overlaps(t, target)) return true;
    return false;
  }
}
