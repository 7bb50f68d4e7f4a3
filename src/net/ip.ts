// Addresses cross every boundary of ami-guard as parsed values. Attacker-controlled text (the AMI stream) and
// operator text (CLI, config, feeds) go through here before they can become a Redis key or an nft element, and
// what comes out carries its numeric form, so range checks (ignore list, never-ban rules, prefixes) never parse
// again. Only this module can make an IpAddress or IpPrefix (the constructors are private), so a value that did not
// come from the parser (a bug, a forged object) is told apart with `instanceof` instead of by parsing its text again.
import ipaddr from 'ipaddr.js';

export type IpFamily = 4 | 6;

/** unsigned 32-bit words, most significant first: one for IPv4, four for IPv6 */
export type IpWords = readonly number[];

/** held only by this module: nothing else can construct an IpAddress or IpPrefix */
const MINT: unique symbol = Symbol('ip');

/** One host address in canonical form: dotted quad for IPv4, RFC 5952 for IPv6, IPv4-mapped IPv6 folded to IPv4. */
export class IpAddress {
  readonly kind = 'address' as const;
  /** the address's length in bits (32 or 128), so an address reads as its own /32 or /128 */
  readonly bits: number;

  constructor(
    mint: typeof MINT,
    readonly family: IpFamily,
    readonly text: string,
    readonly words: IpWords,
  ) {
    if (mint !== MINT) throw new TypeError('an IpAddress comes from parseAddress, never from elsewhere');
    this.bits = family === 4 ? 32 : 128;
  }

  toJSON(): string {
    return this.text;
  }
}

/** A network (CIDR) with its host bits cleared, e.g. `203.0.113.0/24`. */
export class IpPrefix {
  readonly kind = 'prefix' as const;

  /** canonical `network/bits` */
  readonly text: string;

  constructor(
    mint: typeof MINT,
    readonly family: IpFamily,
    /** canonical network address, without the length */
    readonly network: string,
    readonly bits: number,
    /** the network address's words (host bits zero) */
    readonly words: IpWords,
  ) {
    if (mint !== MINT) throw new TypeError('an IpPrefix comes from parseTarget, never from elsewhere');
    this.text = `${network}/${bits}`;
  }

  toJSON(): string {
    return this.text;
  }
}

/** What can be banned or ignored: one address or one network. */
export type IpTarget = IpAddress | IpPrefix;

const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;

/**
 * A strict dotted quad as a uint32 (no `0x10`, no `10.1`, no leading zeros, which inet_aton would read as octal or
 * shorthand), or -1. Reads `text` from `start` to `end` without allocating: the AMI reader calls it on the stream.
 */
export function dottedQuad(text: string, start = 0, end = text.length): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // leading zero
      part = part * 10 + (c - 48);
      if (part > 255 || ++digits > 3) return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

const OCTETS = Array.from({ length: 256 }, (_, i) => String(i));

/**
 * Joined rather than concatenated: a join makes one flat string, where `a + '.' + b…` makes a tree of string pieces
 * that the first Map lookup flattens into a copy, keeping both (this text is the key of the fold, the ban cache and
 * the store's batches, 100k at a time under a flood).
 */
function v4Text(n: number): string {
  return [OCTETS[n >>> 24], OCTETS[(n >>> 16) & 255], OCTETS[(n >>> 8) & 255], OCTETS[n & 255]].join('.');
}

/**
 * An IPv4 address from its uint32, e.g. as read from the stream by dottedQuad. Its text is always built from the
 * number, never kept from the input: text cut from a larger string (a packed Redis reply, a blocklist, a socket read)
 * would be a view keeping all of that string alive for as long as the address is remembered.
 */
export function ipv4(n: number): IpAddress {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not an IPv4 address: ${n}`);
  return new IpAddress(MINT, 4, v4Text(n), [n]);
}

function v6Words(parts: readonly number[]): number[] {
  return [0, 2, 4, 6].map((i) => ((parts[i]! << 16) | parts[i + 1]!) >>> 0);
}

function v6FromWords(words: IpWords): ipaddr.IPv6 {
  const parts: number[] = [];
  for (const w of words) parts.push(w >>> 16, w & 0xffff);
  return new ipaddr.IPv6(parts);
}

/**
 * IPv6 text with a dotted IPv4 tail rewritten as two hex groups, or null when the tail is not a strict dotted quad.
 * ipaddr.js reads `::1.2.3.4` (IPv4-compatible, which inet_ntop prints for `::102:304`) as the IPv4-mapped
 * `::ffff:1.2.3.4`, which would fold an IPv6 source into an unrelated IPv4 address, and it accepts leading zeros in
 * the tail (`::ffff:010.0.0.1`).
 */
function hexTail(input: string): string | null {
  const colon = input.lastIndexOf(':');
  if (!input.includes('.', colon)) return input;
  const n = dottedQuad(input, colon + 1);
  if (n < 0) return null;
  return `${input.slice(0, colon + 1)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
}

function parseV6(input: string): IpAddress | null {
  if (!input.includes(':') || !IPV6_CHARS.test(input)) return null;
  const hex = hexTail(input);
  if (hex === null || !ipaddr.IPv6.isValid(hex)) return null;
  let parsed: ipaddr.IPv6;
  try {
    parsed = ipaddr.IPv6.parse(hex);
  } catch {
    return null;
  }
  if (parsed.isIPv4MappedAddress()) {
    const [a, b, c, d] = parsed.toIPv4Address().octets;
    return ipv4(((a! << 24) | (b! << 16) | (c! << 8) | d!) >>> 0);
  }
  return new IpAddress(MINT, 6, parsed.toRFC5952String(), v6Words(parsed.parts));
}

/**
 * Parses one IP address: IPv4 as a strict dotted quad, IPv6 in any valid spelling without a zone id. Returns null
 * for anything else.
 */
export function parseAddress(input: string): IpAddress | null {
  if (typeof input !== 'string' || input.length === 0 || input.length > 64) return null;
  const n = dottedQuad(input);
  if (n >= 0) return ipv4(n);
  return parseV6(input);
}

/** The words of `words` with every bit past the first `bits` cleared. */
function masked(words: IpWords, bits: number): number[] {
  return words.map((w, i) => {
    const keep = Math.max(0, Math.min(32, bits - i * 32));
    return keep === 0 ? 0 : keep === 32 ? w : (w & (-1 << (32 - keep))) >>> 0;
  });
}

/** The network of `bits` around an address or inside a wider network, e.g. an IPv6 address's /64. */
export function prefixOf(target: IpTarget, bits: number): IpTarget {
  const max = target.family === 4 ? 32 : 128;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new RangeError(`prefix length ${bits} out of range for IPv${target.family}`);
  if (bits >= target.bits) return target;
  const words = masked(target.words, bits);
  const network = target.family === 4 ? v4Text(words[0]!) : v6FromWords(words).toRFC5952String();
  return new IpPrefix(MINT, target.family, network, bits, words);
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
  // `::ffff:198.18.0.0/112` is the IPv4 network 198.18.0.0/16
  if (addr.family === 4 && addrPart.includes(':')) {
    if (bits < 96) return null;
    bits -= 96;
  }
  if (bits > addr.bits) return null;
  return prefixOf(addr, bits);
}

/**
 * The address or network with these words and prefix length, as read back from a packed form (a feed's entries in
 * Redis): the bytes are outside input, so anything that the parsers would not have produced is null: a word out of
 * range, bits set past the prefix, or an IPv4-mapped IPv6 value (whose canonical form is the IPv4 one).
 */
export function targetFromWords(family: IpFamily, packed: ArrayLike<number>, bits: number): IpTarget | null {
  const words = Array.from(packed);
  const size = family === 4 ? 1 : family === 6 ? 4 : 0;
  const max = family === 4 ? 32 : 128;
  if (size === 0 || words.length !== size || !Number.isInteger(bits) || bits < 0 || bits > max) return null;
  for (const w of words) if (!Number.isInteger(w) || w < 0 || w > 0xffffffff) return null;
  const m = masked(words, bits);
  for (let i = 0; i < size; i++) if (m[i] !== words[i]) return null;
  if (family === 4) {
    const address = ipv4(words[0]!);
    return bits === 32 ? address : new IpPrefix(MINT, 4, address.text, bits, [words[0]!]);
  }
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff && bits >= 96) return null;
  const text = v6FromWords(words).toRFC5952String();
  return bits === 128 ? new IpAddress(MINT, 6, text, words) : new IpPrefix(MINT, 6, text, bits, words);
}

/** Whether `outer` contains `inner` (a target contains itself). Allocates nothing: it runs per event. */
export function contains(outer: IpTarget, inner: IpTarget): boolean {
  if (outer.family !== inner.family || inner.bits < outer.bits) return false;
  const ow = outer.words;
  const iw = inner.words;
  let bits = outer.bits;
  for (let i = 0; i < ow.length && bits > 0; i++, bits -= 32) {
    const mask = bits >= 32 ? 0xffffffff : (-1 << (32 - bits)) >>> 0;
    if ((iw[i]! & mask) >>> 0 !== ow[i]) return false;
  }
  return true;
}

/** Whether `a` and `b` share an address: one of them contains the other. */
export function overlaps(a: IpTarget, b: IpTarget): boolean {
  return contains(a, b) || contains(b, a);
}

export type UnbannableReason = 'loopback' | 'unspecified' | 'multicast' | 'broadcast';

const NEVER: ReadonlyArray<readonly [UnbannableReason, IpTarget]> = [
  ['loopback', '127.0.0.0/8'],
  ['unspecified', '0.0.0.0/8'],
  ['broadcast', '255.255.255.255/32'],
  ['multicast', '224.0.0.0/4'],
  ['loopback', '::1/128'],
  ['unspecified', '::/128'],
  ['multicast', 'ff00::/8'],
].map(([reason, text]) => [reason as UnbannableReason, parseTarget(text!)!] as const);

/**
 * Addresses no attacker can really send from, or whose ban would cut the host off from itself. A packet claiming
 * such a source is spoofed or local; banning it would harm only us. A network is refused when it overlaps one.
 */
export function unbannableReason(target: IpTarget): UnbannableReason | null {
  for (const [reason, range] of NEVER) if (overlaps(range, target)) return reason;
  return null;
}

/** Whether a value is an address or network made by this module's parsers (never a look-alike object). */
export function isParsedTarget(value: unknown): value is IpTarget {
  return value instanceof IpAddress || value instanceof IpPrefix;
}

/**
 * Re-checks that a string is a canonical target as produced by parseTarget: for text that arrives from outside
 * (a Redis key or record, a fleet message) before it is trusted as an address.
 */
export function isCanonicalTarget(text: string): boolean {
  const t = parseTarget(text);
  return t !== null && t.text === text;
}
