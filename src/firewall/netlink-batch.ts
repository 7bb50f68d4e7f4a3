// Host bans as the nf_tables netlink batch that adds them: for loading sets known to be empty (a table just created),
// and for every batch of host bans on a kernel that replaces a present element's timeout when it is added again
// (NftFirewall.sendBans). The persistent writer hands the bytes to the kernel as they are (nft-writer.py, RAW_BATCH),
// where libnftables would check its cache and parse script text first (~3 MB of it for a load of 100k). At 100k bans
// the kernel's part is ~0.2 s and this encoder's a few ms, against ~0.45–0.6 s for the same load through libnftables.
// Only host bans of our hash sets are encoded, each checked as a script would check it (assertBans: a target from the
// IP parser, never a loopback or other unbannable address, a timeout nft takes); keys are the parsed target's own
// words, so no text reaches the kernel.
import type { FirewallBan } from './firewall.js';
import { assertBans, SETS, timeoutSeconds } from './nft-script.js';
import {
  NFNL_MSG_BATCH_BEGIN,
  NFNL_MSG_BATCH_END,
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_INET,
  NFTA_DATA_VALUE,
  NFTA_LIST_ELEM,
  NFTA_SET_ELEM_KEY,
  NFTA_SET_ELEM_LIST_ELEMENTS,
  NFTA_SET_ELEM_LIST_SET,
  NFTA_SET_ELEM_LIST_TABLE,
  NFTA_SET_ELEM_TIMEOUT,
  NFT_MSG_NEWSETELEM,
  NLA_F_NESTED,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_REQUEST,
} from './netlink.js';

/** elements per message: the elements' nested attribute has a 16-bit length (an IPv6 element takes 40 bytes) */
const PER_MESSAGE = 1000;

/** A batch adding these host bans to our host sets, every message acknowledged; networks are refused. */
export function hostLoadBatch(table: string, bans: readonly FirewallBan[]): Buffer {
  assertBans(bans);
  // headers, the table and set names and ~40 bytes per IPv4 element (~52 per IPv6): one allocation for most batches
  const out = new Writer(256 + 64 * bans.length);
  let seq = 0;
  out.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES, () => undefined);
  for (const family of [4, 6] as const) {
    const set = SETS.find((s) => s.family === family && !s.flags.includes('interval'))!;
    const mine = bans.filter((b) => b.target.family === family);
    for (const b of mine) if (b.target.kind !== 'address') throw new Error(`not a host ban: ${b.target.text}`);
    for (let i = 0; i < mine.length; i += PER_MESSAGE) {
      const part = mine.slice(i, i + PER_MESSAGE);
      out.message(NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq++, NFPROTO_INET, 0, () => {
        out.string(NFTA_SET_ELEM_LIST_TABLE, table);
        out.string(NFTA_SET_ELEM_LIST_SET, set.name);
        out.nest(NFTA_SET_ELEM_LIST_ELEMENTS, () => {
          for (const b of part) {
            out.nest(NFTA_LIST_ELEM, () => {
              out.nest(NFTA_SET_ELEM_KEY, () => out.words(NFTA_DATA_VALUE, b.target.words));
              out.u64(NFTA_SET_ELEM_TIMEOUT, timeoutSeconds(b.timeoutMs) * 1000);
            });
          }
        });
      });
    }
  }
  out.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES, () => undefined);
  return out.done();
}

/** Appends netlink messages and attributes (host order headers, network order values) to a growing buffer. */
class Writer {
  private buf: Buffer;
  private at = 0;

  constructor(size: number) {
    this.buf = Buffer.alloc(size);
  }

  message(type: number, flags: number, seq: number, family: number, resId: number, body: () => void): void {
    const start = this.reserve(20);
    this.buf.writeUInt16LE(type, start + 4);
    this.buf.writeUInt16LE(flags, start + 6);
    this.buf.writeUInt32LE(seq, start + 8);
    this.buf.writeUInt32LE(0, start + 12);
    this.buf.writeUInt8(family, start + 16);
    this.buf.writeUInt8(0, start + 17);
    this.buf.writeUInt16BE(resId, start + 18);
    body();
    this.buf.writeUInt32LE(this.at - start, start);
  }

  string(type: number, text: string): void {
    const bytes = Buffer.from(`${text}\0`, 'latin1');
    const start = this.attr(type, bytes.length);
    bytes.copy(this.buf, start + 4);
    this.pad();
  }

  u64(type: number, value: number): void {
    const start = this.attr(type, 8);
    this.buf.writeBigUInt64BE(BigInt(value), start + 4);
  }

  words(type: number, words: readonly number[]): void {
    const start = this.attr(type, 4 * words.length);
    for (let i = 0; i < words.length; i++) this.buf.writeUInt32BE(words[i]!, start + 4 + 4 * i);
  }

  nest(type: number, body: () => void): void {
    const start = this.attr(NLA_F_NESTED | type, 0);
    body();
    const len = this.at - start;
    if (len > 0xffff) throw new RangeError('netlink attribute too long');
    this.buf.writeUInt16LE(len, start);
  }

  done(): Buffer {
    return this.buf.subarray(0, this.at);
  }

  /** an attribute header with room for `size` bytes of payload; returns where the header starts */
  private attr(type: number, size: number): number {
    const start = this.reserve(4 + size);
    this.buf.writeUInt16LE(4 + size, start);
    this.buf.writeUInt16LE(type, start + 2);
    return start;
  }

  private pad(): void {
    const start = this.reserve(((this.at + 3) & ~3) - this.at);
    this.buf.fill(0, start, this.at);
  }

  private reserve(size: number): number {
    if (this.at + size > this.buf.length) {
      const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.at + size));
      this.buf.copy(bigger, 0, 0, this.at);
      this.buf = bigger;
    }
    const start = this.at;
    this.at += size;
    return start;
  }
}
