// The single place that turns a target into Redis key names. Only an address or network made by the IP parser ever
// becomes part of a key (checked with instanceof, never by parsing its text again); account ids, kinds and reasons
// are stored as values and never reach here.
//
// Every target belongs to one of 4,096 buckets, a hash of its numeric words, written as the hash tag `{0a3}`. All
// keys of a target carry its bucket's tag, so one Lua script reaches them in one Cluster slot, and the state of many
// targets shares a few keys: a key with a TTL costs ~100 B in Redis before any data, which alone would eat the
// budget of 200 B per counting address. The layout is documented for operators in docs/fleet.md.
import { createRequire } from 'node:module';
import { isParsedTarget, type IpTarget } from '../net/ip.js';

/** ioredis routes a command by this function: grouping a batch by it sends each part where ioredis would. */
const calculateSlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

export const BUCKETS = 4096;
const TAGS: readonly string[] = Array.from({ length: BUCKETS }, (_, b) => b.toString(16).padStart(3, '0'));
const SLOTS: readonly number[] = TAGS.map((t) => calculateSlot(t));

/**
 * The bucket of a target: a mix of its words and length (murmur3's finaliser), so neighbouring addresses (a scan of
 * a /16) spread evenly. Part of the stored layout: changing it moves every key.
 */
export function bucketOf(target: IpTarget): number {
  let h = Math.imul(target.bits + 1, 0x9e3779b1);
  const w = target.words;
  for (let i = 0; i < w.length; i++) {
    h = Math.imul(h ^ w[i]!, 0xcc9e2d51);
    h = (h << 15) | (h >>> 17);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h & (BUCKETS - 1);
}

/** the hash tag text of a bucket, e.g. `0a3` */
export function tagOf(bucket: number): string {
  return TAGS[bucket]!;
}

/** the Cluster slot of a bucket (precomputed: CRC16 of its tag) */
export function slotOf(bucket: number): number {
  return SLOTS[bucket]!;
}

// Braces would move the hash tag and whitespace or control characters make keys unreadable in redis-cli.
const PREFIX = /^[A-Za-z0-9:_.-]{0,64}$/;

export class KeySpace {
  /** STRING, never expiring: the store's identity (Store.identity) */
  readonly identity: string;

  constructor(readonly prefix: string) {
    if (!PREFIX.test(prefix)) {
      throw new RangeError(`invalid key prefix ${JSON.stringify(prefix)}: use [A-Za-z0-9:_.-], at most 64 characters`);
    }
    this.identity = `${prefix}id`;
  }

  /** @throws if `target` did not come from the IP parser */
  check(target: IpTarget): IpTarget {
    if (!isParsedTarget(target)) {
      throw new RangeError(
        `refusing to build a key from ${JSON.stringify(String((target as { text?: unknown })?.text))}: not a parsed address`,
      );
    }
    return target;
  }

  /** STRING: the target's record (ban in force, its details, history, trust) */
  record(target: IpTarget): string {
    return `${this.prefix}{${tagOf(bucketOf(this.check(target)))}}${target.text}`;
  }

  /** HASH of the bucket's failure windows in one epoch (field: the target) */
  window(bucket: number, epoch: number): string {
    return `${this.prefix}{${tagOf(bucket)}}w${epoch}`;
  }

  /** ZSET: the bucket's part of the ban index (member: the target, score: until) */
  index(bucket: number): string {
    return `${this.prefix}{${tagOf(bucket)}}bans`;
  }
}
