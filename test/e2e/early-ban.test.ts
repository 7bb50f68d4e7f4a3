// A ban placed in the kernel on the store's brink, before the store has answered for the failure that makes it, and
// settled by the store's verdict: the real daemon, a real Redis paused so that it cannot answer, real nft.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startBed, markerEvents, type Bed } from '../support/bed.js';
import { bannedInKernel, played } from '../support/bed-wait.js';
import { pjsipEvent } from '../support/ami-events.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { readRecord, scanKeys, windowFailures } from '../support/redis-layout.js';
import { bucketOf, tagOf } from '../../src/store/keys.js';
import { parseTarget } from '../../src/net/ip.js';

let redis: RedisServer;
let client: Redis;
before(async () => {
  redis = await startRedisServer();
  client = new Redis(redis.url);
});
after(async () => {
  await client?.quit();
  await redis?.stop();
});

let session = 0;
function failure(address: string): string {
  return pjsipEvent('InvalidAccountID', { remote: address, session: `early-${++session}@${address}` });
}

/**
 * maxretry−1 failures from `address`, one read each, then a marker banned after them: the store's verdicts come back in
 * order, so once the marker is in the kernel the daemon has the verdict that put `address` on the brink.
 */
async function onTheBrink(bed: Bed, prefix: string, address: string, marker: string): Promise<void> {
  for (let i = 0; i < 4; i++) {
    bed.replay.inject(failure(address));
    await waitFor(`failure ${i + 1} of ${address} counted`, async () =>
      (await windowFailures(client, prefix, address)) === i + 1 ? true : undefined,
    );
  }
  bed.replay.inject(markerEvents(5, marker));
  await bannedInKernel(bed, marker, 10_000);
}

/**
 * Redis answers no write (a script is one) until unpaused: the failure that makes up the brink is sent and its element
 * awaited in the kernel meanwhile, so whatever reached the kernel did not wait for the store. Returns with Redis paused.
 */
async function earlyBanWhilePaused(t: TestContext, bed: Bed, attacker: string): Promise<void> {
  await client.call('CLIENT', 'PAUSE', '30000', 'WRITE');
  t.after(() => client.call('CLIENT', 'UNPAUSE'));
  bed.replay.inject(failure(attacker));
  await bannedInKernel(bed, attacker, 10_000, 'the early ban in the kernel while Redis is paused');
}

test('the failure that crosses maxretry is in the kernel before the store has answered for it; the verdict confirms it', async (t) => {
  const prefix = 'early-ok:';
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: prefix });
  await played(bed);
  const attacker = '198.18.0.40';
  await onTheBrink(bed, prefix, attacker, '192.0.2.240');

  await earlyBanWhilePaused(t, bed, attacker);
  assert.deepEqual(Object.keys(await readRecord(client, prefix, attacker)), [], 'no ban in the store yet');
  assert.ok(!bed.daemon.logs.some((l) => l.event === 'ban' && l.address === attacker), 'no ban logged before the store made it');

  await client.call('CLIENT', 'UNPAUSE');
  const line = await waitFor('the ban logged once the store made it', () =>
    bed.daemon.logs.find((l) => l.event === 'ban' && l.address === attacker),
  );
  assert.equal(line['count'], 5);
  assert.ok((await readRecord(client, prefix, attacker))['u'], 'the ban is in the store');
  // the kernel holds it for the whole bantime (1 h): the early ban was not a stopgap of its own length
  const element = (await bed.firewall.list()).find((e) => e.address === attacker);
  assert.ok(element && element.expiresMs !== null && element.expiresMs > 3_000_000, JSON.stringify(element));
  assert.ok(!bed.daemon.logs.some((l) => l.event === 'early-ban-withdrawn'));
});

test('an early ban the store does not make is lifted again, and said so', async (t) => {
  const prefix = 'early-no:';
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: prefix });
  await played(bed);
  const attacker = '198.18.0.41';
  await onTheBrink(bed, prefix, attacker, '192.0.2.241');

  // the count goes behind the daemon's back (as another node's operator clearing it by hand would)
  const target = parseTarget(attacker)!;
  for (const key of await scanKeys(client, `${prefix}{${tagOf(bucketOf(target))}}w*`)) await client.hdel(key, attacker);
  assert.equal(await windowFailures(client, prefix, attacker), 0);

  await earlyBanWhilePaused(t, bed, attacker);
  await client.call('CLIENT', 'UNPAUSE');

  const withdrawn = await waitFor('the early ban withdrawn', () =>
    bed.daemon.logs.find((l) => l.event === 'early-ban-withdrawn' && l.address === attacker),
  );
  assert.match(String(withdrawn['why']), /counted 1 failure/);
  await waitFor('the element gone from the kernel', async () => (!(await bed.elements()).includes(attacker) ? true : undefined));
  assert.equal(await windowFailures(client, prefix, attacker), 1, 'the failure itself is counted');
  assert.deepEqual(Object.keys(await readRecord(client, prefix, attacker)), [], 'no ban in the store');
  assert.ok(!bed.daemon.logs.some((l) => l.event === 'ban' && l.address === attacker));
});
