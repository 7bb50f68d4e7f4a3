// Reads the raw netlink dump of one of our host sets, as the persistent writer hands it over (nft-writer.py,
// DUMP_ELEMENTS): per datagram `<wall-clock ms, u64 LE><length, u32 LE>` and the datagram, whose messages are the
// kernel's NFT_MSG_NEWSETELEM replies. At 100k elements the kernel sends it in ~0.15–0.3 s and this reads it in a few
// ms, where nft's own listing takes 0.6–1.3 s. What the sets hold may have been written by anyone, so every element is
// checked: only a host key of the set's family, without flags, becomes an entry; anything else is counted as skipped
// (the caller then replaces the sets whole). IPv4 hosts stay numbers (no object per element); the few IPv6 ones get
// their target from the IP module's word constructor, never from text.
import { targetFromWords, type IpFamily, type IpTarget } from '../net/ip.js';
import {
  NFTA_DATA_VALUE,
  NFTA_LIST_ELEM,
  NFTA_SET_ELEM_EXPIRATION,
  NFTA_SET_ELEM_FLAGS,
  NFTA_SET_ELEM_KEY,
  NFTA_SET_ELEM_LIST_ELEMENTS,
  NFTA_SET_ELEM_TIMEOUT,
  NFT_MSG_NEWSETELEM,
  NLA_TYPE_MASK,
  NLMSG_DONE,
  NLMSG_NOOP,
} from './netlink.js';

/** the end of an element without a timeout: it stays until deleted */
export const NO_END = Number.POSITIVE_INFINITY;

export interface HostSetDump {
  /**
   * IPv4 host, its uint32 `| 0` (a small integer to V8, which hashes it faster than a uint32 past 2^31) → when the
   * kernel drops it, ms since the epoch (never later than in truth), or NO_END
   */
  readonly v4: Map<number, number>;
  /** IPv6 host, by hostKey() → its target and end */
  readonly v6: Map<string, { readonly target: IpTarget; readonly end: number }>;
  /** elements that are no host of the set's family, described for the log */
  readonly skipped: string[];
  /** the ruleset generation the kernel answered at, low 16 bits (nfgenmsg.res_id); undefined for an empty reply */
  readonly generation: number | undefined;
}

/** how an IPv6 host is keyed in HostSetDump.v6 */
export function hostKey(words: readonly number[]): string {
  return `${words[0]},${words[1]},${words[2]},${words[3]}`;
}

class Malformed extends Error {
  override readonly name = 'MalformedDump';
}

/** Reads a stamped dump of a host set of `family` (banned_v4 or banned_v6); throws on bytes that are no dump. */
export function readHostSetDump(dump: Buffer, family: IpFamily): HostSetDump {
  const out: HostSetDump = { v4: new Map(), v6: new Map(), skipped: [], generation: undefined };
  let generation: number | undefined;
  let at = 0;
  while (at < dump.length) {
    if (at + 12 > dump.length) throw new Malformed('truncated datagram header in the set dump');
    const stamp = Number(dump.readBigUInt64LE(at));
    const size = dump.readUInt32LE(at + 8);
    const start = at + 12;
    const end = start + size;
    if (end > dump.length) throw new Malformed('truncated datagram in the set dump');
    for (let m = start; m < end;) {
      if (m + 16 > end) throw new Malformed('truncated netlink header in the set dump');
      const len = dump.readUInt32LE(m);
      const type = dump.readUInt16LE(m + 4);
      if (len < 16 || m + len > end) throw new Malformed('bad netlink message length in the set dump');
      if (type === NFT_MSG_NEWSETELEM) {
        if (len < 20) throw new Malformed('netlink message without nfgenmsg in the set dump');
        const gen = dump.readUInt16BE(m + 18);
        if (generation !== undefined && gen !== generation) throw new Malformed('set dump spans two ruleset generations');
        generation = gen;
        readMessage(dump, m + 20, m + len, stamp, family, out);
      } else if (type !== NLMSG_DONE && type !== NLMSG_NOOP) {
        throw new Malformed(`unexpected netlink message type ${type} in the set dump`);
      }
      m += (len + 3) & ~3;
    }
    at = end;
  }
  return { ...out, generation };
}

/** calls fn(type, start, end) for each attribute in [start, end) */
function attributes(b: Buffer, start: number, end: number, fn: (type: number, from: number, to: number) => void): void {
  for (let a = start; a + 4 <= end;) {
    const len = b.readUInt16LE(a);
    if (len < 4 || a + len > end) throw new Malformed('bad attribute length in the set dump');
    fn(b.readUInt16LE(a + 2) & NLA_TYPE_MASK, a + 4, a + len);
    a += (len + 3) & ~3;
  }
}

function readMessage(b: Buffer, start: number, end: number, stamp: number, family: IpFamily, out: HostSetDump): void {
  attributes(b, start, end, (type, from, to) => {
    if (type !== NFTA_SET_ELEM_LIST_ELEMENTS) return;
    attributes(b, from, to, (elemType, elemFrom, elemTo) => {
      if (elemType === NFTA_LIST_ELEM) readElement(b, elemFrom, elemTo, stamp, family, out);
    });
  });
}

function readElement(b: Buffer, start: number, end: number, stamp: number, family: IpFamily, out: HostSetDump): void {
  let keyAt = -1;
  let keyLen = 0;
  let flags = 0;
  let timeout = false;
  let expiresMs = -1;
  attributes(b, start, end, (type, from, to) => {
    if (type === NFTA_SET_ELEM_KEY) {
      attributes(b, from, to, (t, f, e) => {
        if (t === NFTA_DATA_VALUE) {
          keyAt = f;
          keyLen = e - f;
        }
      });
    } else if (type === NFTA_SET_ELEM_FLAGS && to - from === 4) {
      flags = b.readUInt32BE(from);
    } else if (type === NFTA_SET_ELEM_TIMEOUT) {
      timeout = true;
    } else if (type === NFTA_SET_ELEM_EXPIRATION && to - from === 8) {
      expiresMs = Number(b.readBigUInt64BE(from));
    }
  });
  const size = family === 4 ? 4 : 16;
  if (keyAt < 0 || keyLen !== size || flags !== 0) {
    const what = keyAt < 0 ? 'no key' : `key of ${keyLen} bytes`;
    out.skipped.push(`${what}${flags !== 0 ? `, flags ${flags}` : ''}`);
    return;
  }
  // a timeout without time left: an element lapsing as it was read
  const ends = expiresMs >= 0 ? stamp + expiresMs : timeout ? stamp : NO_END;
  if (family === 4) {
    out.v4.set(b.readInt32BE(keyAt), ends);
    return;
  }
  const words = [b.readUInt32BE(keyAt), b.readUInt32BE(keyAt + 4), b.readUInt32BE(keyAt + 8), b.readUInt32BE(keyAt + 12)];
  const target = targetFromWords(6, words, 128);
  // an IPv4-mapped address in the IPv6 set: its canonical form is IPv4, so it is none of ours
  if (!target) {
    out.skipped.push(`IPv6 key ${words.map((w) => w.toString(16)).join(':')}`);
    return;
  }
  out.v6.set(hostKey(words), { target, end: ends });
}
