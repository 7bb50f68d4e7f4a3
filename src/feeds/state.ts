// Where a feed's state lives, readable by every node: its entries (packed, see entries.ts), APIBAN's last ID, when and
// by whom it was last pulled, and how its pulls are failing; plus the pull lock that lets one node of a fleet pull
// each feed per interval. With Redis: one HASH and one STRING per feed under the key prefix, sharing a hash tag so
// the commit script touches one Cluster slot. With the embedded store: the same in memory (snapshot() hands it
// over for saving).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

export interface FeedRecord {
  /** moves on with every pull that wrote entries; what the nodes poll */
  readonly version: number;
  /** the packed entries (entries.ts), or null when no pull has written any */
  readonly data: Buffer | null;
  /** APIBAN's last ID ('' for a plain list) */
  readonly cursor: string;
  /** when the entries were last pulled (ms), 0 never */
  readonly pulledAt: number;
  /** the node that pulled them */
  readonly node: string;
  /** failed pulls since the last good one */
  readonly failures: number;
  /** why the last pull failed ('' when it did not) */
  readonly error: string;
  readonly errorAt: number;
  /** the last good pull's counts (JSON, see PullStats) */
  readonly stats: string;
  /** when the next pull is due (ms): when the lock the last pull left ends */
  readonly next: number;
}

/** What a pull writes: entries (on success), and the fields that change either way. */
export interface FeedUpdate {
  readonly data?: Buffer;
  readonly fields: Partial<Omit<FeedRecord, 'version' | 'data' | 'next'>>;
}

/** What every node polls: the version (moves with new entries) and the last good pull's time (moves with every one). */
export interface FeedHead {
  readonly version: number;
  readonly pulledAt: number;
}

export interface FeedStateStore {
  /** cheap enough to poll every few seconds; version 0 when there is no record */
  head(feed: string): Promise<FeedHead>;
  read(feed: string): Promise<FeedRecord | null>;
  /** Takes the pull lock for `leaseMs` if nobody holds it: the token to commit with, or null. */
  tryLock(feed: string, leaseMs: number): Promise<string | null>;
  /**
   * Writes a pull's outcome if `token` still holds the lock, and keeps the lock `nextInMs` (when the next pull is due,
   * which the record's `next` says). Resolves with the record's version, or null when the lock was lost.
   */
  commit(feed: string, token: string, update: FeedUpdate, nextInMs: number): Promise<number | null>;
}

/** a feed's record outlives a stopped fleet this long, so a restart a few weeks later still knows APIBAN's last ID */
export const RECORD_TTL_MS = 30 * 86_400_000;

const FIELDS: Record<keyof Omit<FeedRecord, 'version' | 'data'>, string> = {
  cursor: 'cursor',
  pulledAt: 'at',
  node: 'node',
  failures: 'fails',
  error: 'err',
  errorAt: 'errAt',
  stats: 'stats',
  next: 'next',
};
/** every field of the record as stored, read one HGET each (pipelined into one round trip; HGETALL would need one
 * more right in the Redis ACL) */
const STORED = ['v', 'data', ...Object.values(FIELDS)];
const NUMERIC = new Set(['pulledAt', 'failures', 'errorAt']);
/** text fields are written by ami-guard, but read back as outside input: bounded */
const MAX_TEXT = 512;

function count(v: string | null): number {
  const n = Number(v);
  return v !== null && Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

function token(): string {
  return randomBytes(12).toString('hex');
}

/** A record from its fields, each checked: a number that is not one reads 0, text is cut to MAX_TEXT. */
export function recordFrom(get: (field: string) => Buffer | string | undefined): FeedRecord {
  const text = (f: string): string => {
    const v = get(f);
    return v === undefined ? '' : v.toString().slice(0, MAX_TEXT);
  };
  const num = (f: string): number => {
    const n = Number(text(f));
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  };
  const data = get('data');
  return {
    version: num('v'),
    data: data === undefined ? null : Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1'),
    cursor: text(FIELDS.cursor),
    pulledAt: num(FIELDS.pulledAt),
    node: text(FIELDS.node),
    failures: num(FIELDS.failures),
    error: text(FIELDS.error),
    errorAt: num(FIELDS.errorAt),
    stats: text(FIELDS.stats),
    next: num(FIELDS.next),
  };
}

function pairs(fields: FeedUpdate['fields']): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const name = FIELDS[k as keyof typeof FIELDS];
    out.push(name, NUMERIC.has(k) ? String(Math.max(0, Math.floor(v as number))) : String(v).slice(0, MAX_TEXT));
  }
  return out;
}

/** The keys of one feed; the name comes from the configuration (checked there: a-z, 0-9, _ and -). */
export function feedKeys(prefix: string, feed: string): { record: string; lock: string } {
  if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(feed)) throw new RangeError(`invalid feed name ${JSON.stringify(feed)}`);
  const base = `${prefix}{feed:${feed}}`;
  return { record: base, lock: `${base}:lock` };
}

let commitLua: string | undefined;

type CommitCommand = { amiGuardFeedCommit(record: string, lock: string, ...args: Array<string | Buffer | number>): Promise<unknown> };

export class RedisFeedState implements FeedStateStore {
  private readonly client: (Redis | Cluster) & CommitCommand;

  constructor(
    client: Redis | Cluster,
    private readonly prefix: string,
    private readonly nodeId: string,
  ) {
    if (!('amiGuardFeedCommit' in client)) {
      commitLua ??= readFileSync(new URL('./lua/commit.lua', import.meta.url), 'utf8');
      client.defineCommand('amiGuardFeedCommit', { lua: commitLua, numberOfKeys: 2 });
    }
    this.client = client as (Redis | Cluster) & CommitCommand;
  }

  async head(feed: string): Promise<FeedHead> {
    const key = feedKeys(this.prefix, feed).record;
    // two HGETs, one round trip (auto-pipelined); HMGET would need one more right in the Redis ACL
    const [v, at] = await Promise.all([this.client.hget(key, 'v'), this.client.hget(key, FIELDS.pulledAt)]);
    return { version: count(v), pulledAt: count(at) };
  }

  async read(feed: string): Promise<FeedRecord | null> {
    const key = feedKeys(this.prefix, feed).record;
    const values = await Promise.all(STORED.map((f) => this.client.hgetBuffer(key, f)));
    if (values.every((v) => v === null)) return null;
    const byField = new Map(STORED.map((f, i) => [f, values[i] ?? undefined]));
    return recordFrom((f) => byField.get(f));
  }

  async tryLock(feed: string, leaseMs: number): Promise<string | null> {
    const t = `${this.nodeId}:${token()}`;
    const ok = await this.client.set(feedKeys(this.prefix, feed).lock, t, 'PX', Math.max(1, Math.ceil(leaseMs)), 'NX');
    return ok === 'OK' ? t : null;
  }

  async commit(feed: string, lockToken: string, update: FeedUpdate, nextInMs: number): Promise<number | null> {
    const k = feedKeys(this.prefix, feed);
    const reply = await this.client.amiGuardFeedCommit(
      k.record,
      k.lock,
      lockToken,
      Math.max(1, Math.ceil(nextInMs)),
      RECORD_TTL_MS,
      update.data ? '1' : '0',
      update.data ?? '',
      ...pairs(update.fields),
    );
    const v = Number(reply);
    if (!Number.isSafeInteger(v)) throw new Error(`unexpected reply from the feed commit script: ${String(reply).slice(0, 80)}`);
    return v < 0 ? null : v;
  }
}

interface MemoryLock {
  readonly token: string;
  readonly until: number;
}

/**
 * The embedded store's feed state, in this process. One node, so the lock only spaces the pulls; snapshot() and
 * restore() hand the records over for whatever persists the embedded store.
 */
export class MemoryFeedState implements FeedStateStore {
  private readonly records = new Map<string, FeedRecord>();
  private readonly locks = new Map<string, MemoryLock>();

  constructor(
    private readonly nodeId: string,
    private readonly now: () => number = Date.now,
  ) {}

  head(feed: string): Promise<FeedHead> {
    const r = this.records.get(feed);
    return Promise.resolve({ version: r?.version ?? 0, pulledAt: r?.pulledAt ?? 0 });
  }

  read(feed: string): Promise<FeedRecord | null> {
    return Promise.resolve(this.records.get(feed) ?? null);
  }

  tryLock(feed: string, leaseMs: number): Promise<string | null> {
    const held = this.locks.get(feed);
    if (held && held.until > this.now()) return Promise.resolve(null);
    const t = `${this.nodeId}:${token()}`;
    this.locks.set(feed, { token: t, until: this.now() + leaseMs });
    return Promise.resolve(t);
  }

  commit(feed: string, lockToken: string, update: FeedUpdate, nextInMs: number): Promise<number | null> {
    const held = this.locks.get(feed);
    if (!held || held.token !== lockToken || held.until <= this.now()) return Promise.resolve(null);
    const before = this.records.get(feed) ?? recordFrom(() => undefined);
    const record: FeedRecord = {
      ...before,
      ...Object.fromEntries(Object.entries(update.fields).filter(([, v]) => v !== undefined)),
      ...(update.data ? { data: Buffer.from(update.data), version: before.version + 1 } : {}),
      next: this.now() + nextInMs,
    };
    this.records.set(feed, record);
    this.locks.set(feed, { token: lockToken, until: this.now() + nextInMs });
    return Promise.resolve(record.version);
  }

  /** every feed's record as it stands, for saving the embedded store */
  snapshot(): Map<string, FeedRecord> {
    return new Map(this.records);
  }

  /** records saved by snapshot(); their entries are checked again when the scheduler reads them */
  restore(records: ReadonlyMap<string, FeedRecord>): void {
    for (const [feed, record] of records) this.records.set(feed, record);
  }
}
