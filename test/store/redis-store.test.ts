import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import type { Redis } from 'ioredis';
import { createLogger } from '../../src/log.js';
import { isCanonicalTarget, type IpAddress } from '../../src/net/ip.js';
import { KeySpace } from '../../src/store/keys.js';
import { createRedisClient, reconnectDelay } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { NODE, POLICY, T0, addr, failure, hostAddress, storeContract, target } from './contract.js';

const calculateSlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

let server: RedisServer;
before(async () => {
  server = await startRedisServer();
});
after(async () => {
  await server?.stop();
});

let prefixes = 0;
storeContract('RedisStore', () => async (policy) => {
  const client = createRedisClient({ url: server.url });
  try {
    return new RedisStore({ client, keyPrefix: `contract${++prefixes}:`, nodeId: NODE, policy });
  } catch (err) {
    client.disconnect();
    throw err;
  }
});

async function scanKeys(client: Redis, match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', match, 'COUNT', 5_000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

/** Runs `fn(i)` for i in [0, n), `width` at a time, the way a burst of events reaches the store. */
async function inWaves(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < n; start += width) {
    const wave = [];
    for (let i = start; i < Math.min(n, start + width); i++) wave.push(fn(i));
    await Promise.all(wave);
  }
}

function hashTag(key: string): string {
  return key.slice(key.indexOf('{') + 1, key.indexOf('}'));
}

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
}

describe('RedisStore on a real redis-server', () => {
  let raw: Redis;
  before(() => {
    raw = createRedisClient({ url: server.url });
  });
  after(async () => {
    await raw.quit();
  });

  it('gives every key a TTL under a flood of 20,000 distinct addresses, and keeps each address in one slot', async () => {
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'flood:', nodeId: NODE, policy: POLICY });
    try {
      // every tenth address is banned at once, so ban, history and index keys are part of the flood too
      await inWaves(20_000, 2_000, (i) =>
        store.recordFailure(failure(hostAddress(i), T0, { weight: i % 10 === 0 ? POLICY.maxretry : 1 })));
      const keys = await scanKeys(raw, 'flood:*');
      assert.equal(keys.length, 18_000 + 2 * 2_000 + 1);

      const pipeline = raw.pipeline();
      for (const k of keys) pipeline.pttl(k);
      const ttls = (await pipeline.exec())!.map(([err, ttl]) => (assert.ifError(err), ttl as number));
      const without = keys.filter((_, i) => !(ttls[i]! > 0));
      assert.deepEqual(without, [], 'keys without a TTL');

      for (const k of keys) {
        if (k === 'flood:bans') continue;
        const tag = hashTag(k);
        assert.ok(isCanonicalTarget(tag), k);
        assert.equal(calculateSlot(k), calculateSlot(tag), k);
      }
    } finally {
      await store.close();
    }
  });

  it('writes all keys of one address, IPv6 or network, to one cluster slot', async () => {
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'slot:', nodeId: NODE, policy: POLICY });
    try {
      const keys = new KeySpace('slot:').target('2001:db8::5');
      for (let i = 0; i < POLICY.maxretry - 1; i++) await store.recordFailure(failure('2001:db8::5', T0 + i));
      assert.equal(await raw.exists(keys.fail), 1);
      await store.recordFailure(failure('2001:db8::5', T0 + 10));
      assert.equal(await raw.exists(keys.ban, keys.hist), 2);
      const slots = new Set([keys.fail, keys.ban, keys.hist].map(calculateSlot));
      assert.deepEqual(slots, new Set([calculateSlot('2001:db8::5')]));
    } finally {
      await store.close();
    }
  });

  it('keeps attacker-controlled account ids out of key names and stores them intact as data', async () => {
    const evil = '6001"; flush ruleset; "{x}*\r\n';
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'inj:', nodeId: NODE, policy: POLICY });
    try {
      for (const ip of ['198.51.100.66', '2001:db8::66']) {
        await store.recordFailure(failure(ip, T0, { account: evil }));
        assert.deepEqual(await raw.lrange(new KeySpace('inj:').target(ip).fail, 0, -1), [`${T0}|InvalidPassword|${evil}`]);
        for (let i = 1; i < POLICY.maxretry; i++) await store.recordFailure(failure(ip, T0 + i, { account: evil }));
      }
      const keys = await scanKeys(raw, '*');
      assert.ok(keys.length > 0);
      for (const k of keys) {
        for (const bad of ['6001', 'flush', '{x}', '"', '\r', '\n', ' ']) assert.ok(!k.includes(bad), JSON.stringify(k));
      }
      for (const k of keys.filter((k) => k.startsWith('inj:'))) {
        assert.match(k, /^inj:(bans|\{[^{}]+\}:(fail|ban|hist))$/);
      }
      // a value that did not come from the parser never reaches a key
      const forged = { kind: 'address', family: 4, text: '1.2.3.4}:x' } as unknown as IpAddress;
      await assert.rejects(store.recordFailure({ ...failure('1.2.3.4', T0), address: forged }), RangeError);
      await assert.rejects(store.recordFailure(failure('1.2.3.4', T0, { kind: 'a|b' })), RangeError);
    } finally {
      await store.close();
    }
  });

  it('lays out the documented records, with TTLs from the policy whatever the caller\'s clock says', async () => {
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'layout:', nodeId: NODE, policy: POLICY });
    try {
      const keys = new KeySpace('layout:').target('192.0.2.77');
      // T0 lies years in the past of the Redis clock: an absolute PEXPIREAT would have dropped these keys at once
      for (let i = 0; i < 3; i++) await store.recordFailure(failure('192.0.2.77', T0 + i, { weight: 2, kind: `K${i}` }));
      assert.deepEqual(await raw.lrange(keys.fail, 0, -1), []);
      const { kinds, ...ban } = await raw.hgetall(keys.ban);
      assert.deepEqual(JSON.parse(kinds!), { K0: 2, K1: 2, K2: 2 });
      assert.deepEqual(ban, {
        reason: 'failures', count: '6', first: String(T0), last: String(T0 + 2),
        at: String(T0 + 2), until: String(T0 + 2 + POLICY.bantimeMs), node: NODE, prev: '0',
      });
      assert.deepEqual((await raw.lrange(keys.hist, 0, -1)).map((j) => JSON.parse(j)),
        [{ at: T0 + 2, until: T0 + 2 + POLICY.bantimeMs, reason: 'failures', node: NODE }]);
      const within = (ttl: number, ms: number): boolean => ttl > ms - 10_000 && ttl <= ms;
      assert.ok(within(await raw.pttl(keys.ban), POLICY.bantimeMs));
      assert.ok(within(await raw.pttl(keys.hist), POLICY.historyTtlMs));
      assert.ok(within(await raw.pttl('layout:bans'), POLICY.bantimeMs));

      const other = new KeySpace('layout:').target('192.0.2.78');
      for (let i = 0; i < 9; i++) await store.recordFailure(failure('192.0.2.78', T0 + i * POLICY.findtimeMs));
      const entries = await raw.lrange(other.fail, 0, -1);
      assert.deepEqual(entries.map((e) => Number(e.split('|')[0])),
        [8, 7, 6, 5, 4, 3, 2, 1, 0].slice(0, Math.max(POLICY.maxretry, POLICY.trust.maxretry)).map((i) => T0 + i * POLICY.findtimeMs),
        'the last failures (as many as the highest threshold), newest first');
      assert.ok(within(await raw.pttl(other.fail), POLICY.findtimeMs));
    } finally {
      await store.close();
    }
  });

  it('reads records that lack fields, as an older version may have written them', async () => {
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'old:', nodeId: NODE, policy: POLICY });
    try {
      const keys = new KeySpace('old:').target('192.0.2.90');
      await raw.hset(keys.ban, { until: String(T0 + 1_000), kinds: 'not json' });
      await raw.rpush(keys.hist, JSON.stringify({ at: T0, until: T0 + 5 }), 'garbage', JSON.stringify({ until: 1 }),
        JSON.stringify({ at: T0 - 1, until: T0, reason: 'manual', node: 'n2', extra: true }));
      assert.deepEqual(await store.getBan(target('192.0.2.90'), T0), {
        address: '192.0.2.90', reason: 'failures', kinds: {}, count: 0, firstSeen: 0, lastSeen: 0, bannedAt: 0,
        until: T0 + 1_000, node: '', previousBans: 0,
      });
      assert.deepEqual(await store.history(target('192.0.2.90')), [
        { at: T0, until: T0 + 5, reason: 'failures', node: '' },
        { at: T0 - 1, until: T0, reason: 'manual', node: 'n2' },
      ]);
      await raw.hset(new KeySpace('old:').target('192.0.2.91').ban, { reason: 'no until' });
      assert.equal(await store.getBan(target('192.0.2.91'), T0), null);
    } finally {
      await store.close();
    }
  });

  it('reloads its scripts after Redis forgot them (restart, SCRIPT FLUSH)', async () => {
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'flush:', nodeId: NODE, policy: POLICY });
    try {
      await store.recordFailure(failure('192.0.2.5', T0));
      await raw.script('FLUSH');
      const verdicts = await Promise.all([1, 2, 3].map((i) => store.recordFailure(failure('192.0.2.5', T0 + i))));
      assert.deepEqual(verdicts.map((v) => v.type === 'counted' && v.count), [2, 3, 4]);
      await raw.script('FLUSH');
      assert.equal((await store.ban({ target: target('192.0.2.6'), reason: 'r', durationMs: 1_000, now: T0 })).reason, 'r');
      await raw.script('FLUSH');
      assert.equal(await store.unban(target('192.0.2.6')), true);
    } finally {
      await store.close();
    }
  });

  it('reports recordFailure throughput and memory per tracked address', async (t) => {
    const store = new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: 'bench:', nodeId: NODE, policy: POLICY });
    try {
      const addresses = 50_000;
      const calls = 200_000;
      const ips = Array.from({ length: addresses }, (_, i) => addr(hostAddress(1_000_000 + i)));
      const memBefore = await usedMemory(raw);
      const started = performance.now();
      // four failures per address (below maxretry), interleaved across addresses as in a distributed attack
      await inWaves(calls, 1_000, (i) => store.recordFailure({
        address: ips[i % addresses]!, kind: 'InvalidPassword', account: `ext${i % 1_000}`, weight: 1, now: T0 + i,
      }));
      const seconds = (performance.now() - started) / 1_000;
      const perAddress = ((await usedMemory(raw)) - memBefore) / addresses;
      assert.equal((await scanKeys(raw, 'bench:*')).length, addresses);

      const banned = 10_000;
      const memBeforeBans = await usedMemory(raw);
      await inWaves(banned, 2_000, (i) => store.recordFailure({
        address: addr(hostAddress(2_000_000 + i)), kind: 'InvalidPassword', account: 'ext1', weight: POLICY.maxretry, now: T0,
      }));
      const perBan = ((await usedMemory(raw)) - memBeforeBans) / banned;

      const report = [
        `recordFailure: ${calls} calls over ${addresses} addresses in ${seconds.toFixed(2)} s = ${Math.round(calls / seconds)} calls/s`,
        `used_memory per address with 4 failures: ${Math.round(perAddress)} bytes`,
        `used_memory per banned address (ban + history + index member): ${Math.round(perBan)} bytes`,
      ];
      for (const line of report) t.diagnostic(line);
      console.log(report.join('\n'));
    } finally {
      await store.close();
    }
  });
});

describe('Redis client', () => {
  it('connects with a password from the URL', async () => {
    const password = 'pa55:w/rd@#%-secret';
    const secured = await startRedisServer({ password });
    try {
      assert.ok(secured.url.includes(encodeURIComponent(password)));
      const store = new RedisStore({ client: createRedisClient({ url: secured.url }), keyPrefix: 'pw:', nodeId: NODE, policy: POLICY });
      try {
        assert.deepEqual(await store.recordFailure(failure('192.0.2.1', T0)), { type: 'counted', count: 1 });
      } finally {
        await store.close();
      }

      const wrong = 'Wr0ng-Pa55word-4711';
      const logs: string[] = [];
      const logger = createLogger('info', new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } }));
      const client = createRedisClient({ url: `redis://:${wrong}@127.0.0.1:${secured.port}`, logger });
      try {
        const err: unknown = await client.ping().then(() => null, (e: unknown) => e);
        assert.ok(err instanceof Error, 'ping with a wrong password must fail');
        assert.match(err.message, /WRONGPASS|NOAUTH/);
        assert.ok(!inspect(err, { depth: 10, showHidden: true }).includes(wrong), inspect(err, { depth: 10 }));
        const logged = logs.join('');
        assert.match(logged, /redis unavailable/);
        assert.ok(logged.includes(`:***@127.0.0.1:${secured.port}`), logged);
        assert.ok(!logged.includes(wrong), logged);
      } finally {
        client.disconnect();
      }
    } finally {
      await secured.stop();
    }
  });

  it('fails a command within seconds when Redis is down, instead of queueing it for ever', async () => {
    const gone = await startRedisServer();
    await gone.stop();
    const client = createRedisClient({ url: gone.url });
    try {
      const started = Date.now();
      await assert.rejects(client.ping());
      assert.ok(Date.now() - started < 5_000, `${Date.now() - started} ms`);
    } finally {
      client.disconnect();
    }
  });

  it('fails a command after commandTimeoutMs when Redis hangs', async () => {
    const hung = await startRedisServer();
    const client = createRedisClient({ url: hung.url, commandTimeoutMs: 300 });
    try {
      await client.ping();
      hung.pause();
      await assert.rejects(client.ping(), /timed out/);
    } finally {
      client.disconnect();
      await hung.stop();
    }
  });

  it('backs off exponentially up to a cap, with jitter, and never gives up', () => {
    const delays = Array.from({ length: 1_000 }, (_, i) => reconnectDelay(i + 1, 5_000));
    assert.ok(delays[0]! >= 80 && delays[0]! <= 120, String(delays[0]));
    assert.ok(delays.every((d) => Number.isInteger(d) && d >= 80 && d <= 6_000));
    assert.ok(delays.slice(10).every((d) => d >= 4_000), 'capped, not reset');
    assert.ok(new Set(delays.slice(10)).size > 1, 'jittered');
  });

  it('refuses URLs it cannot use without echoing their secrets', () => {
    assert.throws(() => createRedisClient({ url: 'http://u:topsecret@host' }), (e: Error) => !e.message.includes('topsecret'));
    assert.throws(() => createRedisClient({ url: 'not a url topsecret' }), (e: Error) => !e.message.includes('topsecret'));
  });
});
