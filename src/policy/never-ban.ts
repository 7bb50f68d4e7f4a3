// fail2ban's ignoreself, and more: targets that are never banned, whoever asks (detection, the CLI, a fleet message,
// a record in the store). Banning any of them would hurt only us: addresses no attacker can send from (loopback,
// multicast, …), link-local ones (the cloud metadata service at 169.254.169.254, the IPv6 router at fe80::1), this
// host's own addresses and default gateways, the Redis, Sentinel and AMI hosts it depends on, and any network so
// wide that it stands for a good part of the Internet.
import { overlaps, parseTarget, type IpTarget } from '../net/ip.js';
import { readHostFacts, resolveServices, type HostFacts, type ServiceAddresses } from '../net/host-addresses.js';

export type NeverBanWhy =
  'loopback' | 'unspecified' | 'multicast' | 'broadcast' | 'link-local' | 'this host' | 'default gateway' | 'service' | 'too wide';

export interface NeverBanReason {
  readonly why: NeverBanWhy;
  /** what it overlaps: the range, the host's address, or the service's name */
  readonly what: string;
}

export interface NeverBanOptions {
  /** the widest network a ban may cover, by family (prefix lengths) */
  readonly widest: { readonly ipv4: number; readonly ipv6: number };
  /** fail2ban's ignoreself: protect this host's addresses, gateways and services */
  readonly ignoreself: boolean;
}

const STATIC: ReadonlyArray<readonly [NeverBanWhy, string]> = [
  ['loopback', '127.0.0.0/8'],
  ['unspecified', '0.0.0.0/8'],
  ['broadcast', '255.255.255.255'],
  ['multicast', '224.0.0.0/4'],
  ['link-local', '169.254.0.0/16'],
  ['loopback', '::1'],
  ['unspecified', '::'],
  ['multicast', 'ff00::/8'],
  ['link-local', 'fe80::/10'],
];

interface Protected {
  readonly target: IpTarget;
  readonly reason: NeverBanReason;
}

export class NeverBan {
  private readonly fixed: Protected[];
  private host: Protected[] = [];
  /** the widest network a ban may cover, by family */
  readonly widest: NeverBanOptions['widest'];
  private readonly ignoreself: boolean;
  /** moves on at every learn(): decisions kept about networks (the counting prefixes) are stale from then */
  generation = 0;

  constructor(o: NeverBanOptions) {
    this.widest = o.widest;
    this.ignoreself = o.ignoreself;
    this.fixed = STATIC.map(([why, text]) => ({ target: parseTarget(text)!, reason: { why, what: text } }));
  }

  /** Replaces what is known of this host (called at start, periodically, and on reload). */
  learn(facts: HostFacts, services: readonly ServiceAddresses[]): void {
    if (!this.ignoreself) return;
    const out: Protected[] = [];
    for (const a of facts.own) out.push({ target: a, reason: { why: 'this host', what: a.text } });
    for (const a of facts.gateways) out.push({ target: a, reason: { why: 'default gateway', what: a.text } });
    for (const s of services) for (const a of s.addresses) out.push({ target: a, reason: { why: 'service', what: s.name } });
    this.host = out;
    this.generation++;
  }

  /** Why `target` may never be banned, or null. */
  reason(target: IpTarget): NeverBanReason | null {
    if (target.kind === 'prefix' && target.bits < (target.family === 4 ? this.widest.ipv4 : this.widest.ipv6)) {
      return { why: 'too wide', what: `wider than /${target.family === 4 ? this.widest.ipv4 : this.widest.ipv6}` };
    }
    for (const p of this.fixed) if (overlaps(p.target, target)) return p.reason;
    for (const p of this.host) if (overlaps(p.target, target)) return p.reason;
    return null;
  }

  /** Every range no ban may overlap (the fixed ones and this host's), with why: what a feed's network is split around. */
  ranges(): ReadonlyArray<{ readonly target: IpTarget; readonly reason: NeverBanReason }> {
    return [...this.fixed, ...this.host];
  }

  /** One line for an operator: `169.254.169.254 is link-local (169.254.0.0/16)`. */
  static describe(target: IpTarget, r: NeverBanReason): string {
    switch (r.why) {
      case 'this host':
        return `${target.text} covers this host's own address ${r.what}`;
      case 'default gateway':
        return `${target.text} covers this host's default gateway ${r.what}`;
      case 'service':
        return `${target.text} covers ${r.what}, which this host needs (Redis, Sentinel or AMI)`;
      case 'too wide':
        return `${target.text} is ${r.what}, wider than a ban may be (policy.widest)`;
      default:
        return `${target.text} is ${r.why} (${r.what})`;
    }
  }
}

/** Teaches `neverBan` what this host is and needs: its addresses and gateways, and the configured services. */
export async function learnHost(neverBan: NeverBan, serviceHostNames: readonly string[]): Promise<void> {
  const [facts, services] = await Promise.all([readHostFacts(), resolveServices(serviceHostNames)]);
  neverBan.learn(facts, services);
}
