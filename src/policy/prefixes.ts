// Which network an address is counted and banned as, and which subnet its ban escalates into. An IPv6 attacker
// holds at least a /64 and can send every guess from a new address: counted per address it is never banned, and
// every address it uses costs a window in the store. So an IPv6 source counts toward its /policy.ipv6prefix, unless
// this node would refuse a ban of that prefix (it holds this host, its gateway, a service, an ignore-listed
// address): then the address counts on its own, and an attacker next to the PBX is still stopped, address by
// address. The subnet (policy.subnet.*) is offered only when a ban of it would be allowed here; whether it holds a
// trusted address is the store's to know.
import { prefixOf, type IpAddress, type IpPrefix, type IpTarget } from '../net/ip.js';
import { afterEviction, evictOldest } from '../evict-oldest.js';

export interface PrefixRules {
  /** IPv6 counting prefix length; 128: per address */
  readonly ipv6prefix: number;
  /** maxbans 0: no subnet escalation */
  readonly subnet: { readonly maxbans: number; readonly ipv4: number; readonly ipv6: number };
}

/**
 * Decisions kept per table. A flood from one /48 spans 65,536 /64s: beyond this many, the oldest decision is
 * dropped and made again when needed, so memory stays bounded whatever the attacker rotates through.
 */
const CACHE_MAX = 16_384;

/**
 * The network of `bits` around a target as a short key, without building the network: the words that matter,
 * masked, with the family (an IPv4 /24 and an IPv6 /32 are both one word).
 */
function networkKey(t: IpTarget, bits: number): string {
  const w = t.words;
  let key = t.family === 4 ? '4' : '6';
  for (let i = 0; i * 32 < bits; i++) {
    const keep = bits - i * 32;
    key += `:${keep >= 32 ? w[i]! : (w[i]! & (-1 << (32 - keep))) >>> 0}`;
  }
  return key;
}

function remember<T>(map: Map<string, T>, key: string, value: T): void {
  map.set(key, value);
  if (map.size > CACHE_MAX) evictOldest(map, afterEviction(CACHE_MAX));
}

export class PrefixChoice {
  /** network key → the counting prefix, or null when a ban of it is refused here (count per address) */
  private readonly counting = new Map<string, IpPrefix | null>();
  /** network key → the subnet, or null when a ban of it is refused here */
  private readonly subnets = new Map<string, IpPrefix | null>();
  private generation: number;

  constructor(
    private readonly rules: PrefixRules,
    /** why this node would refuse a ban of a target (Policy.refusal) */
    private readonly refusal: (t: IpTarget) => string | null,
    /** changes whenever what is refused may have changed (this host's addresses learnt again) */
    private readonly currentGeneration: () => number,
  ) {
    this.generation = currentGeneration();
  }

  /** What an event from `address` counts toward: its IPv6 prefix, or the address itself. */
  countingTarget(address: IpAddress): IpTarget {
    const bits = this.rules.ipv6prefix;
    if (address.family === 4 || bits >= 128) return address;
    return this.network(this.counting, address, bits) ?? address;
  }

  /** The subnet a ban of `target` counts toward, or null: escalation off, the target not narrower, or refused here. */
  subnetOf(target: IpTarget): IpPrefix | null {
    const s = this.rules.subnet;
    if (s.maxbans === 0) return null;
    const bits = target.family === 4 ? s.ipv4 : s.ipv6;
    if (target.bits <= bits) return null;
    return this.network(this.subnets, target, bits);
  }

  /** The /bits network around `target`, or null when a ban of it is refused here; remembered in `cache`. */
  private network(cache: Map<string, IpPrefix | null>, target: IpTarget, bits: number): IpPrefix | null {
    this.fresh();
    const key = networkKey(target, bits);
    let net = cache.get(key);
    if (net === undefined) {
      const p = prefixOf(target, bits) as IpPrefix;
      net = this.refusal(p) === null ? p : null;
      remember(cache, key, net);
    }
    return net;
  }

  private fresh(): void {
    const g = this.currentGeneration();
    if (g === this.generation) return;
    this.generation = g;
    this.counting.clear();
    this.subnets.clear();
  }
}
