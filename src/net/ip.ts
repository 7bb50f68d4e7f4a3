// Addresses cross every boundary of ami-guard as parsed values. Attacker-controlled text (the AMI stream) and
// operator text (CLI, config) both go through here before they can become a Redis key or an nft element.
import ipaddr from 'ipaddr.js';

export type IpFamily = 4 | 6;

/** One host address in canonical form: dotted quad for IPv4, RFC 5952 for IPv6, IPv4-mapped IPv6 folded to IPv4. */
export interface IpAddress {
  readonly kind: 'address';
  readonly family: IpFamily;
  readonly text: string;
}

/** A network (CIDR) with its host bits cleared, e.g. `203.0.113.0/24`. */
export interface IpPrefix {
  readonly kind: 'prefix';
  readonly family: IpFamily;
  /** canonical `network/bits` */
  readonly text: string;
  readonly network: string;
  readonly bits: number;
}

/** What can be banned or ignored: one address or one network. */
export type IpTarget = IpAddress | IpPrefix;

const IPV4_STRICT = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;

function fromParsed(parsed: ipaddr.IPv4 | ipaddr.IPv6): IpAddress {
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    return { kind: 'address', family: 4, text: (parsed as ipaddr.IPv6).toIPv4Address().toString() };
  }
  if (parsed.kind() === 'ipv4') return { kind: 'address', family: 4, text: parsed.toString() };
  return { kind: 'address', family: 6, text: (parsed as ipaddr.IPv6).toRFC5952String() };
}

/**
 * IPv6 text with a dotted IPv4 tail rewritten as two hex groups, or null when the tail is not a strict dotted quad.
 * ipaddr.js reads `::1.2.3.4` (IPv4-compatible, which inet_ntop prints for `::102:304`) as the IPv4-mapped
 * `::ffff:1.2.3.4`, which would fold an IPv6 source into an unrelated IPv4 address, and it accepts leading zeros in
 * the tail (`::ffff:010.0.0.1`).
 */
function hexTail(input: string): string | null {
  const colon = input.lastIndexOf(':');
  const tail = input.slice(colon + 1);
  if (!tail.includes('.')) return input;
  if (!IPV4_STRICT.test(tail)) return null;
  const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
  return `${input.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

/**
 * Parses one IP address. IPv4 must be a strict dotted quad (no `0x10`, no `10.1`, no leading zeros, which
 * ipaddr.js and inet_aton would otherwise read as octal or shorthand); IPv6 in any valid spelling, without a
 * zone id. Returns null for anything else.
 */
export function parseAddress(input: string): IpAddress | null {
  if (typeof input !== 'string' || input.length === 0 || input.length > 64) return null;
  if (IPV4_STRICT.test(input)) return fromParsed(ipaddr.IPv4.parse(input));
  if (!input.includes(':') || !IPV6_CHARS.test(input)) return null;
  const hex = hexTail(input);
  if (hex === null || !ipaddr.IPv6.isValid(hex)) return null;
  try {
    return fromParsed(ipaddr.IPv6.parse(hex));
  } catch {
    return null;
  }
}

/**
 * Parses an address or a CIDR network. The network is normalised (host bits cleared: `10.0.0.5/24` becomes
 * `10.0.0.0/24`); a full-length prefix (`/32`, `/128`) is the address itself. IPv4-mapped IPv6 networks fold to IPv4.
 */
export function parseTarget(input: string): IpTarget | null {
  if (typeof input !== 'string') return null;
  const slash = input.indexOf('/');
  if (slash < 0) return parseAddress(input);
  const addrPart = input.slice(0, slash);
  const bitsPart = input.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsPart)) return null;
  let bits = Number(bitsPart);
  const addr = parseAddress(addrPart);
  if (!addr) return null;
  let family = addr.family;
  // `::ffff:198.18.0.0/112` is the IPv4 network 198.18.0.0/16
  if (family === 4 && addrPart.includes(':')) {
    if (bits < 96) return null;
    bits -= 96;
  }
  const max = family === 4 ? 32 : 128;
  if (bits > max) return null;
  if (bits === max) return addr;
  const parsed = ipaddr.parse(addr.text);
  const network = family === 4
    ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.text}/${bits}`).toString()
    : (ipaddr.IPv6.networkAddressFromCIDR(`${parsed.toString()}/${bits}`) as ipaddr.IPv6).toRFC5952String();
  family = addr.family;
  return { kind: 'prefix', family, text: `${network}/${bits}`, network, bits };
}

export type UnbannableReason = 'loopback' | 'unspecified' | 'multicast' | 'broadcast';

/**
 * Addresses no attacker can really send from, or whose ban would cut the host off from itself. A packet claiming
 * such a source is spoofed or local; banning it would harm only us.
 */
export function unbannableReason(target: IpTarget): UnbannableReason | null {
  const text = target.kind === 'address' ? target.text : target.network;
  const range = ipaddr.parse(text).range();
  if (target.kind === 'prefix') {
    // a prefix wide enough to contain the loopback or unspecified address is never a sane ban
    const probe = target.family === 4 ? ['127.0.0.1', '0.0.0.0'] : ['::1', '::'];
    for (const p of probe) {
      if (prefixContains(target, p)) return p.startsWith('127') || p === '::1' ? 'loopback' : 'unspecified';
    }
  }
  switch (range) {
    case 'loopback':
    case 'unspecified':
    case 'multicast':
    case 'broadcast':
      return range;
    default:
      return null;
  }
}

export function prefixContains(prefix: IpPrefix, addressText: string): boolean {
  const a = ipaddr.parse(addressText);
  if ((a.kind() === 'ipv4') !== (prefix.family === 4)) return false;
  return a.match(ipaddr.parse(prefix.network), prefix.bits);
}

/**
 * Re-checks that a string is a canonical target as produced by parseTarget. The firewall and the store call this on
 * anything they are about to write, so a value that did not come from the parser (a bug, a tampered Redis record)
 * is refused instead of written into an nft script or a key.
 */
export function isCanonicalTarget(text: string): boolean {
  const t = parseTarget(text);
  return t !== null && t.text === text;
}
