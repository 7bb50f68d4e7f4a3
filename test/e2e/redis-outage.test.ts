// Redis failing under the real daemon: killed for 30 s in the middle of an attack, and paused (a hung server).
// Real parts throughout: the `ami-guard run` process, a replay AMI server, redis-server, nft in a namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER, type Bed } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { freePort, getHealth, metric, scrapeMetrics } from '../support/http.js';
import { bannedInKernel } from '../support/bed-wait.js';
import { historyLength, indexMembers, publishedBans, readRecord, recordKey, windowFailures } from '../support/redis-layout.js';

const OUTAGE_MS = 30_000;
const PREFIX = 'outage:';
const IGNORED = '198.51.100.200';

/** `n` password guesses from `address`, in the recorded byte format (each its own SIP request) */
function guesses(address: string, n: number): string {
  const raw = markerEvents(n, address);
  return address.includes(':') ? raw.replaceAll(`IPV4/UDP/${address}/`, `IPV6/UDP/${address}/`) : raw;
}

function inKernel(bed: Bed, address: string): Promise<void> {
  return bannedInKernel(bed, address, 20_000);
}

test('Redis down for 30 s mid-attack: bans go on locally, are written back once, and the fleet hears of each once', async (t) => {
  const redis = await startRedisServer({ persist: true });
  t.after(() => redis.stop());
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: PREFIX,
    config: { http: { port }, policy: { ignoreip: ['127.0.0.0/8', '::1', IGNORED] } },
  });
  assert.deepEqual(await bed.settle(), [], 'the phone is never banned');

  // the attack begins while Redis is up: B is banned through Redis, A has three guesses counted there
  const [A, B, E, F] = ['198.51.100.10', '198.51.100.11', '198.51.100.12', '198.51.100.13'];
  // C guesses over IPv6 and is counted and banned as its /64 (policy.ipv6prefix)
  const [C6, C] = ['2001:db8::66', '2001:db8::/64'];
  bed.replay.inject(guesses(B, 5) + guesses(A, 3));
  await inKernel(bed, B);
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
  client.on('error', () => undefined);
  t.after(async () => {
    client.disconnect();
  });
  await waitFor('A counted in Redis', async () => ((await windowFailures(client, PREFIX, A)) === 3 ? true : undefined));

  await redis.crash();
  const crashedAt = Date.now();
  // A goes on guessing, C (IPv6) starts, the ignore-listed address fails twenty times, B is already banned
  bed.replay.inject(guesses(A, 5) + guesses(C6, 5) + guesses(IGNORED, 20) + guesses(B, 3));
  await inKernel(bed, A);
  await inKernel(bed, C);
  assert.ok(Date.now() - crashedAt < OUTAGE_MS, 'banned while Redis was still down');
  await bed.daemon.waitForLog(
    (l) => l.msg === 'redis unreachable: counting and banning in the local fallback store until it answers again',
  );

  const down = await waitFor('/healthz to report the outage', async () => {
    const h = await getHealth(base);
    return h.status === 503 && h.report.store.fallback?.active && h.report.down.includes('store') ? h.report : undefined;
  });
  assert.deepEqual(down.down, ['store']);
  assert.equal(down.store.fallback?.pendingWriteback, 2);
  let m = await scrapeMetrics(base);
  assert.equal(metric(m, 'ami_guard_store_fallback_active'), 1);
  assert.equal(metric(m, 'ami_guard_store_fallbacks_total'), 1);
  assert.ok((metric(m, 'ami_guard_store_fallback_events_total') ?? 0) >= 10);
  assert.equal(metric(m, 'ami_guard_ami_connected'), 1, 'AMI reading goes on');

  // halfway through the outage a new attacker comes and goes: still stopped
  await sleep(Math.max(0, crashedAt + OUTAGE_MS / 2 - Date.now()));
  bed.replay.inject(guesses(E, 5));
  await inKernel(bed, E);

  // someone flushes our table while Redis is still down: the bans known here come back without reading Redis
  await bed.ns.execOk('nft', ['delete', 'table', 'inet', bed.table]);
  await bed.daemon.waitForLog(
    (l) => l.msg === 'store unreachable: re-applied the bans known here; full reconciliation once it answers',
    20_000,
  );
  await waitFor(
    'every ban back in the kernel',
    async () => {
      const now = await bed.elements();
      return [A, B, C, E, MARKER].every((x) => now.includes(x)) ? true : undefined;
    },
    20_000,
  );
  assert.ok(Date.now() - crashedAt < OUTAGE_MS, 'restored while Redis was still down');

  await sleep(Math.max(0, crashedAt + OUTAGE_MS - Date.now()));
  await redis.restart();
  const back = await bed.daemon.waitForLog((l) => l.msg === 'redis reachable again: bans decided meanwhile written back', 20_000);
  assert.equal(back.written, 3);
  assert.equal(back.covered, 0);
  assert.ok((back.outageMs as number) >= OUTAGE_MS - 1_000, `outage of ${String(back.outageMs)} ms`);
  await bed.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store' && l.why === 'redis reachable again', 20_000);
  await waitFor('/healthz to answer 200 again', async () => ((await getHealth(base)).status === 200 ? true : undefined), 20_000);
  assert.deepEqual((await getHealth(base)).report.store.fallback, { active: false, since: null, pendingWriteback: 0 });

  // what happened during the outage is in Redis: records, one history entry each, the index
  for (const address of [A, C, E]) {
    const ban = await readRecord(client, PREFIX, address);
    assert.equal(ban.n, 'test-node', address);
    assert.equal(ban.r, 'failures', address);
    assert.equal(ban.c, '5', address);
    assert.equal(await historyLength(client, PREFIX, address), 1, `${address}: one history entry`);
  }
  assert.equal(await historyLength(client, PREFIX, B), 1, 'B, banned before the outage, was not banned again');
  assert.equal(await client.exists(recordKey(PREFIX, IGNORED)), 0);
  const index = (await indexMembers(client, PREFIX)).map((m) => m.address);
  assert.deepEqual(index.sort(), [A, B, E, C, MARKER].sort());

  // each ban reached the fleet channel exactly once: at the time for B, with the write-back for A, C and E
  assert.deepEqual((await publishedBans(client, PREFIX)).sort(), [A, B, C, E, MARKER].sort());

  m = await scrapeMetrics(base);
  assert.equal(metric(m, 'ami_guard_bans_total'), 5, 'five bans made, each once');
  assert.equal(metric(m, 'ami_guard_store_writeback_total', { result: 'written' }), 3);
  assert.equal(metric(m, 'ami_guard_store_fallback_active'), 0);
  assert.equal(metric(m, 'ami_guard_events_shed_total'), 0);
  assert.deepEqual(await bed.elements(), [A, B, E, MARKER, C].sort());

  // and after the outage, Redis counts again
  bed.replay.inject(guesses(F, 5));
  await inKernel(bed, F);
  assert.equal(await historyLength(client, PREFIX, F), 1);
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon kept running');
});

test('a paused Redis: AMI reading never blocks, excess events are shed and counted, decided bans are kept', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const maxPending = 50;
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: PREFIX,
    config: { http: { port }, pipeline: { maxPending } },
  });
  await bed.settle();
  const decided = '203.0.113.50';
  bed.replay.inject(guesses(decided, 5));
  await inKernel(bed, decided);
  const before = metric(await scrapeMetrics(base), 'ami_guard_security_events_total') ?? 0;

  redis.pause();
  // a flood from 400 sources while Redis hangs: every event is read at once, the store queue stays bounded
  let flood = '';
  for (let i = 0; i < 400; i++) flood += guesses(`10.77.${i >> 8}.${i & 255}`, 1);
  bed.replay.inject(flood);
  await waitFor('every event read while Redis hangs', async () => {
    const n = metric(await scrapeMetrics(base), 'ami_guard_security_events_total') ?? 0;
    return n === before + 400 ? true : undefined;
  });
  let m = await scrapeMetrics(base);
  assert.ok((metric(m, 'ami_guard_events_shed_total') ?? 0) > 0, 'events beyond maxPending were shed');
  assert.ok((metric(m, 'ami_guard_pending_events') ?? 0) <= maxPending);

  // the commands time out (5 s) and the fallback takes over: a new attacker is banned while Redis still hangs
  await waitFor(
    'the fallback to take over',
    async () => (metric(await scrapeMetrics(base), 'ami_guard_store_fallback_active') === 1 ? true : undefined),
    20_000,
  );
  const late = '203.0.113.51';
  bed.replay.inject(guesses(late, 5));
  await inKernel(bed, late);
  assert.ok((await bed.elements()).includes(decided), 'the ban decided before the hang is still enforced');

  redis.resume();
  await bed.daemon.waitForLog((l) => l.msg === 'redis reachable again: bans decided meanwhile written back', 20_000);
  const client = new Redis(redis.url);
  t.after(async () => {
    await client.quit();
  });
  assert.ok((await readRecord(client, PREFIX, late)).u, 'the ban made during the hang is in Redis');
  assert.equal(await historyLength(client, PREFIX, late), 1);
  m = await scrapeMetrics(base);
  const shed = metric(m, 'ami_guard_events_shed_total') ?? 0;
  t.diagnostic(`shed ${shed} of 400 events while Redis hung; pending peaked at most ${maxPending}`);
  assert.equal(bed.daemon.child.exitCode, null);
});
