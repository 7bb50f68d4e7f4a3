// The fleet's ban channel: every ban and unban, made by any node or by the CLI, is published once and applied by
// every node to its own nft sets. A Redis Stream rather than pub/sub: a node that was down or cut off reads on from
// where it left off, instead of losing what was said meanwhile.
import type { IpTarget } from '../net/ip.js';

/** bans in one stream entry at most: a reader never has to take more than this from one message */
export const MAX_BANS_PER_MESSAGE = 500;

export interface BanMessage {
  readonly type: 'ban' | 'unban';
  /** canonical address or network: re-parsed by every reader before it reaches nft */
  readonly address: string;
  /** ms since the epoch; 0 for unbans */
  readonly until: number;
  readonly reason: string;
  /** node.id of the PBX (or the CLI's host) that made it */
  readonly node: string;
  /** the publishing process; a daemon skips its own messages (it enforced them before publishing) */
  readonly origin: string;
}

/** One ban as the fleet hears of it; a batch's bans travel together. */
export interface BanNotice {
  readonly address: string;
  readonly until: number;
  readonly reason: string;
}

export interface ReceivedBanMessage extends BanMessage {
  /** stream entry id (the bans of one batch share it) */
  readonly id: string;
  /** `address`, parsed and checked canonical by the reader: nobody downstream parses it again */
  readonly target: IpTarget;
}

export interface ChannelHandlers {
  message(m: ReceivedBanMessage): void;
  /**
   * The reader cannot vouch that it saw everything: it was cut off from Redis, or fell behind further than the
   * stream keeps. The daemon answers with a full reconciliation from the ban records.
   */
  resync(why: 'reconnected' | 'trimmed'): void;
}

export interface BanChannel {
  publish(m: BanMessage): Promise<void>;
  /** the bans of one batch as one message (at most MAX_BANS_PER_MESSAGE; more go out as several) */
  publishBans(bans: readonly BanNotice[], from: { readonly node: string; readonly origin: string }): Promise<void>;
  /** the id of the newest entry now ('0-0' when empty): read from here after a reconciliation */
  tail(): Promise<string>;
  /** reads entries after `fromId`, in order, until stop() */
  subscribe(fromId: string, handlers: ChannelHandlers): void;
  stop(): Promise<void>;
}

/** The embedded store's channel: one node, nobody to tell. */
export class LocalChannel implements BanChannel {
  async publish(): Promise<void> {}
  async publishBans(): Promise<void> {}
  async tail(): Promise<string> {
    return '0-0';
  }
  subscribe(): void {}
  async stop(): Promise<void> {}
}

/** Compares stream ids (`<ms>-<seq>`) numerically. */
export function compareIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const d = BigInt(am) - BigInt(bm);
  if (d !== 0n) return d < 0n ? -1 : 1;
  const e = BigInt(as) - BigInt(bs);
  return e === 0n ? 0 : e < 0n ? -1 : 1;
}
