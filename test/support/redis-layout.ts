// What tests read of the Redis layout (docs/fleet.md) without going through a RedisStore: the keys of a target, its
// record and its failure window, as an operator would with redis-cli.
import type { Cluster, Redis } from 'ioredis';
import { parseTarget } from '../../src/net/ip.js';
import { historyOf, parseRecord, parseWindow, type RecordFields } from '../../src/store/codec.js';
import { KeySpace, bucketOf, tagOf } from '../../src/store/keys.js';
import { parseEntry } from '../../src/fleet/redis-channel.js';

function targetOf(address: string) {
  const t = parseTarget(address);
  if (!t) throw new Error(`not an address: ${address}`);
  return t;
}

/** the key of a target's record (ban, history, trust) */
export function recordKey(prefix: string, address: string): string {
  return new KeySpace(prefix).record(targetOf(address));
}

/** the key of the ban index part a target's ban goes into */
export function indexKey(prefix: string, address: string): string {
  return new KeySpace(prefix).index(bucketOf(targetOf(address)));
}

/** the record's fields (`u` until, `r` reason, `c` count, `h` history, …); empty when there is none */
export async function readRecord(client: Redis | Cluster, prefix: string, address: string): Promise<RecordFields> {
  return parseRecord(await client.get(recordKey(prefix, address)));
}

export async function historyLength(client: Redis | Cluster, prefix: string, address: string): Promise<number> {
  return historyOf(await readRecord(client, prefix, address)).length;
}

/** failures in the target's window (summed weights), 0 when it has none; looks through every epoch's key */
export async function windowFailures(client: Redis, prefix: string, address: string): Promise<number> {
  const t = targetOf(address);
  let total = 0;
  for (const key of await scanKeys(client, `${prefix}{${tagOf(bucketOf(t))}}w*`)) {
    const w = parseWindow(await client.hget(key, t.text));
    for (const f of w?.failures ?? []) total += f.weight;
  }
  return total;
}

export async function scanKeys(client: Redis, match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', match, 'COUNT', 5_000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

/** every member of the ban index (all buckets' parts), with its score */
export async function indexMembers(client: Redis, prefix: string): Promise<Array<{ address: string; until: number }>> {
  const out: Array<{ address: string; until: number }> = [];
  for (const key of await scanKeys(client, `${prefix}{*}bans`)) {
    const flat = await client.zrange(key, 0, -1, 'WITHSCORES');
    for (let i = 0; i + 1 < flat.length; i += 2) out.push({ address: flat[i]!, until: Number(flat[i + 1]) });
  }
  return out;
}

/** the bans published on the fleet channel, in order, one per ban however they were grouped into messages */
export async function publishedBans(client: Redis, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const [id, fields] of await client.xrange(`${prefix}stream`, '-', '+')) {
    for (const m of parseEntry(id, fields).messages) if (m.type === 'ban') out.push(m.address);
  }
  return out;
}

/** the target's raw window (the newest epoch's, as record-activity.lua left it), or null */
export async function windowState(client: Redis, prefix: string, address: string): Promise<string | null> {
  const t = targetOf(address);
  const keys = (await scanKeys(client, `${prefix}{${tagOf(bucketOf(t))}}w*`)).sort().reverse();
  for (const key of keys) {
    const v = await client.hget(key, t.text);
    if (v !== null) return v;
  }
  return null;
}

/** Sets fields of a target's record as they are stored (what someone with access to Redis could write there). */
export async function patchRecord(client: Redis, prefix: string, address: string, fields: Record<string, string>): Promise<void> {
  const key = recordKey(prefix, address);
  const parts = ((await client.get(key)) ?? '').split(';').filter((p) => p !== '' && !(p[0]! in fields && p[1] === '='));
  for (const [k, v] of Object.entries(fields)) parts.push(`${k}=${v}`);
  await client.set(key, parts.join(';'), 'KEEPTTL');
}
