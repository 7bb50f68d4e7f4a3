// The two kinds of feed behind one small interface: what a pull yields (the entries as they now stand, where the next
// pull starts, counts for the operator), and how long an entry is held in the kernel.
//
// APIBAN never says when an address leaves its list: it only hands out what is new since an ID. So its entries
// accumulate, each with when it was last seen, and each is held for blocklists.apiban.bantime from then. A plain list
// is the whole truth at every pull: what it no longer lists leaves the kernel at the next pull. Its entries carry a
// kernel timeout of two intervals (at least an hour), written again every half of that and at every reconciliation,
// so they stay while ami-guard runs (a failing pull changes nothing) and lapse on their own after it stops for good.
import type { IpTarget } from '../net/ip.js';
import { pullApiban, type ApibanOptions } from './apiban.js';
import { EntriesBuilder, type FeedEntries } from './entries.js';
import { describeSource, type FeedError } from './fetch.js';
import { pullPlainList } from './plain-list.js';

/** The counts of one pull, kept in the feed's record for `status` and logged. */
export interface PullStats {
  /** entries the feed holds after the pull */
  readonly entries: number;
  /** items that were not an address or network */
  readonly garbage: number;
  /** networks wider than policy.widest (0.0.0.0/0 and the like) */
  readonly tooWide: number;
  /** the same entry twice, or inside a wider network of the same feed */
  readonly duplicates: number;
  /** APIBAN: addresses in the pages read; lists: lines holding an entry */
  readonly read: number;
  /** APIBAN: entries whose bantime ran out since they were last seen */
  readonly expired?: number;
  /** entries left out because the feed would hold more than blocklists.maxEntries (APIBAN: the oldest) */
  readonly dropped?: number;
  readonly pages?: number;
}

export interface PullResult {
  readonly entries: FeedEntries;
  readonly cursor: string;
  readonly stats: PullStats;
  /** what ended an APIBAN pull early, after pages worth keeping */
  readonly error?: FeedError;
}

export interface PullContext {
  /** the entries as the last good pull left them (null: none, or unreadable) */
  readonly previous: FeedEntries | null;
  /** where the last good pull stopped ('' before the first) */
  readonly cursor: string;
  readonly now: number;
  readonly signal: AbortSignal;
}

export interface FeedSource {
  readonly name: string;
  readonly kind: 'apiban' | 'list';
  readonly intervalMs: number;
  /** whether entries carry when they were last seen */
  readonly withSeen: boolean;
  /** a printable description of where it pulls from (secrets masked) */
  readonly where: string;
  /** how often its entries' kernel timeouts must be written again while nothing changes (none: never) */
  readonly refreshMs?: number;
  pull(ctx: PullContext): Promise<PullResult>;
  /** when an entry (seen at `seen`, s) leaves the kernel unless asserted again */
  untilOf(seen: number, now: number): number;
}

export interface Bounds {
  readonly timeoutMs: number;
  readonly maxEntries: number;
  readonly widest: { readonly ipv4: number; readonly ipv6: number };
}

function tooWide(t: IpTarget, widest: Bounds['widest']): boolean {
  return t.kind === 'prefix' && t.bits < (t.family === 4 ? widest.ipv4 : widest.ipv6);
}

export class ApibanSource implements FeedSource {
  readonly name = 'apiban';
  readonly kind = 'apiban' as const;
  readonly withSeen = true;
  readonly where: string;

  constructor(
    private readonly o: Bounds &
      Pick<ApibanOptions, 'url' | 'key' | 'maxPageBytes' | 'maxPages'> & { readonly intervalMs: number; readonly bantimeMs: number },
  ) {
    this.where = describeSource(o.url);
  }

  get intervalMs(): number {
    return this.o.intervalMs;
  }

  untilOf(seen: number): number {
    return seen * 1000 + this.o.bantimeMs;
  }

  async pull(ctx: PullContext): Promise<PullResult> {
    const got = await pullApiban({ ...this.o, signal: ctx.signal }, ctx.cursor);
    const nowS = Math.floor(ctx.now / 1000);
    const builder = new EntriesBuilder(true);
    let expired = 0;
    ctx.previous?.addTo(builder, (seen) => {
      const live = this.untilOf(seen) > ctx.now;
      if (!live) expired++;
      return live;
    });
    let wide = 0;
    for (const t of got.targets) {
      if (tooWide(t, this.o.widest)) wide++;
      else builder.add(t, nowS);
    }
    const built = builder.build(this.o.maxEntries);
    return {
      entries: built.entries,
      cursor: got.cursor,
      stats: {
        entries: built.entries.size,
        garbage: got.garbage,
        tooWide: wide,
        duplicates: built.duplicates + built.covered,
        read: got.targets.length + got.garbage,
        expired,
        dropped: built.dropped,
        pages: got.pages,
      },
      ...(got.error ? { error: got.error } : {}),
    };
  }
}

export class PlainListSource implements FeedSource {
  readonly kind = 'list' as const;
  readonly withSeen = false;

  constructor(
    readonly name: string,
    readonly where: string,
    private readonly o: Bounds & { readonly url: string; readonly intervalMs: number; readonly maxBytes: number },
  ) {}

  get intervalMs(): number {
    return this.o.intervalMs;
  }

  /** how long an entry stays in the kernel unless written again: two intervals, at least an hour */
  get holdMs(): number {
    return Math.max(2 * this.o.intervalMs, 3_600_000);
  }

  get refreshMs(): number {
    return this.holdMs / 2;
  }

  untilOf(_seen: number, now: number): number {
    return now + this.holdMs;
  }

  async pull(ctx: PullContext): Promise<PullResult> {
    const { entries, stats } = await pullPlainList({
      url: this.o.url,
      timeoutMs: this.o.timeoutMs,
      maxBytes: this.o.maxBytes,
      maxEntries: this.o.maxEntries,
      widest: this.o.widest,
      signal: ctx.signal,
    });
    return {
      entries,
      cursor: '',
      stats: {
        entries: entries.size,
        garbage: stats.garbage,
        tooWide: stats.tooWide,
        duplicates: stats.duplicates + stats.covered,
        read: stats.lines,
      },
    };
  }
}
