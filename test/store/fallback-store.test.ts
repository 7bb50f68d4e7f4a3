// Redis with the local fallback, against a real redis-server that is killed, restarted and paused: events are
// counted locally while it is away, the bans decided meanwhile are written back once (ban record, history, index)
// when it returns, and a phone trusted before the outage keeps its higher threshold during it.
import { recordChallenge, recordFailure, recordSuccess } from '../../src/store/activity.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { Redis } from 'ioredis';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { createRedisClient } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { FallbackStore, isUnavailable, type Recovery } from '../../src/store/fallback-store.js';
import type { BanRecord, FailureVerdict } from '../../src/store/store.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { NODE, POLICY, addr, failure, target } from './contract.js';

let server: RedisServer;
before(async () => {
  server = await startRedisServer({ persist: true });
});
after(async () => {
  await server?.stop();
});

interface Rig {
  readonly store: FallbackStore;
  readonly primary: RedisStore;
  readonly client: Redis;
  readonly metrics: Metrics;
  readonly recoveries: Recovery[];
  logs(): string;
  metric(name: 'storeFallbackActive' | 'storeFallbacks' | 'storeFallbackEvents'): Promise<number>;
  writeback(result: string): Promise<number>;
  /** crashes the redis-server and waits until the client has seen the connection go */
  outage(): Promise<void>;
}

let prefixes = 0;
function rig(t: { after(fn: () => Promise<void>): void }, commandTimeoutMs = 5_000, maxWriteback = 1_000): Rig {
  const client = createRedisClient({ url: server.url, commandTimeoutMs });
  const primary = new RedisStore({ client, keyPrefix: `fb${++prefixes}:`, nodeId: NODE, policy: POLICY });
  const metrics = new Metrics();
  const sink = new PassThrough();
  let out = '';
  sink.on('data', (d: Buffer) => (out += d.toString()));
  const store = new FallbackStore({
    primary,
    local: new MemoryStore({ nodeId: NODE, policy: POLICY, maxAddresses: 1_000 }),
    primaryReady: () => client.status === 'ready',
    logger: createLogger('info', sink),
    metrics,
    maxWriteback,
    probeIntervalMs: 100,
    probeTimeoutMs: 300,
  });
  const recoveries: Recovery[] = [];
  store.on('recovered', (r) => recoveries.push(r));
  t.after(() => store.close());
  return {
    store,
    primary,
    client,
    metrics,
    recoveries,
    logs: () => out,
    async metric(name) {
      const { values } = await metrics[name].get();
      return values[0]?.value ?? 0;
    },
    async writeback(result) {
      const { values } = await metrics.storeWriteback.get();
      return values.find((v) => v.labels.result === result)?.value ?? 0;
    },
    async outage() {
      await server.crash();
      await waitFor('the client to see the connection gone', () => (client.status !== 'ready' ? true : undefined));
    },
  };
}

async function failures(store: FallbackStore, address: string, n: number): Promise<FailureVerdict> {
  let last: FailureVerdict | undefined;
  for (let i = 0; i < n; i++) last = await recordFailure(store, failure(address, Date.now()));
  return last!;
}

function banned(v: FailureVerdict): BanRecord {
  assert.equal(v.type, 'banned', JSON.stringify(v));
  return (v as { ban: BanRecord }).ban;
}

describe('FallbackStore on a real redis-server', () => {
  it('counts locally while Redis is down, writes the bans back once when it returns, and goes back to Redis', async (t) => {
    const r = rig(t);
    await r.client.ping();
    // before the outage: Redis counts, and a ban decided there stays there
    assert.deepEqual(await recordFailure(r.store, failure('198.51.100.1', Date.now())), { type: 'counted', count: 1 });
    assert.equal((await r.primary.recentFailures(target('198.51.100.1'))).length, 1);
    const before = banned(await failures(r.store, '198.51.100.2', POLICY.maxretry));
    // a phone logs in before the outage: trusted in Redis, and mirrored locally
    await recordSuccess(r.store, { address: addr('198.51.100.3'), now: Date.now(), trust: true });
    assert.ok(await r.primary.trustedUntil(target('198.51.100.3'), Date.now()));
    assert.equal(await r.metric('storeFallbacks'), 0);

    await r.outage();
    // the attack goes on during the outage: still counted, still banned, with the same policy
    assert.deepEqual(await recordFailure(r.store, failure('198.51.100.1', Date.now())), { type: 'counted', count: 1 });
    const during = banned(await failures(r.store, '198.51.100.1', POLICY.maxretry - 1));
    assert.equal(during.node, NODE);
    assert.equal(during.reason, 'failures');
    assert.equal(during.count, POLICY.maxretry);
    const v6 = banned(await failures(r.store, '2001:db8::66', POLICY.maxretry));
    assert.equal((await recordFailure(r.store, failure('2001:db8::66', Date.now()))).type, 'already-banned');
    // the trusted phone mistypes its password maxretry times: the trusted threshold holds during the outage too
    assert.equal((await failures(r.store, '198.51.100.3', POLICY.maxretry)).type, 'counted');
    // a challenge-only scanner is caught locally as well
    let scan: FailureVerdict | undefined;
    for (let i = 0; i < POLICY.scanner.maxretry; i++)
      scan = await recordChallenge(r.store, { address: addr('198.51.100.4'), now: Date.now() });
    const scanner = banned(scan!);
    assert.equal(scanner.reason, 'scanner');

    assert.equal(await r.metric('storeFallbackActive'), 1);
    assert.equal(await r.metric('storeFallbacks'), 1, 'one outage, one switch');
    assert.ok((await r.metric('storeFallbackEvents')) >= 2 * POLICY.maxretry + POLICY.scanner.maxretry);
    assert.deepEqual({ ...r.store.state, since: typeof r.store.state.since }, { active: true, since: 'number', pendingWriteback: 3 });
    assert.match(r.logs(), /"msg":"redis unreachable: counting and banning in the local fallback store until it answers again"/);

    await server.restart();
    await waitFor('the write-back', () => (r.recoveries.length > 0 ? true : undefined), 15_000);
    const recovery = r.recoveries[0]!;
    assert.deepEqual(
      recovery.written.map((b) => b.address),
      ['198.51.100.1', '2001:db8::66', '198.51.100.4'],
    );
    assert.equal(recovery.covered, 0);
    assert.ok(recovery.outageMs > 0);
    assert.equal(await r.metric('storeFallbackActive'), 0);
    assert.equal(await r.writeback('written'), 3);
    assert.deepEqual(r.store.state, { active: false, since: null, pendingWriteback: 0 });

    // the records in Redis are the ones enforced here: same times, node and reason, one history entry each
    for (const ban of [during, v6, scanner]) {
      const stored = await r.primary.getBan(target(ban.address), Date.now());
      assert.ok(stored, `${ban.address} in Redis`);
      assert.deepEqual(
        { ...stored, previousBans: 0 },
        { ...ban, previousBans: 0 },
        `${ban.address}: the written-back record is the one decided locally`,
      );
      assert.equal((await r.primary.history(target(ban.address))).length, 1);
    }
    // the ban made before the outage survived the crash (AOF) and is untouched
    assert.equal((await r.primary.getBan(target('198.51.100.2'), Date.now()))?.until, before.until);
    const index = new Set<string>();
    for await (const page of r.primary.activeBans(Date.now())) for (const b of page) index.add(b.address);
    assert.deepEqual([...index].sort(), ['198.51.100.1', '198.51.100.2', '198.51.100.4', '2001:db8::66']);

    // writing back again changes nothing: no second history entry, the record stays
    assert.equal(await r.primary.restoreBan(during, Date.now()), false);
    assert.equal((await r.primary.history(target(during.address))).length, 1);

    // new events go to Redis again
    await recordFailure(r.store, failure('198.51.100.9', Date.now()));
    assert.equal((await r.primary.recentFailures(target('198.51.100.9'))).length, 1);
    assert.match(r.logs(), /"written":3.*"msg":"redis reachable again: bans decided meanwhile written back"/);
  });

  it('past maxWriteback the oldest bans of an outage are dropped from the write-back, counted; the newest are written', async (t) => {
    const r = rig(t, 5_000, 64);
    await r.client.ping();
    await r.outage();
    const addresses = Array.from({ length: 150 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    for (const a of addresses) banned(await failures(r.store, a, POLICY.maxretry));
    const pending = r.store.state.pendingWriteback;
    // 1/64 below the bound once it overflows, never above it
    assert.ok(pending <= 64 && pending >= 63, `${pending} pending`);
    assert.equal(await r.writeback('dropped'), 150 - pending);
    await server.restart();
    await waitFor('the write-back', () => (r.recoveries.length > 0 ? true : undefined), 15_000);
    assert.deepEqual(
      r.recoveries[0]!.written.map((b) => b.address),
      addresses.slice(150 - pending),
    );
  });

  it("past maxWriteback the oldest of an outage's unbans are dropped, counted; the newest reach Redis in order", async (t) => {
    const r = rig(t, 5_000, 64);
    await r.client.ping();
    await r.outage();
    const addresses = Array.from({ length: 150 }, (_, i) => `198.19.${i >> 8}.${i & 255}`);
    for (const a of addresses) await r.store.unban(target(a));
    const dropped = await r.writeback('dropped');
    // 1/64 below the bound once it overflows, never above it
    assert.ok(dropped >= 150 - 64 && dropped <= 150 - 63, `${dropped} dropped`);
    await server.restart();
    await waitFor('the write-back', () => (r.recoveries.length > 0 ? true : undefined), 15_000);
    assert.deepEqual(
      r.recoveries[0]!.unbanned.map((u) => u.text),
      addresses.slice(dropped),
    );
  });

  it('a ban another node made meanwhile covers the one decided here: no second record, no second history entry', async (t) => {
    const r = rig(t);
    await r.client.ping();
    await r.outage();
    const local = banned(await failures(r.store, '203.0.113.7', POLICY.maxretry));
    // another PBX reaches Redis first and bans the same address for longer
    await server.restart();
    const other = new RedisStore({
      client: createRedisClient({ url: server.url }),
      keyPrefix: `fb${prefixes}:`,
      nodeId: 'pbx-other',
      policy: POLICY,
    });
    t.after(() => other.close());
    const longer = await other.ban({ target: target('203.0.113.7'), reason: 'manual', durationMs: 7_200_000, now: Date.now() });
    await waitFor('the write-back', () => (r.recoveries.length > 0 ? true : undefined), 15_000);
    assert.deepEqual(r.recoveries[0]!.written, []);
    assert.equal(r.recoveries[0]!.covered, 1);
    assert.equal(await r.writeback('covered'), 1);
    const stored = await r.primary.getBan(target('203.0.113.7'), Date.now());
    assert.equal(stored?.node, 'pbx-other');
    assert.equal(stored?.until, longer.until);
    assert.ok(stored!.until > local.until);
    assert.equal((await r.primary.history(target('203.0.113.7'))).length, 1);
  });

  it('a paused Redis: events wait for the command timeout, then are counted locally; nothing is lost', async (t) => {
    const r = rig(t, 400);
    await r.client.ping();
    server.pause();
    t.after(async () => server.resume());
    // the connection stays up, so the first events go to Redis and time out; they are then counted here
    const verdicts = await Promise.all(
      Array.from({ length: POLICY.maxretry }, () => recordFailure(r.store, failure('192.0.2.77', Date.now()))),
    );
    assert.equal(verdicts.filter((v) => v.type === 'banned').length, 1, JSON.stringify(verdicts));
    assert.equal(await r.metric('storeFallbackActive'), 1);
    assert.match(r.logs(), /"why":"no answer in time \(a hung or paused server\?\)"/);
    // the probe cannot get through while it is paused
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(r.recoveries.length, 0);

    server.resume();
    await waitFor('the write-back', () => (r.recoveries.length > 0 ? true : undefined), 15_000);
    // Redis ran the timed-out commands once it woke, and so banned the address itself (its reply was lost): the
    // write-back finds that ban, adds nothing, and indexes it, which nobody had done
    const { written, covered } = r.recoveries[0]!;
    assert.equal(written.length + covered, 1, JSON.stringify(r.recoveries[0]));
    assert.ok(await r.primary.getBan(target('192.0.2.77'), Date.now()));
    assert.equal((await r.primary.history(target('192.0.2.77'))).length, 1, 'one ban, one history entry');
    const index: string[] = [];
    for await (const page of r.primary.activeBans(Date.now())) index.push(...page.map((b) => b.address));
    assert.deepEqual(index, ['192.0.2.77']);
  });

  it('a wrong argument is a bug, not an outage: it is thrown and the store stays on Redis', async (t) => {
    const r = rig(t);
    await r.client.ping();
    await assert.rejects(recordFailure(r.store, failure('192.0.2.8', Date.now(), { weight: 0 })), /invalid weight 0/);
    assert.equal(await r.metric('storeFallbacks'), 0);
    assert.equal(isUnavailable(new RangeError('x')), false);
    assert.equal(isUnavailable(Object.assign(new Error('ERR Error running script'), { name: 'ReplyError' })), false);
    assert.equal(isUnavailable(Object.assign(new Error('LOADING Redis is loading the dataset in memory'), { name: 'ReplyError' })), true);
    assert.equal(isUnavailable(new Error('Connection is closed.')), true);
  });

  it("an operator's ban during an outage is written back; an unban waits for Redis, hides the ban meanwhile, and lands before the bans", async (t) => {
    const r = rig(t);
    await r.client.ping();
    const old = await r.store.ban({ target: target('203.0.113.70'), reason: 'manual', durationMs: 3_600_000, now: Date.now() });
    const again = await r.store.ban({ target: target('203.0.113.71'), reason: 'manual', durationMs: 3_600_000, now: Date.now() });
    assert.ok(!r.store.decidedLocally(old));
    await r.outage();
    assert.equal(r.store.reachable(), false);

    const during = await r.store.ban({
      target: target('198.51.100.70'),
      reason: 'manual',
      durationMs: 3_600_000,
      now: Date.now(),
      note: 'outage',
    });
    assert.ok(r.store.decidedLocally(during), 'the fleet hears of it with the write-back');
    assert.equal(r.store.state.pendingWriteback, 1);
    // lifted during the outage: one made before it (in Redis), one made during it (never to reach Redis), and one
    // lifted, then banned again (the new ban is what holds)
    assert.equal(await r.store.unban(target('203.0.113.70')), false, 'not known here: the caller knows what it enforces');
    const gone = await r.store.ban({ target: target('198.51.100.71'), reason: 'manual', durationMs: 3_600_000, now: Date.now() });
    assert.equal(await r.store.unban(target('198.51.100.71')), true);
    assert.equal(r.store.state.pendingWriteback, 1, 'a ban lifted before Redis came back is not written back');
    assert.equal(await r.store.unban(target('203.0.113.71')), false);
    const rebanned = await r.store.ban({ target: target('203.0.113.71'), reason: 'manual', durationMs: 7_200_000, now: Date.now() });

    await server.restart();
    await waitFor('the Redis connection', () => (r.client.status === 'ready' ? true : undefined), 15_000);
    // Redis answers, the unbans are not in it yet: a reconciliation reading now must not see the lifted ban
    const visible: string[] = [];
    for await (const page of r.store.activeBans(Date.now())) visible.push(...page.map((b) => b.address));
    assert.ok(!visible.includes('203.0.113.70'), visible.join(' '));
    assert.equal(await r.store.getBan(target('203.0.113.70'), Date.now()), null);

    await waitFor('the write-back', () => (r.recoveries.length > 0 ? true : undefined), 15_000);
    const recovery = r.recoveries[0]!;
    assert.deepEqual(recovery.unbanned.map((u) => u.text).sort(), ['198.51.100.71', '203.0.113.70']);
    assert.deepEqual(recovery.written.map((b) => b.address).sort(), ['198.51.100.70', '203.0.113.71']);
    assert.equal(await r.primary.getBan(target('203.0.113.70'), Date.now()), null, 'the unban reached Redis');
    assert.equal(await r.primary.getBan(target('198.51.100.71'), Date.now()), null);
    assert.equal((await r.primary.getBan(target('203.0.113.71'), Date.now()))?.until, rebanned.until, 'the ban after the unban holds');
    assert.equal((await r.primary.getBan(target('198.51.100.70'), Date.now()))?.until, during.until);
    assert.ok(gone.until > 0 && again.until > 0);
    // and the local store forgot them: the next outage does not bring them back
    assert.equal(await r.store.local.getBan(target('198.51.100.71'), Date.now()), null);
  });
});
