// The single place that turns an address into Redis key names. Only a canonical address or network from the IP
// parser ever becomes part of a key; account ids, kinds and reasons are stored as values and never reach here.
import { isCanonicalTarget } from '../net/ip.js';

/** The keys of one address or network. All share the `{address}` hash tag, so they live in one Cluster slot. */
export interface TargetKeys {
  /** LIST of recent failures, newest first */
  readonly fail: string;
  /** HASH, the active ban */
  readonly ban: string;
  /** LIST of past bans as JSON, newest first */
  readonly hist: string;
  /** LIST of challenges not (yet) answered by a successful login, newest first */
  readonly chal: string;
  /** STRING, present while the address is trusted after a successful login */
  readonly trust: string;
}

// Braces would move the hash tag and whitespace or control characters make keys unreadable in redis-cli.
const PREFIX = /^[A-Za-z0-9:_.-]{0,64}$/;

export class KeySpace {
  /** ZSET member = canonical address, score = until (ms): what reconciliation reads */
  readonly banIndex: string;

  constructor(readonly prefix: string) {
    if (!PREFIX.test(prefix)) {
      throw new RangeError(`invalid key prefix ${JSON.stringify(prefix)}: use [A-Za-z0-9:_.-], at most 64 characters`);
    }
    this.banIndex = `${prefix}bans`;
  }

  /** @throws if `target` is not the canonical text of an address or network */
  target(target: string): TargetKeys {
    if (!isCanonicalTarget(target)) {
      throw new RangeError(`refusing to build a key from non-canonical target ${JSON.stringify(target)}`);
    }
    const base = `${this.prefix}{${target}}:`;
    return { fail: `${base}fail`, ban: `${base}ban`, hist: `${base}hist`, chal: `${base}chal`, trust: `${base}trust` };
  }
}
