// What the daemon does for the CLI's verbs on its control socket. It owns the store, the kernel sets and the fleet
// link, so a verb works whatever the store: the embedded one (which lives only in this process), and Redis while it
// is down (a ban goes to the local fallback and is written back like the daemon's own; reads answer from what this
// node enforces). A ban or unban made here is told to the fleet and to the webhook by this daemon, once: the fleet's
// other daemons apply it without announcing it again.
import { hostname } from 'node:os';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { IpTarget } from '../net/ip.js';
import type { Policy } from '../policy/policy.js';
import type { BanRecord, Failing, Store } from '../store/store.js';
import { isUnavailable, type FallbackState } from '../store/fallback-store.js';
import { formatDuration } from '../config/duration.js';
import { activeBanRecords, failingView } from '../cli/records.js';
import { PAGE_SIZE, RequestError, type ControlRequest } from './protocol.js';
import type { ControlHandler, PageWriter } from './server.js';

/** What the verbs need of the daemon itself (src/daemon/daemon.ts). */
export interface EnforcingDaemon {
  applyBan(target: IpTarget, until: number): void;
  applyUnban(target: IpTarget): void;
  enforcing(target: IpTarget): Array<{ readonly target: IpTarget; readonly until: number }>;
  enforced(): IterableIterator<[target: IpTarget, until: number]>;
}

/** The local fallback in front of Redis, when there is one (src/store/fallback-store.ts). */
export interface LocalFallback {
  reachable(): boolean;
  readonly local: Store;
  decidedLocally(ban: BanRecord): boolean;
  readonly state: FallbackState;
}

export interface DaemonVerbsOptions {
  readonly daemon: EnforcingDaemon;
  readonly store: Store;
  readonly fallback?: LocalFallback;
  /** resolves once every ban and unban handed to the firewall is in the kernel */
  readonly commit: () => Promise<void>;
  readonly fleet: { publishBan(ban: BanRecord): Promise<void>; publishUnban(address: string): Promise<void> };
  readonly notifier?: { notifyBan(ban: BanRecord): void; notifyUnban(address: string, by: string): void };
  /** the policy and default bantime in force now (a reload replaces them) */
  readonly settings: () => { readonly policy: Policy; readonly bantimeMs: number };
  /** this daemon's own facts for `status` (built where the parts are wired) */
  readonly about: () => Promise<Record<string, unknown>>;
  /** the fleet's node status records, when the store is Redis */
  /** the fleet's status records; `skipped` is called for each one that cannot be read */
  readonly nodes?: (skipped: () => void) => Promise<unknown[]>;
  /** the Redis the store is, in words safe to print */
  readonly storeUrl?: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
}

/** Why a write did not reach the store, in this project's words (the library's own message follows, for the detail). */
function storeFailure(err: unknown, fallback: LocalFallback | undefined): string {
  const detail = String((err as Error).message ?? err)
    .split('\n')[0]!
    .slice(0, 200);
  if (!isUnavailable(err)) return `the store refused it: ${detail}`;
  return fallback
    ? `the store could not be written (${detail})`
    : `Redis cannot be reached and the local fallback is off (redis.fallback.maxAddresses 0): nothing was recorded (${detail})`;
}

/** failing targets a status answer names: the CLI prints 5 of them, --json all */
const FAILING_SHOWN = 20;
const LOCAL_FAILING = "counted by this daemon alone since Redis went away (its local fallback store), not the fleet's windows";

/** What a read answers from while the store cannot be read: said in every such answer. */
function degradedNote(why: string): string {
  return `the store cannot be read (${why}): this answer comes from what this daemon enforces and decided since Redis went away`;
}

export class DaemonVerbs implements ControlHandler {
  private readonly now: () => number;
  private readonly by = `ami-guard unban on ${hostname()}`;

  constructor(private readonly o: DaemonVerbsOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The audit log's source of an operator's ban or unban: the CLI on this host, and who ran it (as it says). */
  private source(user: string): { source: 'cli'; user: string | null; by: string } {
    return { source: 'cli', user: user || null, by: 'control socket' };
  }

  handle(req: ControlRequest, out: PageWriter): Promise<unknown> {
    switch (req.verb) {
      case 'list':
        return this.list(out);
      case 'show':
        return this.show(req.target);
      case 'ban':
        return this.ban(req.targets, req.durationMs, req.note, req.user);
      case 'unban':
        return this.unban(req.targets, req.user);
      case 'status':
        return this.status();
    }
  }

  /** whether the store is worth asking: not while the fallback knows Redis is away */
  private readable(): boolean {
    return this.o.fallback ? this.o.fallback.reachable() : true;
  }

  private async list(out: PageWriter): Promise<unknown> {
    const now = this.now();
    if (this.readable()) {
      let sent = 0;
      try {
        for await (const entries of activeBanRecords(this.o.store, now)) {
          if (out.aborted) return null;
          for (let i = 0; i < entries.length; i += PAGE_SIZE) {
            await out.page(entries.slice(i, i + PAGE_SIZE).map((e) => ({ ...e.record, address: e.target.text })));
            sent++;
          }
        }
        return { source: 'store' };
      } catch (err) {
        // a listing cut in the middle cannot be patched up from elsewhere: the CLI says it failed
        if (sent > 0 || !isUnavailable(err)) throw err;
        return this.listEnforced(out, (err as Error).message);
      }
    }
    return this.listEnforced(out, 'Redis unreachable');
  }

  /** The bans in force here; those decided since Redis went away with their records, the others with their end only. */
  private async listEnforced(out: PageWriter, why: string): Promise<unknown> {
    const now = this.now();
    const records = new Map<string, BanRecord>();
    const local = this.o.fallback?.local;
    if (local) {
      for await (const entries of activeBanRecords(local, now))
        for (const e of entries) records.set(e.target.text, { ...e.record, address: e.target.text });
    }
    let page: unknown[] = [];
    for (const [target, until] of this.o.daemon.enforced()) {
      page.push(records.get(target.text) ?? { address: target.text, until });
      if (page.length === PAGE_SIZE) {
        await out.page(page);
        page = [];
        if (out.aborted) return null;
      }
    }
    if (page.length > 0) await out.page(page);
    return { source: 'enforced', note: degradedNote(why) };
  }

  private async show(target: IpTarget): Promise<unknown> {
    const now = this.now();
    const { policy } = this.o.settings();
    const covering = this.o.daemon.enforcing(target);
    let from: Store | undefined = this.o.store;
    let note: string | undefined;
    if (!this.readable()) {
      note = degradedNote('Redis unreachable');
      from = this.o.fallback?.local;
    }
    const read = (s: Store | undefined) =>
      Promise.all([
        s ? s.getBan(target, now) : null,
        s ? s.recentFailures(target) : [],
        s ? s.history(target) : [],
        s ? s.trustedUntil(target, now) : null,
      ]);
    let facts: Awaited<ReturnType<typeof read>>;
    try {
      facts = await read(from);
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      note = degradedNote((err as Error).message);
      from = this.o.fallback?.local;
      facts = await read(from);
    }
    const [ban, failures, history, trustedUntil] = facts;
    const coveredBy = await this.networks(target, covering, from);
    const own = covering.find((c) => c.target.text === target.text);
    return {
      address: target.text,
      ban,
      // enforced here, with or without a record to show (one from before the outage cannot be read now)
      enforcedUntil: own ? own.until : null,
      failures,
      history,
      trustedUntil,
      ignored: policy.ignore.covers(target),
      coveredBy,
      ...(note ? { note } : {}),
    };
  }

  private async ban(targets: readonly IpTarget[], durationMs: number | null, note: string, user: string): Promise<unknown> {
    const { policy, bantimeMs } = this.o.settings();
    // every target checked before anything is written: one refused means none applied
    for (const t of targets) {
      const why = policy.refusal(t);
      if (why) throw new RequestError(`refusing to ban ${t.text}: ${why}`);
    }
    const duration = durationMs ?? bantimeMs;
    const done: BanRecord[] = [];
    let local = false;
    try {
      for (const target of targets) {
        const now = this.now();
        const ban = await this.o.store.ban({ target, reason: 'manual', durationMs: duration, now, ...(note ? { note } : {}) });
        this.o.daemon.applyBan(target, ban.until);
        done.push(ban);
        this.o.metrics.bans.inc({ reason: 'manual' });
        this.o.logger.info(
          {
            event: 'ban',
            address: target.text,
            reason: 'manual',
            ...(note ? { note } : {}),
            duration: formatDuration(duration),
            until: new Date(ban.until).toISOString(),
            ...this.source(user),
          },
          `ban ${target.text}`,
        );
        this.o.notifier?.notifyBan(ban);
        if (this.o.fallback?.decidedLocally(ban)) {
          local = true; // the fleet hears of it with the write-back
        } else {
          this.o.fleet.publishBan(ban).catch((err: unknown) => {
            this.o.logger.warn({ address: target.text, err: (err as Error).message }, 'ban not published to the fleet');
          });
        }
      }
    } catch (err) {
      await this.o.commit();
      if (err instanceof RangeError || err instanceof TypeError) throw new RequestError((err as Error).message);
      throw new Error(
        `${done.length ? `banned ${done.map((b) => b.address).join(', ')}; then ` : ''}${storeFailure(err, this.o.fallback)}`,
      );
    }
    await this.o.commit();
    return {
      bans: done,
      ...(local ? { note: 'Redis unreachable: kept in the local fallback store and written back to Redis when it answers' } : {}),
    };
  }

  private async unban(targets: readonly IpTarget[], user: string): Promise<unknown> {
    const results = [];
    let deferred = false;
    for (const target of targets) {
      const covering = this.o.daemon.enforcing(target);
      let stored: boolean;
      try {
        stored = await this.o.store.unban(target);
      } catch (err) {
        await this.o.commit();
        const lifted = results.filter((r) => r.wasBanned).map((r) => r.address);
        throw new Error(`${lifted.length ? `unbanned ${lifted.join(', ')}; then ` : ''}${storeFailure(err, this.o.fallback)}`);
      }
      const wasBanned = stored || covering.some((c) => c.target.text === target.text);
      this.o.daemon.applyUnban(target);
      if (this.o.fallback && !this.o.fallback.reachable()) {
        deferred = true; // the fallback lifts it in Redis, and the fleet hears of it, once Redis answers
      } else {
        this.o.fleet.publishUnban(target.text).catch((err: unknown) => {
          this.o.logger.warn({ address: target.text, err: (err as Error).message }, 'unban not published to the fleet');
        });
      }
      if (wasBanned) {
        this.o.metrics.unbans.inc({ source: 'cli' });
        this.o.logger.info({ event: 'unban', address: target.text, ...this.source(user) }, `unban ${target.text}`);
        this.o.notifier?.notifyUnban(target.text, this.by);
      }
      const coveredBy = await this.networks(target, covering, this.readable() ? this.o.store : this.o.fallback?.local);
      results.push({ address: target.text, wasBanned, coveredBy });
    }
    await this.o.commit();
    return {
      results,
      ...(deferred ? { note: 'Redis unreachable: lifted here now, in Redis and on the other PBXs once Redis answers' } : {}),
    };
  }

  /** The enforced networks that contain `target`, with what their records say (when they can be read). */
  private async networks(
    target: IpTarget,
    covering: ReturnType<EnforcingDaemon['enforcing']>,
    from: Store | undefined,
  ): Promise<unknown[]> {
    const now = this.now();
    const out = [];
    for (const c of covering) {
      if (c.target.text === target.text) continue;
      const rec = from ? await from.getBan(c.target, now).catch(() => null) : null;
      // the record's end when it can be read: the cache keeps ends rounded up to the second, as the kernel does
      out.push({
        network: c.target.text,
        until: rec ? rec.until : c.until,
        ...(rec ? { reason: rec.reason, node: rec.node, ...(rec.note ? { note: rec.note } : {}) } : {}),
      });
    }
    return out;
  }

  /**
   * The targets counting toward a ban (times in ms; the CLI formats them). While Redis cannot be read, the local
   * fallback's, said so; null when neither can be read.
   */
  private async failing(now: number): Promise<unknown> {
    let f: Failing;
    try {
      f = await (this.readable() ? this.o.store : (this.o.fallback?.local ?? this.o.store)).failing(now, FAILING_SHOWN);
      if (!this.readable()) f = { ...f, local: true };
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      return null;
    }
    return { ...failingView(f), ...(f.local ? { note: LOCAL_FAILING } : {}) };
  }

  private async status(): Promise<unknown> {
    const now = this.now();
    const about = await this.o.about();
    let bans: { active: number; byReason: Record<string, number> } | null = null;
    let nodes: unknown[] | null = null;
    let unreadableNodes = 0;
    let note: string | undefined;
    try {
      if (!this.readable()) throw new Error('Redis unreachable');
      const byReason: Record<string, number> = {};
      let active = 0;
      for await (const entries of activeBanRecords(this.o.store, now)) {
        for (const { record } of entries) {
          active++;
          byReason[record.reason] = (byReason[record.reason] ?? 0) + 1;
        }
      }
      bans = { active, byReason };
      nodes = this.o.nodes ? await this.o.nodes(() => unreadableNodes++) : null;
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      note = degradedNote((err as Error).message);
    }
    const failing = await this.failing(now);
    let enforced = 0;
    for (const _ of this.o.daemon.enforced()) enforced++;
    return {
      ...about,
      store: {
        kind: this.o.store.kind,
        ...(this.o.storeUrl ? { url: this.o.storeUrl } : {}),
        reachable: note === undefined,
        ...(this.o.fallback ? { fallback: this.o.fallback.state } : {}),
      },
      bans,
      failing,
      enforced,
      nodes,
      ...(unreadableNodes ? { unreadableNodes } : {}),
      ...(note ? { note } : {}),
    };
  }
}
