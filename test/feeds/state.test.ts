// The feed state and its pull lock, against a real redis-server and in memory: one contract for both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { MemoryFeedState, RECORD_TTL_MS, RedisFeedState, feedKeys, type FeedStateStore } from '../../src/feeds/state.js';

let redis: RedisServer;
let client: Redis;
before(async () => {
  redis = await startRedisServer();
  client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
});
after(async () => {
  client?.disconnect();
  await redis?.stop();
});

let n = 0;
const stores: Array<[string, () => FeedStateStore]> = [
  ['redis', () => new RedisFeedState(client, `st${++n}:`, 'pbx-a')],
  ['memory', () => new MemoryFeedState('pbx-a')],
];

for (const [kind, make] of stores) {
  test(`${kind}: one holder of the lock; a commit writes only while it holds it, and keeps it until the next pull`, async () => {
    const s = make();
    assert.deepEqual(await s.head('voipbl'), { version: 0, pulledAt: 0 });
    assert.equal(await s.read('voipbl'), null);
    const token = await s.tryLock('voipbl', 60_000);
    assert.ok(token);
    assert.equal(await s.tryLock('voipbl', 60_000), null, 'a second node finds the lock taken');
    const v = await s.commit(
      'voipbl',
      token,
      { data: Buffer.from([1, 2, 3]), fields: { pulledAt: 1234, node: 'pbx-a', failures: 0, stats: '{"entries":3}' } },
      3_600_000,
    );
    assert.equal(v, 1);
    assert.deepEqual(await s.head('voipbl'), { version: 1, pulledAt: 1234 });
    const r = (await s.read('voipbl'))!;
    // the record says when the next pull is due: when the lock ends
    const left = r.next - Date.now();
    assert.ok(left > 3_500_000 && left <= 3_600_000, String(left));
    if (kind === 'redis') {
      const ttl = await client.pttl(feedKeys(`st${n}:`, 'voipbl').lock);
      assert.ok(ttl > 3_500_000 && ttl <= 3_600_000, String(ttl));
    }
    assert.deepEqual([...r.data!], [1, 2, 3]);
    assert.equal(r.node, 'pbx-a');
    assert.equal(r.stats, '{"entries":3}');
    // a failure: the entries and their version stay, the error and the count are written, the lock kept for the backoff
    assert.equal(await s.commit('voipbl', token, { fields: { failures: 1, error: 'HTTP 503', errorAt: 5678 } }, 500), 1);
    const f = (await s.read('voipbl'))!;
    assert.deepEqual([f.version, [...f.data!], f.failures, f.error, f.errorAt], [1, [1, 2, 3], 1, 'HTTP 503', 5678]);
    assert.ok(f.next - Date.now() <= 500);
    // a stranger's token (a pull that outlived its lease) writes nothing
    assert.equal(await s.commit('voipbl', 'pbx-b:not-the-token', { data: Buffer.from([9]), fields: { node: 'pbx-b' } }, 1_000), null);
    assert.equal((await s.read('voipbl'))!.node, 'pbx-a');
  });

  test(`${kind}: an expired lock is free for the next node`, async () => {
    const s = make();
    const a = await s.tryLock('apiban', 50);
    assert.ok(a);
    await new Promise((r) => setTimeout(r, 120));
    const b = await s.tryLock('apiban', 60_000);
    assert.ok(b && b !== a);
    assert.equal(await s.commit('apiban', a, { fields: { failures: 1 } }, 1_000), null, 'the first holder lost it');
  });
}

test('redis: a record written by someone else is read as outside input: numbers that are not, long text cut', async () => {
  const s = new RedisFeedState(client, 'hostile:', 'pbx-a');
  const k = feedKeys('hostile:', 'voipbl');
  await client.hset(
    k.record,
    'v',
    'NaN',
    'at',
    '-5',
    'fails',
    '1e400',
    'err',
    'x'.repeat(10_000),
    'node',
    'pbx\u001b[31m',
    'data',
    Buffer.from('garbage'),
  );
  const r = (await s.read('voipbl'))!;
  assert.deepEqual([r.version, r.pulledAt, r.failures], [0, 0, 0]);
  assert.equal(r.error.length, 512);
  assert.equal(r.node, 'pbx\u001b[31m', 'kept as data; the CLI escapes it for the terminal');
  assert.deepEqual([...r.data!], [...Buffer.from('garbage')]);
  assert.deepEqual(await s.head('voipbl'), { version: 0, pulledAt: 0 });
  assert.throws(() => feedKeys('p:', 'Bad Name'), /invalid feed name/);
});

test('redis: keys share the feed hash tag, and the record and lock carry TTLs', async () => {
  const s = new RedisFeedState(client, 'ttl:', 'pbx-a');
  const token = (await s.tryLock('apiban', 60_000))!;
  await s.commit('apiban', token, { data: Buffer.from([1]), fields: { cursor: '1700000001' } }, 300_000);
  const k = feedKeys('ttl:', 'apiban');
  assert.deepEqual(k, { record: 'ttl:{feed:apiban}', lock: 'ttl:{feed:apiban}:lock' });
  const recordTtl = await client.pttl(k.record);
  assert.ok(recordTtl > RECORD_TTL_MS - 60_000 && recordTtl <= RECORD_TTL_MS, String(recordTtl));
  assert.equal((await s.read('apiban'))!.cursor, '1700000001');
});
