import { recordFailure, recordSuccess } from '../../src/store/activity.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import type { Redis } from 'ioredis';
import { createLogger } from '../../src/log.js';
import { parseTarget, type IpAddress, type IpPrefix } from '../../src/net/ip.js';
import { bucketOf, KeySpace, tagOf } from '../../src/store/keys.js';
import { parseRecord } from '../../src/store/codec.js';
import { createRedisClient, reconnectDelay } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { patchRecord, scanKeys } from '../support/redis-layout.js';
import type { TargetActivity } from '../../src/store/store.js';
import { NODE, POLICY, T0, activity, addr, failure, failures, hostAddress, storeContract, target } from './contract.js';

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

/** The target a key of the layout belongs to, or the part of the layout it is. */
function keyPart(prefix: string, key: string): { tag: string; rest: string } {
  const m = new RegExp(`^${prefix}\\{([0-9a-f]{3})\\}(.+)$`).exec(key);
  assert.ok(m, `${key} is not a layout key`);
  return { tag: m[1]!, rest: m[2]! };
}

describe('RedisStore on a real redis-server', () => {
  let raw: Redis;
  before(() => {
    raw = createRedisClient({ url: server.url });
  });
  after(async () => {
    await raw.quit();
  });
  const open = (prefix: string, policy = POLICY): RedisStore =>
    new RedisStore({ client: createRedisClient({ url: server.url }), keyPrefix: prefix, nodeId: NODE, policy });

  it('reads the ban index in packed parts: a member holding a newline has its bucket read alone, a key of another type reads as empty', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
          cb();
        },
      }),
    );
    const prefix = 'packed:';
    const keys = new KeySpace(prefix);
    const store = new RedisStore({
      client: createRedisClient({ url: server.url }),
      keyPrefix: prefix,
      nodeId: NODE,
      policy: POLICY,
      logger,
    });
    try {
      const now = Date.now();
      const later = now + 3_600_000;
      const good = Array.from({ length: 300 }, (_, i) => `198.51.${100 + (i >> 8)}.${i & 255}`);
      for (const a of good) await raw.zadd(keys.index(bucketOf(target(a))), later, a);
      await raw.zadd(keys.index(bucketOf(target(good[0]!))), now - 1, '192.0.2.200'); // ended: dropped from the index
      // a member with a newline would read as two entries if the packed string were split blindly
      const forged = `${good[1]!}\n${later}\n203.0.113.66`;
      await raw.zadd(keys.index(bucketOf(target(good[1]!))), later, forged);
      const other = bucketOf(target('203.0.113.77'));
      await raw.del(keys.index(other));
      await raw.set(keys.index(other), 'not a zset');
      const read: string[] = [];
      for await (const page of store.activeBans(now)) for (const b of page) read.push(`${b.address} ${b.until}`);
      assert.deepEqual(
        read.sort(),
        good
          .filter((a) => bucketOf(target(a)) !== other)
          .map((a) => `${a} ${later}`)
          .sort(),
      );
      assert.equal(await raw.zscore(keys.index(bucketOf(target(good[0]!))), '192.0.2.200'), null);
      assert.ok(logs.some((l) => l['msg'] === 'ban index entries that are not a valid ban were skipped' && l['skipped'] === 1));
      assert.ok(logs.some((l) => l['msg'] === 'a store key holds a value of another type; read as empty'));
    } finally {
      await store.close();
    }
  });

  it("gives every key a TTL under a flood of 20,000 distinct addresses, and keeps each target in its bucket's slot", async () => {
    const store = open('flood:');
    try {
      // every tenth address is banned at once, so records and index parts are part of the flood too
      for (let start = 0; start < 20_000; start += 500) {
        const batch = Array.from({ length: 500 }, (_, j) => {
          const i = start + j;
          return failures(hostAddress(i), T0, i % 10 === 0 ? POLICY.maxretry : 1);
        });
        await store.recordActivity(batch, T0);
      }
      const keys = await scanKeys(raw, 'flood:*');
      const records = keys.filter((k) => !/\}(w\d+|bans)$/.test(k));
      assert.equal(records.length, 2_000, 'one record per banned address, none for the others');
      assert.ok(keys.length < 2_000 + 2 * 4096 + 1, `${keys.length} keys: windows and index parts are shared`);

      const pipeline = raw.pipeline();
      for (const k of keys) pipeline.pttl(k);
      const ttls = (await pipeline.exec())!.map(([err, ttl]) => (assert.ifError(err), ttl as number));
      assert.deepEqual(
        keys.filter((_, i) => !(ttls[i]! > 0)),
        [],
        'keys without a TTL',
      );

      for (const k of records) {
        const { tag, rest } = keyPart('flood:', k);
        const t = parseTarget(rest);
        assert.ok(t && t.text === rest, k);
        assert.equal(tagOf(bucketOf(t)), tag, k);
        assert.equal(calculateSlot(k), calculateSlot(`flood:{${tag}}bans`), k);
      }
    } finally {
      await store.close();
    }
  });

  it('keeps attacker-controlled account ids out of key names and stores them intact as data', async () => {
    const evil = '6001"; flush ruleset; "{x}*\r\n|;=#%,';
    const store = open('inj:');
    try {
      for (const ip of ['198.51.100.66', '2001:db8::66']) {
        for (let i = 0; i < POLICY.maxretry; i++) await recordFailure(store, failure(ip, T0 + i, { account: evil }));
        // data, kept as it is (whatever prints it escapes it)
        assert.equal((await store.getBan(target(ip), T0 + 10))?.account, evil);
      }
      const keys = await scanKeys(raw, '*');
      assert.ok(keys.length > 0);
      for (const k of keys) {
        for (const bad of ['6001', 'flush', '{x}', '"', '\r', '\n', ' ', '|', ';', '#']) assert.ok(!k.includes(bad), JSON.stringify(k));
      }
      for (const k of keys.filter((k) => k.startsWith('inj:')))
        assert.match(k, /^inj:\{[0-9a-f]{3}\}(bans|w\d+|198\.51\.100\.66|2001:db8::66)$/);
      // a value that did not come from the parser never reaches a key
      const forged = { kind: 'address', family: 4, text: '1.2.3.4}:x', bits: 32, words: [0] } as unknown as IpAddress;
      await assert.rejects(recordFailure(store, { ...failure('1.2.3.4', T0), address: forged }), RangeError);
      await assert.rejects(store.ban({ target: forged, reason: 'r', durationMs: 1_000, now: T0 }), RangeError);
    } finally {
      await store.close();
    }
  });

  it("lays out the documented record, window and index, with TTLs from the policy whatever the caller's clock says", async () => {
    const store = open('layout:');
    const keys = new KeySpace('layout:');
    try {
      const a = addr('192.0.2.77');
      const bucket = bucketOf(a);
      // T0 lies years in the past of the Redis clock: an absolute PEXPIREAT would have dropped these keys at once
      await store.recordActivity([failures('192.0.2.77', T0, 2, 'InvalidPassword', '7001')], T0);
      await store.recordActivity([activity('192.0.2.77', T0 + 1, { failures: 1, kinds: { FailedACL: 1 }, account: '' })], T0 + 1);
      const windows = await scanKeys(raw, `layout:{${tagOf(bucket)}}w*`);
      assert.equal(windows.length, 1);
      assert.equal(await raw.hget(windows[0]!, '192.0.2.77'), `3:${T0.toString(36)}CC,${(T0 + 1).toString(36)}D#7001`);
      const epochMs = Math.max(POLICY.findtimeMs, POLICY.scanner.findtimeMs);
      const wttl = await raw.pttl(windows[0]!);
      assert.ok(wttl > epochMs && wttl <= 2 * epochMs, `window TTL ${wttl}`);

      await store.recordActivity(
        [activity('192.0.2.77', T0 + 2, { failures: 2, kinds: { ChallengeResponseFailed: 1, InvalidPassword: 1 }, account: '7002' })],
        T0 + 2,
      );
      assert.equal(await raw.hget(windows[0]!, '192.0.2.77'), null, 'the window starts afresh after the ban');
      const until = T0 + 2 + POLICY.bantimeMs;
      const rec = await raw.get(keys.record(a));
      assert.equal(
        rec,
        [
          `u=${until.toString(36)}`,
          `a=${(T0 + 2).toString(36)}`,
          'r=failures',
          'c=5',
          `f=${T0.toString(36)}`,
          `l=${(T0 + 2).toString(36)}`,
          'k=CCDBC',
          `n=${NODE}`,
          'p=0',
          'x=7002',
          `h=${(T0 + 2).toString(36)}:${until.toString(36)}:failures:${NODE}`,
        ].join(';'),
      );
      assert.deepEqual(await raw.zrange(keys.index(bucket), 0, -1, 'WITHSCORES'), ['192.0.2.77', String(until)]);
      const within = (ttl: number, ms: number): boolean => ttl > ms - 10_000 && ttl <= ms;
      assert.ok(within(await raw.pttl(keys.record(a)), POLICY.historyTtlMs), 'the record lives as long as its history');
      assert.ok(within(await raw.pttl(keys.index(bucket)), POLICY.bantimeMs), 'the index part as long as its longest ban');

      // trust lives in the record; a login refreshes it without shortening the history's life
      await recordSuccess(store, { address: a, now: T0 + 3, trust: true });
      assert.equal(parseRecord(await raw.get(keys.record(a))).t, (T0 + 3 + POLICY.trust.ttlMs).toString(36));
      assert.ok(within(await raw.pttl(keys.record(a)), POLICY.historyTtlMs));
      const phone = addr('192.0.2.78');
      await recordSuccess(store, { address: phone, now: T0, trust: true });
      assert.ok(within(await raw.pttl(keys.record(phone)), POLICY.trust.ttlMs));

      // unban lifts the ban, keeps history and trust
      assert.equal(await store.unban(a, T0 + 4), true);
      const after = parseRecord(await raw.get(keys.record(a)));
      assert.deepEqual(Object.keys(after).sort(), ['h', 't']);
      assert.deepEqual(await raw.zrange(keys.index(bucket), 0, -1), []);
    } finally {
      await store.close();
    }
  });

  it("lays out a subnet's count and its ban, with TTLs; member lists written by someone else are read as what parses", async () => {
    const policy = { ...POLICY, subnet: { maxbans: 3, bantimeMs: 86_400_000 } };
    const store = open('subnet:', policy);
    const keys = new KeySpace('subnet:');
    try {
      const subnet = target('198.51.100.0/24') as IpPrefix;
      const crossing = (a: string, at: number): TargetActivity => ({ ...failures(a, at, POLICY.maxretry), subnet });
      await store.recordActivity([crossing('198.51.100.1', T0)], T0);
      await store.recordActivity([crossing('198.51.100.2', T0 + 1)], T0 + 1);
      // the count of member bans lives in the subnet's record, as long as findtime
      assert.equal(await raw.get(keys.record(subnet)), `s=${T0.toString(36)}@198.51.100.1,${(T0 + 1).toString(36)}@198.51.100.2`);
      const counting = await raw.pttl(keys.record(subnet));
      assert.ok(counting > POLICY.findtimeMs - 10_000 && counting <= POLICY.findtimeMs, `TTL ${counting}`);
      const [v] = await store.recordActivity([crossing('198.51.100.3', T0 + 2)], T0 + 2);
      assert.ok(v?.type === 'banned' && v.subnet, JSON.stringify(v));
      const until = T0 + 2 + 86_400_000;
      assert.equal(
        await raw.get(keys.record(subnet)),
        [
          `u=${until.toString(36)}`,
          `a=${(T0 + 2).toString(36)}`,
          'r=subnet',
          'c=3',
          `f=${T0.toString(36)}`,
          `l=${(T0 + 2).toString(36)}`,
          `n=${NODE}`,
          'p=0',
          'm=198.51.100.1,198.51.100.2,198.51.100.3',
          `h=${(T0 + 2).toString(36)}:${until.toString(36)}:subnet:${NODE}`,
        ].join(';'),
      );
      assert.deepEqual(await raw.zrange(keys.index(bucketOf(subnet)), 0, -1, 'WITHSCORES'), ['198.51.100.0/24', String(until)]);
      const keysNow = await scanKeys(raw, 'subnet:*');
      const pipeline = raw.pipeline();
      for (const k of keysNow) pipeline.pttl(k);
      const ttls = (await pipeline.exec())!.map(([, ttl]) => ttl as number);
      assert.deepEqual(
        keysNow.filter((_, i) => !(ttls[i]! > 0)),
        [],
        'keys without a TTL',
      );

      // whatever Redis holds is input: members that are not canonical targets are left out, and a count that
      // does not parse is a count of none
      await patchRecord(raw, 'subnet:', '198.51.100.0/24', { m: '198.51.100.1,not-an-ip,\u001b[31m,198.51.100.03,198.51.100.3' });
      assert.deepEqual((await store.getBan(subnet, T0 + 3))?.members, ['198.51.100.1', '198.51.100.3']);
      const other = target('203.0.113.0/24') as IpPrefix;
      await raw.set(keys.record(other), 's=zz@,@203.0.113.9,x@y@z,' + 'a'.repeat(20), 'PX', 60_000);
      const [w] = await store.recordActivity([{ ...failures('203.0.113.1', T0 + 4, POLICY.maxretry), subnet: other }], T0 + 4);
      assert.ok(w?.type === 'banned' && !w.subnet, JSON.stringify(w));
      assert.equal(parseRecord(await raw.get(keys.record(other))).s, `${(T0 + 4).toString(36)}@203.0.113.1`);
      // unban lifts the subnet ban and starts its count afresh; the history stays
      assert.equal(await store.unban(subnet, T0 + 5), true);
      assert.deepEqual(Object.keys(parseRecord(await raw.get(keys.record(subnet)))), ['h']);
    } finally {
      await store.close();
    }
  });

  it('one EVALSHA per batch, whatever its size', async () => {
    const store = open('calls:');
    try {
      await store.recordActivity([failures('192.0.2.1', T0, 1)], T0);
      await raw.config('RESETSTAT');
      const batch = Array.from({ length: 500 }, (_, i) => failures(hostAddress(50_000 + i), T0, i % 2 === 0 ? POLICY.maxretry : 1));
      const verdicts = await store.recordActivity(batch, T0);
      assert.equal(verdicts.filter((v) => v.type === 'banned').length, 250);
      const stats = await raw.info('commandstats');
      // commandstats counts the commands a script runs too: the 250 ZADDs are the script's, not second round trips
      assert.match(stats, /cmdstat_evalsha:calls=1,/);
      assert.match(stats, /cmdstat_zadd:calls=250,/);
      assert.doesNotMatch(stats, /cmdstat_(xadd|eval):/);
    } finally {
      await store.close();
    }
  });

  it('reloads its scripts after Redis forgot them (restart, SCRIPT FLUSH)', async () => {
    const store = open('flush:');
    try {
      await recordFailure(store, failure('192.0.2.5', T0));
      await raw.script('FLUSH');
      const verdicts = await Promise.all([1, 2, 3].map((i) => recordFailure(store, failure('192.0.2.5', T0 + i))));
      assert.deepEqual(
        verdicts.map((v) => v.type === 'counted' && v.count),
        [2, 3, 4],
      );
      await raw.script('FLUSH');
      assert.equal((await store.ban({ target: target('192.0.2.6'), reason: 'r', durationMs: 1_000, now: Date.now() })).reason, 'r');
      await raw.script('FLUSH');
      assert.equal(await store.unban(target('192.0.2.6')), true);
    } finally {
      await store.close();
    }
  });

  it('replaces a key of ours that holds another type instead of failing every batch that reaches it', async () => {
    const store = open('type:');
    const keys = new KeySpace('type:');
    try {
      const a = addr('192.0.2.99');
      const bucket = bucketOf(a);
      const epochMs = Math.max(POLICY.findtimeMs, POLICY.scanner.findtimeMs);
      const epoch = Math.floor(Date.now() / epochMs);
      // someone else's values under our names: the window of this epoch, the record, the index part
      for (const e of [epoch - 1, epoch, epoch + 1]) await raw.set(keys.window(bucket, e), 'not a hash');
      await raw.hset(keys.record(a), 'u', 'not a string');
      await raw.set(keys.index(bucket), 'not a zset');
      const [v] = await store.recordActivity([failures('192.0.2.99', Date.now(), POLICY.maxretry)], Date.now());
      assert.equal(v?.type, 'banned', JSON.stringify(v));
      assert.deepEqual(await raw.zrange(keys.index(bucket), 0, -1), ['192.0.2.99']);
      assert.equal((await store.getBan(a, Date.now()))?.count, POLICY.maxretry);
    } finally {
      await store.close();
    }
  });

  it('failing reads every window written by anyone: a value or field that is not a window is skipped, never thrown', async () => {
    const store = open('failing-bad:');
    const keys = new KeySpace('failing-bad:');
    try {
      const epochMs = Math.max(POLICY.findtimeMs, POLICY.scanner.findtimeMs);
      const epoch = Math.floor(Date.now() / epochMs);
      const now = T0 + 10_000;
      const at = (ms: number): string => ms.toString(36);
      const good = addr('192.0.2.10');
      const b = bucketOf(good);
      // a window as the script writes it, written by hand: it counts, with its account decoded
      await raw.hset(keys.window(b, epoch), '192.0.2.10', `2:${at(T0)}B,${at(T0 + 5)}C#6001%20x`);
      // the same target in the epoch before: its newest window counts, once
      await raw.hset(keys.window(b, epoch - 1), '192.0.2.10', `4:${at(T0)}BBBB`);
      const evil = [
        ['192.0.2.11', `3:${at(T0)}B*99999999999999999999`], // a weight no count can hold
        ['192.0.2.12', 'garbage'], // no failure in it: counts not
        ['not-an-address', `1:${at(T0)}B`],
        ['192.0.2.013', `1:${at(T0)}B`], // not canonical
      ] as const;
      for (const [field, value] of evil) {
        const t = parseTarget(field);
        await raw.hset(keys.window(t ? bucketOf(t) : b, epoch), field, value);
      }
      // a target filed in another bucket than its own
      const stray = addr('192.0.2.14');
      await raw.hset(keys.window((bucketOf(stray) + 1) % 4096, epoch), '192.0.2.14', `1:${at(T0)}B`);
      // another type under a window key of ours
      await raw.set(keys.window(b, epoch + 1), 'not a hash');
      // a window left behind by a ban in force (its index entry says so): not failing; one over by now does not hide it
      const left = addr('192.0.2.15');
      await raw.hset(keys.window(bucketOf(left), epoch), '192.0.2.15', `1:${at(T0)}B`);
      await raw.zadd(keys.index(bucketOf(left)), now + 60_000, '192.0.2.15');
      const over = addr('192.0.2.16');
      await raw.hset(keys.window(bucketOf(over), epoch), '192.0.2.16', `1:${at(T0 - 1)}B`);
      await raw.zadd(keys.index(bucketOf(over)), now - 1, '192.0.2.16');
      const f = await store.failing(now, 20);
      assert.deepEqual(
        [f.total, f.top.map((x) => [x.target.text, x.failures, x.threshold, x.last, x.account])],
        [
          2,
          [
            ['192.0.2.10', 2, POLICY.maxretry, T0 + 5, '6001 x'],
            ['192.0.2.16', 1, POLICY.maxretry, T0 - 1, ''],
          ],
        ],
      );
    } finally {
      await store.close();
    }
  });

  it('has an identity until the data is lost (FLUSHALL): then a new one', async () => {
    const a = open('id:');
    const b = open('id:');
    try {
      const first = await a.identity();
      assert.equal(first.created, true, 'the first to ask writes it');
      const id = first.id;
      assert.deepEqual(await b.identity(), { id, created: false }, 'every node of a fleet sees the same');
      assert.equal(await raw.pttl('id:id'), -1, 'the one key that never expires');
      await raw.flushall();
      const fresh = await b.identity();
      assert.notEqual(fresh.id, id);
      assert.equal(fresh.created, true, 'a store that lost its data says so to the first who asks');
      assert.deepEqual(await a.identity(), { id: fresh.id, created: false });
      // someone else's value of another type under the key is replaced, never a stop
      await raw.del('id:id');
      await raw.hset('id:id', 'x', '1');
      const replaced = await a.identity();
      assert.equal(replaced.created, true);
      assert.equal(await raw.get('id:id'), replaced.id);
    } finally {
      await a.close();
      await b.close();
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
        assert.deepEqual(await recordFailure(store, failure('192.0.2.1', T0)), { type: 'counted', count: 1 });
      } finally {
        await store.close();
      }

      const wrong = 'Wr0ng-Pa55word-4711';
      const logs: string[] = [];
      const logger = createLogger(
        'info',
        new Writable({
          write(chunk, _enc, cb) {
            logs.push(String(chunk));
            cb();
          },
        }),
      );
      const client = createRedisClient({ url: `redis://:${wrong}@127.0.0.1:${secured.port}`, logger });
      try {
        const err: unknown = await client.ping().then(
          () => null,
          (e: unknown) => e,
        );
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
    assert.ok(
      delays.slice(10).every((d) => d >= 4_000),
      'capped, not reset',
    );
    assert.ok(new Set(delays.slice(10)).size > 1, 'jittered');
  });

  it('refuses URLs it cannot use without echoing their secrets', () => {
    assert.throws(
      () => createRedisClient({ url: 'http://u:topsecret@host' }),
      (e: Error) => !e.message.includes('topsecret'),
    );
    assert.throws(
      () => createRedisClient({ url: 'not a url topsecret' }),
      (e: Error) => !e.message.includes('topsecret'),
    );
  });
});
