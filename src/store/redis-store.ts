// The shared store: a fleet of PBXs pointed at one Redis sees one failure window and one ban per target. A batch of
// activity is one EVALSHA (one per node on a Cluster); the layout (keys.ts, codec.ts, lua/) is in docs/fleet.md.
import { randomBytes } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import { parseTarget, type IpAddress, type IpPrefix, type IpTarget } from '../net/ip.js';
import type { Logger } from '../log.js';
import { ACCOUNT_MAX, HISTORY_CAP, REASON_MAX, checkBatch, checkTime, counted, storedAccount } from './activity.js';
import {
  b36,
  banOf,
  decodeText,
  encodeText,
  fromB36,
  historyOf,
  membersOf,
  parseRecord,
  parseWindow,
  printable,
  recentOf,
  trustedUntilOf,
} from './codec.js';
import { TopFailing, checkLimit, countWithin, thresholdOf, type Candidate } from './failing.js';
import { BUCKETS, KeySpace, bucketOf, slotOf, tagOf } from './keys.js';
import { codesOf, tallyCodes } from './kinds.js';
import { integer, storeScripts, type ActivityRule, type BanRule, type StoreScripts } from './scripts.js';
import type {
  ActiveBan,
  ActivityVerdict,
  BanRecord,
  Failing,
  HistoryEntry,
  ManualBanInput,
  PolicyParams,
  RecentFailure,
  RestoredBan,
  RestoreResult,
  Store,
  StoreIdentity,
  TargetActivity,
} from './store.js';

export { ACCOUNT_MAX, HISTORY_CAP, REASON_MAX } from './activity.js';
export { checkFailure } from './activity.js';

const PAGE_SIZE = 5_000;
/** event letters sent per entry at most: the script needs the count of events to cut a batch at the threshold */
const MAX_CODES = 1_000;
/** index buckets per active-bans.lua call */
const INDEX_READ_WIDTH = 256;
/** calls sent ahead of the part being read */
const INDEX_READ_AHEAD = 2;
/** bans re-seeded at once (restoreBans) */
const RESTORE_WIDTH = 1_000;

export interface RedisStoreOptions {
  readonly client: Redis | Cluster;
  /** `redis.keyPrefix`, e.g. `ami-guard:` */
  readonly keyPrefix: string;
  /** node.id, written into every ban and history entry */
  readonly nodeId: string;
  readonly policy: PolicyParams;
  /** where entries of Redis that cannot be used (a bad index member) are reported */
  readonly logger?: Logger;
}

/** The outcome of a batch whose parts went to several Cluster nodes: some may have failed while others counted. */
export interface ActivityParts {
  /** in the batch's order; undefined where the part failed */
  readonly verdicts: Array<ActivityVerdict | undefined>;
  /** the entries of each failed part, and why */
  readonly failed: Array<{ readonly indices: readonly number[]; readonly error: unknown }>;
}

interface Group {
  readonly indices: number[];
  readonly entries: string[];
  readonly routingKey: string;
}

/** what one item of a script call touches: its bucket (and so its node), and its text */
interface GroupItem {
  readonly bucket: number;
  readonly entry: string;
}

/** A network holding a trusted address that crossed a threshold in record-activity.lua: its source is banned instead. */
interface Crossing {
  /** in the batch */
  readonly index: number;
  readonly reason: 'failures' | 'scanner';
  readonly count: number;
  readonly codes: string;
  readonly first: number;
  readonly last: number;
  /** percent-encoded, as stored */
  readonly account: string;
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  private readonly client: Redis | Cluster;
  private readonly keys: KeySpace;
  private scripts: StoreScripts;
  private readonly nodeId: string;
  private readonly prefix: string;
  private policy: PolicyParams;
  private rule: ActivityRule;
  private readonly log: Logger | undefined;

  constructor(opts: RedisStoreOptions) {
    this.client = opts.client;
    this.keys = new KeySpace(opts.keyPrefix);
    this.nodeId = opts.nodeId;
    this.prefix = opts.keyPrefix;
    this.policy = checkPolicy(opts.policy);
    this.log = opts.logger;
    // a window lives in the epoch it was written in and the next one: an epoch at least as long as both windows
    this.rule = activityRule(this.policy, this.nodeId, Math.max(this.policy.findtimeMs, this.policy.scanner.findtimeMs));
    this.scripts = storeScripts(opts.client, opts.keyPrefix, this.rule);
  }

  /**
   * A reloaded policy (SIGHUP): the next script call carries it; what Redis holds stays. The window epoch (where the
   * failure windows live) stays as long as the new windows fit in it, so the counts in flight are kept; a longer
   * findtime needs a longer epoch, and the windows counted so far then start again (logged).
   */
  setPolicy(params: PolicyParams): void {
    const policy = checkPolicy(params);
    const needed = Math.max(policy.findtimeMs, policy.scanner.findtimeMs);
    const epoch = Math.max(needed, this.rule.windowEpochMs);
    if (needed > this.rule.windowEpochMs) {
      this.log?.warn(
        { findtime: needed, before: this.rule.windowEpochMs },
        'a longer findtime needs a new window layout: failures counted so far start again',
      );
    }
    this.rule = activityRule(policy, this.nodeId, epoch);
    this.scripts = storeScripts(this.client, this.prefix, this.rule);
    this.policy = policy;
  }

  async recordActivity(batch: readonly TargetActivity[], now: number): Promise<ActivityVerdict[]> {
    const parts = await this.recordActivityParts(batch, now);
    if (parts.failed.length > 0) throw parts.failed[0]!.error;
    return parts.verdicts as ActivityVerdict[];
  }

  /**
   * recordActivity, telling which entries were counted when a Cluster node failed and others did not (the fallback
   * store counts those entries locally, and only those).
   *
   * A batch is one record-activity.lua call per node. What its verdicts set off in other buckets follows in
   * escalate.lua calls, only when there is any: the ban of the source address of a network that crossed its
   * threshold while holding a trusted address, then (subnet escalation on) each new ban counted in its subnet and
   * each trusting login marked in its subnet. Not in the same call, for on a Cluster those buckets live on other
   * nodes, and one path for every topology is one path to test; bans are rare next to events, so the second round
   * trip is too.
   */
  async recordActivityParts(batch: readonly TargetActivity[], now: number): Promise<ActivityParts> {
    checkBatch(batch, now);
    const verdicts: Array<ActivityVerdict | undefined> = new Array<ActivityVerdict | undefined>(batch.length);
    const crossings: Crossing[] = [];
    const failed = await this.inGroups(
      batch.length,
      (i) => {
        const a = batch[i]!;
        const bucket = bucketOf(a.target);
        return { bucket, entry: this.entry(a, bucket) };
      },
      (g) => this.scripts.recordActivity({ routingKey: g.routingKey, now, entries: g.entries }),
      (reply, g, moved) => {
        const found: Crossing[] = [];
        this.decode(reply, batch, g.indices, now, verdicts, moved, found);
        crossings.push(...found);
      },
    );
    if (crossings.length > 0) failed.push(...(await this.banSources(batch, crossings, now, verdicts)));
    if (this.rule.subnetMaxbans > 0) await this.escalate(batch, now, verdicts);
    return { verdicts, failed };
  }

  private refreshSlots(): Promise<void> {
    const client = this.client;
    if (!(client instanceof Cluster)) return Promise.resolve();
    return new Promise((resolve) => client.refreshSlotsCache(() => resolve()));
  }

  /**
   * Runs one script over `n` items, one call per Cluster node (one call elsewhere); the items a node answered as
   * moved (its slot map was out of date) are sent again where they now live. Returns the parts that failed.
   */
  private async inGroups(
    n: number,
    item: (i: number) => GroupItem,
    call: (g: Group) => Promise<unknown[]>,
    decode: (reply: unknown[], g: Group, moved: number[]) => void,
  ): Promise<Array<{ indices: number[]; error: unknown }>> {
    const failed: Array<{ indices: number[]; error: unknown }> = [];
    let pending: number[] | undefined;
    for (let attempt = 1; n > 0; attempt++) {
      const moved: number[] = [];
      await Promise.all(
        this.group(n, pending, item).map(async (g) => {
          try {
            decode(await call(g), g, moved);
          } catch (err) {
            failed.push({ indices: g.indices, error: err });
          }
        }),
      );
      if (moved.length === 0) break;
      // Cluster slots moved since the slot map was read (resharding, failover): the script did nothing for these
      if (attempt === 3) {
        failed.push({ indices: moved, error: new Error('Redis Cluster slots kept moving; entries not recorded there') });
        break;
      }
      await this.refreshSlots();
      pending = moved;
    }
    return failed;
  }

  /** One part per Cluster node (by the slot map ioredis routes with); everything in one part elsewhere. */
  private group(n: number, only: readonly number[] | undefined, item: (i: number) => GroupItem): Group[] {
    const slots = this.client instanceof Cluster ? this.client.slots : undefined;
    const byNode = new Map<string, Group>();
    let single: Group | undefined;
    const count = only ? only.length : n;
    for (let k = 0; k < count; k++) {
      const i = only ? only[k]! : k;
      const { bucket, entry } = item(i);
      if (!slots) {
        single ??= { indices: [], entries: [], routingKey: this.keys.index(bucket) };
        single.indices.push(i);
        single.entries.push(entry);
        continue;
      }
      const slot = slotOf(bucket);
      // before the slot map is known, each slot goes on its own (ioredis then routes it)
      const node = slots[slot]?.[0] ?? `slot:${slot}`;
      let g = byNode.get(node);
      if (!g) {
        g = { indices: [], entries: [], routingKey: this.keys.index(bucket) };
        byNode.set(node, g);
      }
      g.indices.push(i);
      g.entries.push(entry);
    }
    return single ? [single] : [...byNode.values()];
  }

  /** `<tag>|<target>|<failures>|<codes>|<challenges>|<successes>|<trust>|<first36>|<last36>|<account>` */
  private entry(a: TargetActivity, bucket: number): string {
    const codes = a.failures > 0 ? codesOf(a.kinds, MAX_CODES) : '';
    const account = a.failures > 0 && a.account !== '' ? encodeText(storedAccount(a.account)) : '';
    return `${tagOf(bucket)}|${a.target.text}|${a.failures}|${codes}|${a.challenges}|${a.successes}|${a.trust ? 1 : 0}|${b36(a.first)}|${b36(a.last)}|${account}`;
  }

  private decode(
    reply: unknown[],
    batch: readonly TargetActivity[],
    indices: readonly number[],
    now: number,
    out: Array<ActivityVerdict | undefined>,
    moved: number[],
    crossings: Crossing[],
  ): void {
    const script = 'record-activity.lua';
    const counts = (reply[0] as string).split(',');
    if (counts.length !== indices.length) throw new TypeError(`${script} answered ${counts.length} counts for ${indices.length} entries`);
    for (let j = 0; j < indices.length; j++) out[indices[j]!] = countOf(counts[j]!, this.rule.reach);
    for (let k = 1; k < reply.length;) {
      const j = integer(reply[k], script) - 1;
      const i = indices[j];
      if (i === undefined) throw new TypeError(`${script} answered for entry ${j + 1} of ${indices.length}`);
      const type = reply[k + 1];
      if (type === 'm') {
        out[i] = undefined;
        moved.push(i);
        k += 2;
        continue;
      }
      if (type === 't') {
        // decided by the source's own record, in banSources
        const reason = String(reply[k + 2]);
        if (reason !== 'failures' && reason !== 'scanner') throw new TypeError(`${script} answered the reason ${JSON.stringify(reason)}`);
        const first = fromB36(String(reply[k + 5]));
        const last = fromB36(String(reply[k + 6]));
        const codes = String(reply[k + 4]);
        if (first === undefined || last === undefined || !/^[A-Z]{0,1000}$/.test(codes))
          throw new TypeError(`${script} answered an invalid crossing`);
        out[i] = undefined;
        crossings.push({
          index: i,
          reason,
          count: integer(reply[k + 3], script),
          codes,
          first,
          last,
          // as stored: percent-encoded by us, or by whoever wrote the window; normalised so it stays one field
          account: reply[k + 7] ? encodeText(decodeText(String(reply[k + 7]), ACCOUNT_MAX)) : '',
        });
        k += 8;
        continue;
      }
      const until = fromB36(String(reply[k + 2]));
      if (until === undefined) throw new TypeError(`${script} answered an invalid until ${JSON.stringify(reply[k + 2])}`);
      if (type === 'a') {
        out[i] = { type: 'already-banned', until };
        k += 3;
        continue;
      }
      if (type !== 'b') throw new TypeError(`${script} answered ${JSON.stringify(type)}`);
      out[i] = { type: 'banned', ban: this.thresholdBan(batch[i]!.target, reply.slice(k + 2, k + 10), now, script) };
      k += 10;
    }
  }

  /** A ban as the scripts answer it: `<until>, <count>, <codes>, <first>, <last>, <prev>, <reason>, <account>`. */
  private thresholdBan(target: IpTarget, r: unknown[], now: number, script: string): BanRecord {
    const account = r[7] ? decodeText(String(r[7]), ACCOUNT_MAX) : '';
    return {
      address: target.text,
      reason: String(r[6]),
      kinds: tallyCodes(String(r[2])),
      count: integer(r[1], script),
      firstSeen: fromB36(String(r[3])) ?? now,
      lastSeen: fromB36(String(r[4])) ?? now,
      bannedAt: now,
      until: fromB36(String(r[0]))!,
      node: this.nodeId,
      previousBans: integer(r[5], script),
      ...(account ? { account } : {}),
    };
  }

  /**
   * The networks that crossed a threshold while holding a trusted address: the address that sent the failures is
   * banned instead, in its own bucket, escalated by its own history. Returns the parts that failed, by batch index.
   */
  private async banSources(
    batch: readonly TargetActivity[],
    crossings: readonly Crossing[],
    now: number,
    out: Array<ActivityVerdict | undefined>,
  ): Promise<Array<{ indices: number[]; error: unknown }>> {
    const items: Array<{ crossing: Crossing; source: IpAddress }> = [];
    for (const c of crossings) {
      const source = batch[c.index]!.source;
      // nobody to ban: the network's window has started afresh, and it is never banned whole while it holds trust
      if (source) items.push({ crossing: c, source });
      else out[c.index] = counted(c.count);
    }
    const script = 'escalate.lua';
    const failed = await this.inGroups(
      items.length,
      (k) => {
        const { crossing: c, source } = items[k]!;
        const bucket = bucketOf(this.keys.check(source));
        return {
          bucket,
          entry: `a|${tagOf(bucket)}|${source.text}|${c.reason}|${c.count}|${c.codes}|${b36(c.first)}|${b36(c.last)}|${c.account}`,
        };
      },
      (g) => this.scripts.escalate({ routingKey: g.routingKey, now, entries: g.entries }),
      (reply, g, moved) => {
        for (let k = 0; k < reply.length;) {
          const j = integer(reply[k], script) - 1;
          const at = g.indices[j];
          if (at === undefined) throw new TypeError(`${script} answered for item ${j + 1} of ${g.indices.length}`);
          const { crossing, source } = items[at]!;
          const type = reply[k + 1];
          if (type === 'm') {
            moved.push(at);
            k += 2;
          } else if (type === 'a') {
            const until = fromB36(String(reply[k + 2]));
            if (until === undefined) throw new TypeError(`${script} answered an invalid until`);
            out[crossing.index] = { type: 'already-banned', until, target: source };
            k += 3;
          } else if (type === 'b') {
            out[crossing.index] = {
              type: 'banned',
              ban: this.thresholdBan(source, reply.slice(k + 2, k + 10), now, script),
              target: source,
            };
            k += 10;
          } else {
            throw new TypeError(`${script} answered ${JSON.stringify(type)}`);
          }
        }
      },
    );
    return failed.map((f) => ({ indices: f.indices.map((k) => items[k]!.crossing.index), error: f.error }));
  }

  /**
   * Subnet escalation: each new ban counted in its subnet, each trusting login marked there (first, so a subnet
   * whose phone logged in within this batch is not banned by it). A failure here loses a count, never a ban already
   * decided: it is logged, and the batch's verdicts stand.
   */
  private async escalate(batch: readonly TargetActivity[], now: number, out: Array<ActivityVerdict | undefined>): Promise<void> {
    const items: Array<{ index: number; subnet: IpPrefix; member: string | null }> = [];
    const bans: typeof items = [];
    for (let i = 0; i < batch.length; i++) {
      const a = batch[i]!;
      const v = out[i];
      if (!a.subnet || !v) continue;
      if (a.trust && a.successes > 0) items.push({ index: i, subnet: a.subnet, member: null });
      if (v.type === 'banned') bans.push({ index: i, subnet: a.subnet, member: (v.target ?? a.target).text });
    }
    items.push(...bans);
    if (items.length === 0) return;
    const script = 'escalate.lua';
    const failed = await this.inGroups(
      items.length,
      (k) => {
        const { subnet, member } = items[k]!;
        const bucket = bucketOf(this.keys.check(subnet));
        return { bucket, entry: member === null ? `t|${tagOf(bucket)}|${subnet.text}` : `s|${tagOf(bucket)}|${subnet.text}|${member}` };
      },
      (g) => this.scripts.escalate({ routingKey: g.routingKey, now, entries: g.entries }),
      (reply, g, moved) => {
        for (let k = 0; k < reply.length;) {
          const j = integer(reply[k], script) - 1;
          const at = g.indices[j];
          if (at === undefined) throw new TypeError(`${script} answered for item ${j + 1} of ${g.indices.length}`);
          const type = reply[k + 1];
          if (type === 'm') {
            moved.push(at);
            k += 2;
            continue;
          }
          if (type !== 's') throw new TypeError(`${script} answered ${JSON.stringify(type)}`);
          const { index, subnet } = items[at]!;
          const v = out[index];
          const until = fromB36(String(reply[k + 2]));
          if (until === undefined) throw new TypeError(`${script} answered an invalid until`);
          const ban: BanRecord = {
            address: subnet.text,
            reason: 'subnet',
            kinds: {},
            count: integer(reply[k + 3], script),
            firstSeen: fromB36(String(reply[k + 4])) ?? now,
            lastSeen: fromB36(String(reply[k + 5])) ?? now,
            bannedAt: now,
            until,
            node: this.nodeId,
            previousBans: integer(reply[k + 6], script),
            members: membersOf(String(reply[k + 7])),
          };
          if (v?.type === 'banned') out[index] = { ...v, subnet: { target: subnet, ban } };
          k += 8;
        }
      },
    ).catch((err: unknown) => [{ indices: [], error: err }]);
    if (failed.length > 0) {
      this.log?.warn({ err: (failed[0]!.error as Error).message }, 'subnet escalation not recorded for a batch; its bans stand');
    }
  }

  async trustedUntil(target: IpTarget, now: number): Promise<number | null> {
    return trustedUntilOf(parseRecord(await this.readRecord(target)), now);
  }

  async ban(input: ManualBanInput): Promise<BanRecord> {
    checkManualBan(input);
    const target = this.keys.check(input.target);
    const bucket = bucketOf(target);
    const until = input.now + input.durationMs;
    const reason = input.reason.slice(0, REASON_MAX);
    const note = (input.note ?? '').slice(0, REASON_MAX);
    const prev = await this.scripts.ban({
      record: this.keys.record(target),
      index: this.keys.index(bucket),
      base: this.base(bucket),
      target: target.text,
      now: input.now,
      until,
      reason: encodeText(reason),
      note: encodeText(note),
      windowEpochMs: this.rule.windowEpochMs,
      node: this.nodeId,
      historyTtlMs: this.policy.historyTtlMs,
      historyCap: HISTORY_CAP,
    });
    return {
      address: target.text,
      reason,
      kinds: {},
      count: 0,
      firstSeen: input.now,
      lastSeen: input.now,
      bannedAt: input.now,
      until,
      node: this.nodeId,
      previousBans: prev,
      ...(note ? { note } : {}),
    };
  }

  /**
   * Writes back a ban decided elsewhere (this node's fallback store while Redis was away), keeping its node and
   * times. Idempotent; resolves to whether it was written (false: a ban as long is already there, or it is over).
   */
  async restoreBan(ban: BanRecord, now: number): Promise<boolean> {
    checkTime(now);
    const target = parseTarget(ban.address);
    if (!target || target.text !== ban.address) throw new RangeError(`invalid ban address ${JSON.stringify(ban.address)}`);
    const bucket = bucketOf(target);
    let codes = '';
    for (const [kind, n] of Object.entries(ban.kinds)) codes += codesOf({ [kind]: n }, 1_000 - codes.length);
    const { written } = await this.scripts.restoreBan({
      record: this.keys.record(target),
      index: this.keys.index(bucket),
      base: this.base(bucket),
      target: target.text,
      now,
      windowEpochMs: this.rule.windowEpochMs,
      until: ban.until,
      bannedAt: ban.bannedAt,
      reason: encodeText(ban.reason.slice(0, REASON_MAX)),
      codes,
      count: ban.count,
      first: ban.firstSeen,
      last: ban.lastSeen,
      node: ban.node,
      historyTtlMs: this.policy.historyTtlMs,
      historyCap: HISTORY_CAP,
      account: encodeText(storedAccount(ban.account ?? '')),
      note: encodeText((ban.note ?? '').slice(0, REASON_MAX)),
      members: membersOf((ban.members ?? []).join(',')).join(','),
    });
    return written;
  }

  /**
   * Re-seeds Redis from the kernel's bans after it lost its data (Store.restoreBans): one restore-ban.lua call per
   * ban in extend mode, RESTORE_WIDTH at a time (ioredis pipelines them), so 100k bans are 100 round trips.
   */
  async restoreBans(bans: readonly RestoredBan[], reason: string, now: number): Promise<RestoreResult> {
    checkTime(now);
    const encoded = encodeText(reason.slice(0, REASON_MAX));
    let written = 0;
    let extended = 0;
    let covered = 0;
    for (let i = 0; i < bans.length; i += RESTORE_WIDTH) {
      const replies = await Promise.all(
        bans.slice(i, i + RESTORE_WIDTH).map((b) => {
          const target = this.keys.check(b.target);
          checkTime(b.until);
          const bucket = bucketOf(target);
          return this.scripts.restoreBan({
            record: this.keys.record(target),
            index: this.keys.index(bucket),
            base: this.base(bucket),
            target: target.text,
            now,
            windowEpochMs: this.rule.windowEpochMs,
            until: b.until,
            bannedAt: now,
            reason: encoded,
            codes: '',
            count: 0,
            first: now,
            last: now,
            node: this.nodeId,
            historyTtlMs: this.policy.historyTtlMs,
            historyCap: HISTORY_CAP,
            account: '',
            note: '',
            extend: true,
            members: '',
          });
        }),
      );
      for (const r of replies) {
        if (r.written) written++;
        else if (r.extended) extended++;
        else covered++;
      }
    }
    return { written, extended, covered };
  }

  async unban(target: IpTarget, now = Date.now()): Promise<boolean> {
    const t = this.keys.check(target);
    const bucket = bucketOf(t);
    return this.scripts.unban({
      record: this.keys.record(t),
      index: this.keys.index(bucket),
      base: this.base(bucket),
      target: t.text,
      now,
      windowEpochMs: this.rule.windowEpochMs,
    });
  }

  async getBan(target: IpTarget, now: number): Promise<BanRecord | null> {
    return banOf(target.text, parseRecord(await this.readRecord(target)), now);
  }

  async recentFailures(target: IpTarget): Promise<RecentFailure[]> {
    const bucket = bucketOf(this.keys.check(target));
    // the window is in the epoch of Redis's clock or the one before; this host's clock may differ a little
    const epoch = Math.floor(Date.now() / this.rule.windowEpochMs);
    const values = await Promise.all(
      [epoch + 1, epoch, epoch - 1].map((e) => this.client.hget(this.keys.window(bucket, e), target.text).catch(wrongType(this.log, null))),
    );
    return recentOf(parseWindow(values.find((v) => v !== null) ?? null));
  }

  /**
   * Store.failing: every bucket's windows of the epochs a live window can be in (Redis's clock, read as this host's,
   * give or take one epoch, as recentFailures does), one HGETALL per key, so on a Cluster each goes to its own node
   * and nothing scans the keyspace. A target's newest window is the one that counts. A bucket with candidates has its
   * part of the ban index read too: a window outliving its target's ban (written by someone else, or a ban made
   * where the window's epoch was not looked at) must not show a banned target as failing. Then the records of the
   * kept few, for their threshold (trusted, known offender). What is read is checked and skipped when unusable.
   */
  async failing(now: number, limit: number): Promise<Failing> {
    checkTime(now);
    const top = new TopFailing<Candidate & { record: boolean }>(checkLimit(limit));
    const cutoff = now - this.policy.findtimeMs;
    const epoch = Math.floor(Date.now() / this.rule.windowEpochMs);
    const skipped = { count: 0, sample: '' };
    for (let from = 0; from < BUCKETS; from += INDEX_READ_WIDTH) {
      const parts = await Promise.all(
        Array.from({ length: Math.min(INDEX_READ_WIDTH, BUCKETS - from) }, (_, i) =>
          this.failingIn(from + i, [epoch + 1, epoch, epoch - 1], cutoff, now, skipped),
        ),
      );
      for (const part of parts) for (const c of part) top.add(c);
    }
    if (skipped.count > 0) {
      this.log?.warn({ skipped: skipped.count, sample: skipped.sample }, 'failure windows that cannot be read were skipped');
    }
    const records = await Promise.all(top.kept.map((c) => (c.record ? this.readRecord(c.target) : Promise.resolve(null))));
    return {
      total: top.total,
      top: top.kept.map((c, i) => {
        const r = parseRecord(records[i] ?? null);
        const offender = historyOf(r).length > 0;
        return {
          target: c.target,
          failures: c.failures,
          last: c.last,
          account: c.account,
          threshold: thresholdOf(this.policy, trustedUntilOf(r, now) !== null, offender),
        };
      }),
    };
  }

  /** One bucket's counting targets, not banned at `now`; epochs newest first. */
  private async failingIn(
    bucket: number,
    epochs: readonly number[],
    cutoff: number,
    now: number,
    skipped: { count: number; sample: string },
  ): Promise<Array<Candidate & { record: boolean }>> {
    const hashes = await Promise.all(
      epochs.map((e) => this.client.call('HGETALL', this.keys.window(bucket, e)).catch(wrongType(this.log, []))),
    );
    const seen = new Set<string>();
    const out: Array<Candidate & { record: boolean }> = [];
    for (const flat of hashes) {
      if (!Array.isArray(flat)) continue;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const field: unknown = flat[i];
        const value: unknown = flat[i + 1];
        if (typeof field !== 'string' || seen.has(field)) continue;
        seen.add(field);
        const target = field.length <= 64 ? parseTarget(field) : null;
        const window = typeof value === 'string' && value.length <= 64 * 1024 ? parseWindow(value) : null;
        // a field of our hash that is no target of this bucket, or a value that is no window: someone else's
        if (!target || target.text !== field || bucketOf(target) !== bucket || !window) {
          if (skipped.count++ === 0) skipped.sample = printable(`${field} ${String(value)}`, 100);
          continue;
        }
        const counted = countWithin(window.failures, cutoff);
        if (counted === null) {
          // no failure in findtime is a window like any other; one whose weights are nonsense is not ours
          if (window.failures.some((f) => !Number.isSafeInteger(f.weight)) && skipped.count++ === 0)
            skipped.sample = printable(`${field} ${String(value)}`, 100);
          continue;
        }
        out.push({
          target,
          failures: counted.failures,
          last: counted.last,
          account: window.account,
          record: (value as string).startsWith('~'),
        });
      }
    }
    if (out.length === 0) return out;
    const banned = new Set<string>();
    const index = await this.client
      .zrange(this.keys.index(bucket), `(${now}`, '+inf', 'BYSCORE')
      .catch(wrongType(this.log, [] as string[]));
    for (const member of index) banned.add(member);
    return banned.size === 0 ? out : out.filter((c) => !banned.has(c.target.text));
  }

  async history(target: IpTarget): Promise<HistoryEntry[]> {
    return historyOf(parseRecord(await this.readRecord(target)));
  }

  /**
   * The index read in parts of INDEX_READ_WIDTH buckets, each one active-bans.lua call per node, which sends a
   * bucket's members and ends as one string (at 100k bans, two replies per ban were most of the reading's cost here).
   * INDEX_READ_AHEAD parts are asked for ahead of the one being read: Redis answers all the calls it has been sent
   * before it writes any reply, so sending all of them at once would hold the first page until the last was done,
   * while a few ahead keep Redis busy and let the reader start on the first page at once. Every member is checked as
   * it would be read alone.
   */
  async *activeBans(now: number): AsyncIterable<ActiveBan[]> {
    const skipped = { count: 0, sample: '' };
    const parts: Array<Promise<ActiveBan[]>> = [];
    const ask = (k: number): void => {
      const from = k * INDEX_READ_WIDTH;
      if (from >= BUCKETS) return;
      const part = this.readIndexPart(from, Math.min(BUCKETS, from + INDEX_READ_WIDTH), now, skipped);
      part.catch(() => undefined); // rethrown where it is awaited, in order
      parts[k] = part;
    };
    for (let k = 0; k < INDEX_READ_AHEAD; k++) ask(k);
    // Bans added or lifted while this runs may be missed or seen in this pass; reconciliation runs periodically
    // and catches them on the next one.
    for (let k = 0; k * INDEX_READ_WIDTH < BUCKETS; k++) {
      const bans = await parts[k]!;
      ask(k + INDEX_READ_AHEAD);
      if (bans.length > 0) yield bans;
    }
    if (skipped.count > 0) {
      this.log?.warn({ skipped: skipped.count, sample: skipped.sample }, 'ban index entries that are not a valid ban were skipped');
    }
  }

  /** Buckets [from, to) of the index, by active-bans.lua; a bucket whose reply cannot be split is read alone. */
  private async readIndexPart(from: number, to: number, now: number, skipped: Skipped): Promise<ActiveBan[]> {
    const out: ActiveBan[] = [];
    const alone: number[] = [];
    const failed = await this.inGroups(
      to - from,
      (i) => ({ bucket: from + i, entry: tagOf(from + i) }),
      (g) => this.scripts.activeBans(g.routingKey, now, g.entries),
      (reply, g, moved) => {
        for (let k = 0; k < g.indices.length; k++) {
          const i = g.indices[k]!;
          const count: unknown = reply[2 * k];
          const text: unknown = reply[2 * k + 1];
          if (count === -1) {
            moved.push(i);
          } else if (count === -2) {
            this.log?.warn({ key: this.keys.index(from + i) }, 'a store key holds a value of another type; read as empty');
          } else if (typeof count !== 'number' || typeof text !== 'string' || !readPacked(text, count, from + i, out, skipped)) {
            alone.push(from + i);
          }
        }
      },
    );
    for (const { indices, error } of failed) {
      // a user whose ACL lacks a command of the script: the plain commands say which, in Redis's own words (NOPERM)
      if (!(error instanceof Error && /can't run this command/.test(error.message))) throw error;
      for (const i of indices) alone.push(from + i);
    }
    for (const bucket of alone) out.push(...(await this.readIndex(bucket, now, skipped)));
    return out;
  }

  /** One bucket's part of the index, its expired members removed, every member checked. */
  private async readIndex(bucket: number, now: number, skipped: Skipped): Promise<ActiveBan[]> {
    const key = this.keys.index(bucket);
    await this.client.zremrangebyscore(key, '-inf', now);
    const out: ActiveBan[] = [];
    for (let offset = 0; ; offset += PAGE_SIZE) {
      const flat = await this.client.zrange(key, `(${now}`, '+inf', 'BYSCORE', 'LIMIT', offset, PAGE_SIZE, 'WITHSCORES');
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const ban = indexEntry(flat[i]!, flat[i + 1]!, bucket, skipped);
        if (ban) out.push(ban);
      }
      if (flat.length < 2 * PAGE_SIZE) return out;
    }
  }

  /** One SET NX GET (Redis 7.0): the id there before, or none, in which case ours is now written. */
  async identity(): Promise<StoreIdentity> {
    const mine = randomBytes(12).toString('hex');
    const key = this.keys.identity;
    const before = await this.client.call('SET', key, mine, 'NX', 'GET').catch(async (err: unknown) => {
      // another type under our key (written by someone else) is no identity: it goes, and ours takes its place
      if (!(err instanceof Error) || !err.message.startsWith('WRONGTYPE')) throw err;
      this.log?.warn({ key }, 'the store identity key held a value of another type; replaced');
      await this.client.del(key);
      return this.client.call('SET', key, mine, 'NX', 'GET');
    });
    if (before === null) return { id: mine, created: true };
    if (typeof before !== 'string' || before.length === 0 || before.length > 200) {
      // someone else's value: still an identity (it changes when the data goes), shown bounded
      return { id: printable(String(before), 200) || 'invalid', created: false };
    }
    return { id: before, created: false };
  }

  async ping(): Promise<number> {
    const started = performance.now();
    await this.client.ping();
    return performance.now() - started;
  }

  async close(): Promise<void> {
    // QUIT waits for a reply; with Redis away that would hold a shutdown for the reconnect attempts
    if (this.client.status === 'ready') await this.client.quit();
    else this.client.disconnect();
  }

  /** The target's record as stored, or null; a key of ours holding another type reads as none (and is reported). */
  private readRecord(target: IpTarget): Promise<string | null> {
    return this.client.get(this.keys.record(target)).catch(wrongType(this.log, null));
  }

  private base(bucket: number): string {
    return `${this.keys.prefix}{${tagOf(bucket)}}`;
  }
}

/** index entries that are no valid ban: how many, and the first as an example */
interface Skipped {
  count: number;
  sample: string;
}

/**
 * A bucket's `<member>\n<end>\n…` from active-bans.lua into `out`; false, with nothing added, when its lines are not
 * the `count` pairs announced (a member holding a newline), so that the bucket is read member by member instead.
 */
function readPacked(text: string, count: number, bucket: number, out: ActiveBan[], skipped: Skipped): boolean {
  if (count === 0) return text === '';
  let lines = 1;
  for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) lines++;
  if (lines !== 2 * count) return false;
  let at = 0;
  for (let k = 0; k < count; k++) {
    const nl = text.indexOf('\n', at);
    const next = text.indexOf('\n', nl + 1);
    const end = next < 0 ? text.length : next;
    const ban = indexEntry(text.slice(at, nl), text.slice(nl + 1, end), bucket, skipped);
    if (ban) out.push(ban);
    at = end + 1;
  }
  return true;
}

/** An index member and its score as a ban, or null (counted in `skipped`) when they are not one of this bucket. */
function indexEntry(member: string, score: string, bucket: number, skipped: Skipped): ActiveBan | null {
  const until = Number(score);
  const target = member.length <= 64 ? parseTarget(member) : null;
  // an index is data: `ZADD bans +inf 203.0.113.9` or a name with terminal escapes must not stop a reconciliation
  if (!target || target.text !== member || !Number.isSafeInteger(until) || bucketOf(target) !== bucket) {
    if (skipped.count++ === 0) skipped.sample = printable(`${member} ${score}`, 100);
    return null;
  }
  return { address: member, target, until };
}

/** A catch handler: a key of ours that holds another type (written by someone else) reads as `empty`. */
function wrongType<T>(log: Logger | undefined, empty: T): (err: unknown) => T {
  return (err) => {
    if (!(err instanceof Error) || !err.message.startsWith('WRONGTYPE')) throw err;
    log?.warn({ err: err.message }, 'a store key holds a value of another type; read as empty');
    return empty;
  };
}

/** Config validation is the first line; this one keeps a bad policy from reaching the scripts as nonsense. */
export function checkPolicy(policy: PolicyParams): PolicyParams {
  const positive: Array<[string, number]> = [
    ['maxretry', policy.maxretry],
    ['findtime', policy.findtimeMs],
    ['bantime', policy.bantimeMs],
    ['history.ttl', policy.historyTtlMs],
    ['increment.maxtime', policy.increment.maxtimeMs],
    ['offender.maxretry', policy.offenderMaxretry],
    ['scanner.maxretry', policy.scanner.maxretry],
    ['scanner.findtime', policy.scanner.findtimeMs],
    ['trust.ttl', policy.trust.ttlMs],
    ['trust.maxretry', policy.trust.maxretry],
    ['recidive.maxretry', policy.recidive.maxretry],
    ['recidive.findtime', policy.recidive.findtimeMs],
    ['recidive.bantime', policy.recidive.bantimeMs],
  ];
  for (const [name, v] of positive) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`invalid policy ${name}: ${v}`);
  }
  if (!Number.isSafeInteger(policy.subnet.maxbans) || policy.subnet.maxbans < 0 || policy.subnet.maxbans > 256) {
    throw new RangeError(`invalid policy subnet.maxbans: ${policy.subnet.maxbans}`);
  }
  if (!Number.isSafeInteger(policy.subnet.bantimeMs) || policy.subnet.bantimeMs < 1) {
    throw new RangeError(`invalid policy subnet.bantime: ${policy.subnet.bantimeMs}`);
  }
  if (!Number.isFinite(policy.increment.factor) || policy.increment.factor < 1) {
    throw new RangeError(`invalid policy increment.factor: ${policy.increment.factor}`);
  }
  if (!Number.isSafeInteger(policy.increment.rndtimeMs) || policy.increment.rndtimeMs < 0) {
    throw new RangeError(`invalid policy increment.rndtime: ${policy.increment.rndtimeMs}`);
  }
  return policy;
}

/** The ban rule of the scripts (fail2ban's bantime.increment and the recidive jail). */
export function banRule(p: PolicyParams, node: string): BanRule {
  return {
    bantimeMs: p.bantimeMs,
    factor: p.increment.factor,
    maxtimeMs: p.increment.maxtimeMs,
    rndtimeMs: p.increment.rndtimeMs,
    recidiveMaxretry: p.recidive.maxretry,
    recidiveFindtimeMs: p.recidive.findtimeMs,
    recidiveBantimeMs: p.recidive.bantimeMs,
    historyTtlMs: p.historyTtlMs,
    historyCap: HISTORY_CAP,
    node,
  };
}

export function checkManualBan(input: ManualBanInput): void {
  if (!Number.isSafeInteger(input.now)) throw new RangeError(`invalid time ${input.now}`);
  if (!Number.isSafeInteger(input.durationMs) || input.durationMs < 1) {
    throw new RangeError(`invalid ban duration ${input.durationMs}`);
  }
}

/**
 * One count of record-activity.lua's reply: `<count>` or `<count>:<remaining>:<until36>` (on the brink). A brink
 * that does not parse is left out: the target is then banned when the store says so, as before there were brinks.
 */
function countOf(text: string, reach: number): ActivityVerdict {
  const colon = text.indexOf(':');
  if (colon < 0) return counted(Number(text));
  const count = Number(text.slice(0, colon));
  const rest = text.slice(colon + 1);
  const second = rest.indexOf(':');
  const remaining = Number(rest.slice(0, second));
  const until = second > 0 ? fromB36(rest.slice(second + 1)) : undefined;
  if (!Number.isSafeInteger(remaining) || remaining < 1 || remaining > reach || until === undefined) return counted(count);
  return counted(count, { remaining, until });
}

function activityRule(p: PolicyParams, nodeId: string, windowEpochMs: number): ActivityRule {
  return {
    windowEpochMs,
    maxretry: p.maxretry,
    findtimeMs: p.findtimeMs,
    trustMaxretry: p.trust.maxretry,
    offenderMaxretry: p.offenderMaxretry,
    scannerMaxretry: p.scanner.maxretry,
    scannerFindtimeMs: p.scanner.findtimeMs,
    trustTtlMs: p.trust.ttlMs,
    ban: banRule(p, nodeId),
    subnetMaxbans: p.subnet.maxbans,
    subnetBantimeMs: p.subnet.bantimeMs,
    reach: p.heaviestWeight ?? 1,
  };
}
