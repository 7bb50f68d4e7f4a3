// One feed's life on one node: every poll it checks the shared record's version and, when it moved, enforces the
// entries another node pulled; and it tries the pull lock, so that across the fleet one node pulls per interval (the
// lock lives until the next pull is due). A failed pull changes nothing already enforced: it is recorded, and the lock
// is kept only for the backoff, after which any node tries again.
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import type { Policy } from '../policy/policy.js';
import type { FeedMetrics } from '../metrics.js';
import { FeedDataError, FeedEntries } from './entries.js';
import type { FeedEnforcer } from './enforcer.js';
import { FeedError } from './fetch.js';
import type { FeedSource, PullResult } from './sources.js';
import type { FeedRecord, FeedStateStore } from './state.js';
import { enforcedView, type ViewStats } from './view.js';

export interface FeedRunnerOptions {
  readonly source: FeedSource;
  readonly state: FeedStateStore;
  readonly enforcer: FeedEnforcer;
  readonly policy: Policy;
  readonly nodeId: string;
  readonly maxEntries: number;
  /** one request's deadline (blocklists.timeout): what the pull lock's lease is sized by */
  readonly timeoutMs: number;
  readonly logger: Logger;
  readonly metrics?: FeedMetrics;
  readonly now?: () => number;
}

/** how often the record's version is polled and the lock tried (shorter for feeds pulled more often) */
export function pollInterval(intervalMs: number): number {
  return Math.min(5_000, Math.max(250, Math.floor(intervalMs / 2)));
}

/** how long a pull may hold the lock before another node may take over (its requests are aborted before that) */
export function leaseFor(timeoutMs: number): number {
  return Math.max(60_000, 4 * timeoutMs);
}

/** the wait before the next try after `failures` failed pulls in a row: doubling from a fraction of the interval */
export function backoff(failures: number, intervalMs: number): number {
  const first = Math.min(30_000, Math.max(250, intervalMs / 8));
  return Math.min(intervalMs, first * 2 ** Math.max(0, failures - 1));
}

export class FeedRunner {
  private readonly log: Logger;
  private readonly now: () => number;
  /** the record version enforced here; -1 before the first read */
  private version = -1;
  /** the entries as pulled (before this node's policy), kept to rebuild the view */
  private raw: FeedEntries | null = null;
  private applying = false;
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();
  /** state reads that fail are logged once until one succeeds */
  private stateFailing = false;

  /** this node's policy (ignoreip, never-ban): replaced on a reload (SIGHUP) */
  private policy: Policy;

  constructor(private readonly o: FeedRunnerOptions) {
    this.log = o.logger.child({ component: 'feeds', feed: o.source.name });
    this.now = o.now ?? Date.now;
    this.policy = o.policy;
  }

  /** A reloaded policy: the view is built with it from the next rebuild (the next reconciliation) or pull on. */
  setPolicy(policy: Policy): void {
    this.policy = policy;
  }

  get name(): string {
    return this.o.source.name;
  }

  /** Reads the shared record and remembers its entries, without writing them (the start-up reconciliation does). */
  async load(): Promise<void> {
    const record = await this.o.state.read(this.name);
    if (record) await this.adopt(record, null);
  }

  /** Polls and pulls from now on; entries that change are written to the firewall at once. */
  start(): void {
    this.applying = true;
    this.stopped = false;
    this.schedule(0);
    const every = this.o.source.refreshMs;
    if (every) {
      // a plain list's entries are held for a while only: written again while nothing changes, whatever the pulls do
      this.refreshTimer = setInterval(() => {
        this.o.enforcer.reassert(this.name).catch((err: unknown) => {
          this.log.error({ err: (err as Error).message }, 'feed entries not written again; the next reconciliation writes them');
        });
      }, every);
      this.refreshTimer.unref();
    }
  }

  /** Stops polling, aborts a pull under way, and resolves once the current tick is over. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.refreshTimer);
    this.abort.abort();
    await this.running;
  }

  /** This node's view built again from the pulled entries (its policy may have learnt new host addresses). */
  rebuild(): void {
    if (!this.raw) return;
    const view = this.view(this.raw);
    void this.o.enforcer.setView(this.name, view.view, false);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule(pollInterval(this.o.source.intervalMs));
      });
    }, ms);
    this.timer.unref();
  }

  /** One poll: enforce what changed, then pull if the lock is free. Never throws. */
  async tick(): Promise<void> {
    try {
      const head = await this.o.state.head(this.name);
      if (head.version > 0 && head.version !== this.version) {
        const record = await this.o.state.read(this.name);
        if (record) await this.adopt(record, null);
      }
      this.o.metrics?.lastSuccess.set({ feed: this.name }, head.pulledAt / 1000);
      const token = this.stopped ? null : await this.o.state.tryLock(this.name, leaseFor(this.o.timeoutMs));
      if (this.stateFailing) this.log.info('feed state readable again');
      this.stateFailing = false;
      if (token) await this.pull(token);
    } catch (err) {
      if (!this.stateFailing)
        this.log.warn({ err: (err as Error).message }, 'feed state unreachable; what is enforced stays, trying again');
      this.stateFailing = true;
    }
  }

  /** Pulls while holding the lock, and writes the outcome if the lock is still ours. */
  private async pull(token: string): Promise<void> {
    const started = this.now();
    const before = await this.o.state.read(this.name);
    const previous = before?.data ? this.decode(before.data) : null;
    // entries that cannot be read make APIBAN's cursor worthless too: start again from the beginning
    const cursor = before?.data && !previous ? '' : (before?.cursor ?? '');
    const deadline = new AbortController();
    const onStop = (): void => deadline.abort();
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    // the requests end before the lease does, so a slow source never has two nodes pulling at once
    const timer = setTimeout(() => deadline.abort(), leaseFor(this.o.timeoutMs) - 5_000);
    timer.unref();
    let result: PullResult;
    try {
      result = await this.o.source.pull({ previous, cursor, now: started, signal: deadline.signal });
    } catch (err) {
      if (this.stopped) {
        // stopping is not the feed's failure: hand the lock back so another node pulls now, and record nothing
        await this.o.state.commit(this.name, token, { fields: {} }, 1).catch(() => undefined);
        return;
      }
      await this.failed(token, before, err);
      return;
    } finally {
      clearTimeout(timer);
      this.abort.signal.removeEventListener('abort', onStop);
    }
    const interval = this.o.source.intervalMs;
    const failures = result.error ? (before?.failures ?? 0) + 1 : 0;
    const data = result.entries.encode();
    // the same entries as before: the version stays, so no node reads them again
    const changed = !previous || !before?.data || !data.equals(before.data);
    const version = await this.o.state.commit(
      this.name,
      token,
      {
        ...(changed ? { data } : {}),
        fields: {
          cursor: result.cursor,
          pulledAt: started,
          node: this.o.nodeId,
          failures,
          error: result.error?.message ?? '',
          ...(result.error ? { errorAt: this.now() } : {}),
          stats: JSON.stringify(result.stats),
        },
      },
      result.error ? backoff(failures, interval) : interval,
    );
    if (version === null) {
      this.log.warn(
        { ms: this.now() - started },
        'feed pull outlasted its lock (another node may have pulled meanwhile); its result is dropped',
      );
      return;
    }
    this.o.metrics?.pulls.inc({ feed: this.name });
    this.o.metrics?.lastSuccess.set({ feed: this.name }, started / 1000);
    this.log.info({ version, changed, ms: this.now() - started, ...result.stats, from: this.o.source.where }, 'feed pulled');
    if (result.error) this.reportFailure(result.error, failures, interval, 'feed pull stopped early; what it read is kept');
    if (!changed) {
      this.version = version;
      return;
    }
    const record: FeedRecord = {
      version,
      data: null,
      cursor: result.cursor,
      pulledAt: started,
      node: this.o.nodeId,
      failures,
      error: result.error?.message ?? '',
      errorAt: 0,
      stats: JSON.stringify(result.stats),
      next: 0,
    };
    await this.adopt(record, result.entries);
  }

  private async failed(token: string, before: FeedRecord | null, err: unknown): Promise<void> {
    const failures = (before?.failures ?? 0) + 1;
    const interval = this.o.source.intervalMs;
    const message = err instanceof FeedError ? err.message : `unexpected error: ${(err as Error).message}`;
    await this.o.state.commit(this.name, token, { fields: { failures, error: message, errorAt: this.now() } }, backoff(failures, interval));
    this.reportFailure(
      err instanceof FeedError ? err : new FeedError(message),
      failures,
      interval,
      'feed pull failed; what is enforced stays',
    );
  }

  private reportFailure(err: FeedError, failures: number, interval: number, msg: string): void {
    this.o.metrics?.errors.inc({ feed: this.name });
    this.log.warn({ err: err.message, kind: err.kind, failures, retryInMs: backoff(failures, interval), from: this.o.source.where }, msg);
  }

  /** null (logged) when the record's bytes are not a packed feed: what is enforced then stays as it is */
  private decode(data: Buffer): FeedEntries | null {
    try {
      return FeedEntries.decode(data, this.o.maxEntries);
    } catch (err) {
      if (!(err instanceof FeedDataError)) throw err;
      this.log.error({ err: err.message }, "the feed's entries in the store are unreadable; what is enforced stays");
      return null;
    }
  }

  /** Enforces a record's entries (as pulled here, or read from the store) on this node. */
  private async adopt(record: FeedRecord, pulled: FeedEntries | null): Promise<void> {
    this.version = record.version;
    this.o.metrics?.lastSuccess.set({ feed: this.name }, record.pulledAt / 1000);
    const raw = pulled ?? (record.data ? this.decode(record.data) : null);
    if (!raw || raw.withSeen !== this.o.source.withSeen) {
      if (raw) this.log.error("the feed's entries in the store are of another kind of feed; what is enforced stays");
      return;
    }
    this.raw = raw;
    const started = performance.now();
    const { view, stats } = this.view(raw);
    const { added, removed, applyMs } = await this.o.enforcer.setView(this.name, view, this.applying);
    // how long enforcing took here, and how much of it was the firewall's writes (the rest: this node's view, the diff)
    const ms = Math.round(performance.now() - started);
    const pulledStats = parseStats(record.stats);
    const m = this.o.metrics;
    if (m) {
      m.entries.set({ feed: this.name }, view.entries.size);
      m.skipped.set({ feed: this.name, why: 'garbage' }, pulledStats.garbage);
      m.skipped.set({ feed: this.name, why: 'too-wide' }, pulledStats.tooWide);
      m.skipped.set({ feed: this.name, why: 'refused' }, stats.refused);
      m.skipped.set({ feed: this.name, why: 'split' }, stats.split);
    }
    const fields = {
      version: record.version,
      entries: view.entries.size,
      added,
      removed,
      refused: stats.refused,
      split: stats.split,
      by: record.node,
      applied: this.applying,
      ms,
      firewallMs: applyMs,
    };
    if (added + removed > 0 || !this.applying) this.log.info(fields, 'feed enforced');
    else this.log.debug(fields, 'feed enforced');
  }

  private view(raw: FeedEntries): { view: { entries: FeedEntries; untilOf: (seen: number, now: number) => number }; stats: ViewStats } {
    const { entries, stats } = enforcedView(raw, this.policy);
    if (stats.refused > 0 || stats.split > 0) {
      this.log.debug({ refused: stats.refused, split: stats.split }, 'feed entries refused or split around protected addresses');
    }
    const source = this.o.source;
    return { view: { entries, untilOf: (seen, now) => source.untilOf(seen, now) }, stats };
  }
}

function parseStats(text: string): { garbage: number; tooWide: number } {
  try {
    const s = JSON.parse(text) as { garbage?: unknown; tooWide?: unknown };
    const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
    return { garbage: n(s.garbage), tooWide: n(s.tooWide) };
  } catch {
    return { garbage: 0, tooWide: 0 };
  }
}
