// A feed's entries in a compact, sorted form: per address family, the network words, the prefix lengths and (for
// APIBAN) when each entry was last seen, in typed arrays. 100,000 IPv4 entries take about 0.9 MB here and in Redis
// (one value per feed) instead of 100,000 ban records of ~400 B; the order (by address, then prefix length) makes the
// diff between two pulls one merge walk and a lookup a binary search. The bytes read back from Redis are outside
// input: decode() checks every record before anything uses it.
import { ipv4, targetFromWords, type IpFamily, type IpTarget } from '../net/ip.js';

const MAGIC = 0x41474631; // 'AGF1'
const HEADER = 13; // magic, flags, IPv4 count, IPv6 count
const FLAG_SEEN = 1;

/** A packed value that is not what encode() writes: refused whole, never half used. */
export class FeedDataError extends Error {
  override readonly name = 'FeedDataError';
}

/** One family's entries: `width` words per entry, sorted by (words, bits), no two alike. */
export class Part {
  constructor(
    readonly family: IpFamily,
    readonly words: Uint32Array,
    readonly bits: Uint8Array,
    /** seconds since the epoch, or null for a feed that does not track it */
    readonly seen: Uint32Array | null,
  ) {}

  get width(): number {
    return this.family === 4 ? 1 : 4;
  }

  get size(): number {
    return this.bits.length;
  }

  /** <0, 0, >0 as entry i sorts before, with, after (words, bits) */
  compareAt(i: number, words: ArrayLike<number>, bits: number): number {
    const w = this.width;
    for (let k = 0; k < w; k++) {
      const d = this.words[i * w + k]! - words[k]!;
      if (d !== 0) return d;
    }
    return this.bits[i]! - bits;
  }

  /** the first index whose entry does not sort before (words, bits) */
  lowerBound(words: ArrayLike<number>, bits: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compareAt(mid, words, bits) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** whether entry i lies inside the network (words, bits) */
  insideAt(i: number, words: ArrayLike<number>, bits: number): boolean {
    if (this.bits[i]! < bits) return false;
    let left = bits;
    for (let k = 0; k < this.width && left > 0; k++, left -= 32) {
      const mask = left >= 32 ? 0xffffffff : (-1 << (32 - left)) >>> 0;
      if ((this.words[i * this.width + k]! & mask) >>> 0 !== words[k]) return false;
    }
    return true;
  }
}

/** An entry as the rest of the module hands it around: a family and an index into that family's arrays. */
export interface EntryRef {
  readonly family: IpFamily;
  readonly index: number;
}

export class FeedEntries {
  /** made by EntriesBuilder.build() and decode(), which sort and check what goes in */
  constructor(
    readonly v4: Part,
    readonly v6: Part,
  ) {}

  static empty(withSeen: boolean): FeedEntries {
    const seen = (): Uint32Array | null => (withSeen ? new Uint32Array(0) : null);
    return new FeedEntries(
      new Part(4, new Uint32Array(0), new Uint8Array(0), seen()),
      new Part(6, new Uint32Array(0), new Uint8Array(0), seen()),
    );
  }

  get size(): number {
    return this.v4.size + this.v6.size;
  }

  /** whether each entry carries when it was last seen (APIBAN) */
  get withSeen(): boolean {
    return this.v4.seen !== null;
  }

  part(family: IpFamily): Part {
    return family === 4 ? this.v4 : this.v6;
  }

  /** the entry as a parsed target (made here, from checked words) */
  target(family: IpFamily, i: number): IpTarget {
    const p = this.part(family);
    // the common case, made without the general checks (decode and build made sure of them)
    if (family === 4 && p.bits[i] === 32) return ipv4(p.words[i]!);
    return targetFromWords(family, p.words.subarray(i * p.width, (i + 1) * p.width), p.bits[i]!)!;
  }

  /** when entry i was last seen, in seconds since the epoch (0 for a feed that does not track it) */
  seen(family: IpFamily, i: number): number {
    return this.part(family).seen?.[i] ?? 0;
  }

  /** the index of exactly this target, or -1 */
  indexOf(target: IpTarget): number {
    const p = this.part(target.family);
    const i = p.lowerBound(target.words, target.bits);
    return i < p.size && p.compareAt(i, target.words, target.bits) === 0 ? i : -1;
  }

  /** the entries inside a network (the network itself included), in order */
  *within(network: IpTarget): IterableIterator<number> {
    const p = this.part(network.family);
    for (let i = p.lowerBound(network.words, network.bits); i < p.size && p.insideAt(i, network.words, network.bits); i++) yield i;
  }

  /** every entry, IPv4 first, in order */
  *refs(): IterableIterator<EntryRef> {
    for (let index = 0; index < this.v4.size; index++) yield { family: 4, index };
    for (let index = 0; index < this.v6.size; index++) yield { family: 6, index };
  }

  /** The packed bytes: a header, then each family's words, prefix lengths and (if tracked) last-seen times. */
  encode(): Buffer {
    const { v4, v6 } = this;
    const seen = this.withSeen;
    const size = HEADER + v4.size * (5 + (seen ? 4 : 0)) + v6.size * (17 + (seen ? 4 : 0));
    const buf = Buffer.allocUnsafe(size);
    buf.writeUInt32BE(MAGIC, 0);
    buf.writeUInt8(seen ? FLAG_SEEN : 0, 4);
    buf.writeUInt32BE(v4.size, 5);
    buf.writeUInt32BE(v6.size, 9);
    let o = HEADER;
    for (const p of [v4, v6]) {
      for (const w of p.words) o = buf.writeUInt32BE(w, o);
      buf.set(p.bits, o);
      o += p.bits.length;
    }
    if (seen) for (const p of [v4, v6]) for (const s of p.seen!) o = buf.writeUInt32BE(s, o);
    return buf;
  }

  /** How many entries a packed value holds, from its header alone (for `status`); null when it is not one. */
  static count(buf: Buffer): number | null {
    if (buf.length < HEADER || buf.readUInt32BE(0) !== MAGIC) return null;
    return buf.readUInt32BE(5) + buf.readUInt32BE(9);
  }

  /**
   * Reads packed bytes back, checking everything: the header, the exact length, every prefix length, no bits past a
   * prefix, no IPv4-mapped IPv6, strict order (which also rules out duplicates), at most `maxEntries`.
   */
  static decode(buf: Buffer, maxEntries: number): FeedEntries {
    if (buf.length < HEADER || buf.readUInt32BE(0) !== MAGIC) throw new FeedDataError('not a packed feed (bad header)');
    const flags = buf.readUInt8(4);
    if (flags !== 0 && flags !== FLAG_SEEN) throw new FeedDataError(`unknown flags ${flags}`);
    const seen = flags === FLAG_SEEN;
    const n4 = buf.readUInt32BE(5);
    const n6 = buf.readUInt32BE(9);
    if (n4 + n6 > maxEntries) throw new FeedDataError(`${n4 + n6} entries, more than the ${maxEntries} allowed`);
    const expected = HEADER + n4 * (5 + (seen ? 4 : 0)) + n6 * (17 + (seen ? 4 : 0));
    if (buf.length !== expected) throw new FeedDataError(`length ${buf.length}, expected ${expected} for ${n4 + n6} entries`);
    let o = HEADER;
    const read = (family: IpFamily, n: number): Part => {
      const width = family === 4 ? 1 : 4;
      const words = new Uint32Array(n * width);
      for (let i = 0; i < words.length; i++, o += 4) words[i] = buf.readUInt32BE(o);
      const bits = Uint8Array.from(buf.subarray(o, o + n));
      o += n;
      return new Part(family, words, bits, seen ? new Uint32Array(n) : null);
    };
    const v4 = read(4, n4);
    const v6 = read(6, n6);
    if (seen) {
      for (const p of [v4, v6]) for (let i = 0; i < p.size; i++, o += 4) p.seen![i] = buf.readUInt32BE(o);
    }
    const entries = new FeedEntries(v4, v6);
    for (const p of [v4, v6]) {
      for (let i = 0; i < p.size; i++) {
        const words = p.words.subarray(i * p.width, (i + 1) * p.width);
        if (!wellFormed(p.family, words, p.bits[i]!)) throw new FeedDataError(`entry ${i} of IPv${p.family} is not an address or network`);
        if (i > 0 && p.compareAt(i - 1, words, p.bits[i]!) >= 0) throw new FeedDataError(`entries of IPv${p.family} out of order at ${i}`);
      }
    }
    return entries;
  }

  /** one entry carried into a builder as it is */
  addEntryTo(builder: EntriesBuilder, family: IpFamily, i: number): void {
    const p = this.part(family);
    builder.addWords(family, p.words.subarray(i * p.width, (i + 1) * p.width), p.bits[i]!, p.seen?.[i] ?? 0);
  }

  /** what a builder needs to carry these entries over (APIBAN keeps what it saw before) */
  addTo(builder: EntriesBuilder, keep: (seen: number) => boolean = () => true): void {
    for (const p of [this.v4, this.v6]) {
      for (let i = 0; i < p.size; i++) {
        const s = p.seen?.[i] ?? 0;
        if (keep(s)) builder.addWords(p.family, p.words.subarray(i * p.width, (i + 1) * p.width), p.bits[i]!, s);
      }
    }
  }
}

/**
 * What targetFromWords() accepts, checked without making a target (decode() runs it 100k times): a prefix length in
 * range, no bits past it, no IPv4-mapped IPv6.
 */
function wellFormed(family: IpFamily, words: Uint32Array, bits: number): boolean {
  if (bits > (family === 4 ? 32 : 128)) return false;
  let left = bits;
  for (let k = 0; k < words.length; k++, left -= 32) {
    const keep = Math.max(0, Math.min(32, left));
    const mask = keep === 0 ? 0 : keep === 32 ? 0xffffffff : (-1 << (32 - keep)) >>> 0;
    if ((words[k]! & ~mask) >>> 0 !== 0) return false;
  }
  return !(family === 6 && words[0] === 0 && words[1] === 0 && words[2] === 0xffff && bits >= 96);
}

export interface BuildResult {
  readonly entries: FeedEntries;
  /** the same address or network more than once */
  readonly duplicates: number;
  /** inside a wider network of the same feed (seen no later than it): the network stands for them */
  readonly covered: number;
  /** left out because the feed would hold more than `maxEntries` (the oldest seen go first) */
  readonly dropped: number;
}

/**
 * A growable column of unsigned numbers in a typed array: an IPv4 address above 2^30 would be a heap number in a plain
 * array, one allocation per entry of a list.
 */
class Column {
  private data: Uint32Array | Uint8Array;
  length = 0;

  constructor(private readonly bytes: 1 | 4) {
    this.data = bytes === 4 ? new Uint32Array(1024) : new Uint8Array(1024);
  }

  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = this.bytes === 4 ? new Uint32Array(this.length * 2) : new Uint8Array(this.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }

  view(): Uint32Array | Uint8Array {
    return this.data.subarray(0, this.length);
  }
}

/** Collects entries in any order; build() sorts them, merges duplicates (latest seen wins) and folds covered ones. */
export class EntriesBuilder {
  private readonly words: [Column, Column] = [new Column(4), new Column(4)];
  private readonly bits: [Column, Column] = [new Column(1), new Column(1)];
  private readonly seen: [Column, Column] = [new Column(4), new Column(4)];

  constructor(private readonly withSeen: boolean) {}

  get size(): number {
    return this.bits[0].length + this.bits[1].length;
  }

  add(target: IpTarget, seen = 0): void {
    this.addWords(target.family, target.words, target.bits, seen);
  }

  /** an IPv4 host as its uint32 (a list's bulk, parsed without making a target) */
  addHost4(n: number): void {
    this.words[0].push(n);
    this.bits[0].push(32);
    this.seen[0].push(0);
  }

  addWords(family: IpFamily, words: ArrayLike<number>, bits: number, seen: number): void {
    const f = family === 4 ? 0 : 1;
    for (let k = 0; k < words.length; k++) this.words[f].push(words[k]!);
    this.bits[f].push(bits);
    this.seen[f].push(this.withSeen ? seen : 0);
  }

  build(maxEntries = Infinity): BuildResult {
    let duplicates = 0;
    let covered = 0;
    let dropped = 0;
    const cutoff = this.seenCutoff(maxEntries);
    const parts = ([4, 6] as const).map((family) => {
      const f = family === 4 ? 0 : 1;
      const width = family === 4 ? 1 : 4;
      let words = this.words[f].view();
      let bits = this.bits[f].view();
      const seen = this.seen[f].view();
      const n = bits.length;
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      const compare = (a: number, b: number): number => {
        for (let k = 0; k < width; k++) {
          const d = words[a * width + k]! - words[b * width + k]!;
          if (d !== 0) return d;
        }
        return bits[a]! - bits[b]!;
      };
      if (width === 1 && !seen.some((s) => s !== 0)) {
        // a plain IPv4 list, the big case: (address, prefix length) as one number, sorted natively without a
        // comparator (100k entries: ~10 ms instead of ~80); with nothing else to carry, the order is the arrays'
        const keys = new Float64Array(n);
        for (let i = 0; i < n; i++) keys[i] = words[i]! * 256 + bits[i]!;
        keys.sort();
        words = new Uint32Array(n);
        bits = new Uint8Array(n);
        for (let i = 0; i < n; i++) {
          const address = Math.floor(keys[i]! / 256);
          words[i] = address;
          bits[i] = keys[i]! - address * 256;
        }
      } else {
        order.sort(compare);
      }
      const keep: number[] = [];
      const seenOf: number[] = [];
      /** slots in `keep` of the networks kept so far that may still contain what follows, widest first */
      const covers: number[] = [];
      for (const i of order) {
        if (keep.length > 0 && compare(keep[keep.length - 1]!, i) === 0) {
          duplicates++;
          seenOf[seenOf.length - 1] = Math.max(seenOf[seenOf.length - 1]!, seen[i]!);
          continue;
        }
        if (seen[i]! < cutoff.seen || (seen[i] === cutoff.seen && cutoff.ties-- <= 0)) {
          dropped++;
          continue;
        }
        while (covers.length > 0 && !inside(words, width, i, bits[i]!, keep[covers[covers.length - 1]!]!, bits)) covers.pop();
        if (covers.some((slot) => seenOf[slot]! >= seen[i]!)) {
          covered++;
          continue;
        }
        keep.push(i);
        seenOf.push(seen[i]!);
        if (bits[i]! < width * 32) covers.push(keep.length - 1);
      }
      const out = new Uint32Array(keep.length * width);
      const outBits = new Uint8Array(keep.length);
      const outSeen = this.withSeen ? new Uint32Array(keep.length) : null;
      keep.forEach((i, j) => {
        for (let k = 0; k < width; k++) out[j * width + k] = words[i * width + k]!;
        outBits[j] = bits[i]!;
        if (outSeen) outSeen[j] = seenOf[j]!;
      });
      return new Part(family, out, outBits, outSeen);
    });
    const entries = new FeedEntries(parts[0]!, parts[1]!);
    return { entries, duplicates, covered, dropped };
  }

  /**
   * Which entries stay when there are more than `max`: those seen latest. Returns the lowest seen time kept, and how
   * many entries seen exactly then may stay (ties are kept in address order).
   */
  private seenCutoff(max: number): { seen: number; ties: number } {
    if (this.size <= max) return { seen: -1, ties: Infinity };
    const all = Float64Array.from([...this.seen[0].view(), ...this.seen[1].view()])
      .sort()
      .reverse();
    const seen = all[max - 1] ?? Infinity;
    let above = 0;
    for (const s of all) if (s > seen) above++;
    return { seen, ties: max - above };
  }
}

/** whether entry i (words at i, bits bi) lies inside entry c */
function inside(words: ArrayLike<number>, width: number, i: number, bi: number, c: number, bits: ArrayLike<number>): boolean {
  const bc = bits[c]!;
  if (bi < bc) return false;
  let left = bc;
  for (let k = 0; k < width && left > 0; k++, left -= 32) {
    const mask = left >= 32 ? 0xffffffff : (-1 << (32 - left)) >>> 0;
    if ((words[i * width + k]! & mask) >>> 0 !== words[c * width + k]) return false;
  }
  return true;
}

/** indices into one side of a diff, per family (plain numbers: no object per entry of a 100k list) */
export type IndexLists = Record<IpFamily, number[]>;

export interface EntriesDiff {
  /** in `next` only */
  readonly added: IndexLists;
  /** in `prev` only (indices into prev) */
  readonly removed: IndexLists;
  /** in both, seen later in `next` (indices into next) */
  readonly refreshed: IndexLists;
}

/** What changed from one pull's entries to the next: one merge walk per family. */
export function diffEntries(prev: FeedEntries, next: FeedEntries): EntriesDiff {
  const added: IndexLists = { 4: [], 6: [] };
  const removed: IndexLists = { 4: [], 6: [] };
  const refreshed: IndexLists = { 4: [], 6: [] };
  for (const family of [4, 6] as const) {
    const a = prev.part(family);
    const b = next.part(family);
    const w = a.width;
    let i = 0;
    let j = 0;
    while (i < a.size || j < b.size) {
      const c = i >= a.size ? 1 : j >= b.size ? -1 : a.compareAt(i, b.words.subarray(j * w, (j + 1) * w), b.bits[j]!);
      if (c < 0) removed[family].push(i++);
      else if (c > 0) added[family].push(j++);
      else {
        if ((b.seen?.[j] ?? 0) > (a.seen?.[i] ?? 0)) refreshed[family].push(j);
        i++;
        j++;
      }
    }
  }
  return { added, removed, refreshed };
}

/** how many indices the lists hold */
export function countOf(lists: IndexLists): number {
  return lists[4].length + lists[6].length;
}
