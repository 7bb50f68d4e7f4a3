// Bans are never lost (issue 14, items 1-3), with the real `ami-guard run`, real nft in a namespace and real Redis:
// the embedded store keeps its bans across a restart (and takes in the kernel's elements its state file missed); a
// corrupt state file is set aside; a Redis emptied while the daemon was stopped, or while it runs, is re-seeded from
// the kernel sets instead of lifting every ban; a Redis absent at boot leaves the daemon running and banning, and
// what it banned meanwhile reaches Redis once it answers.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER, type Bed } from '../support/bed.js';
import { bannedInKernel, played } from '../support/bed-wait.js';
import { createNetns, waitFor } from '../support/netns.js';
import { startRedisServer } from '../support/redis-server.js';
import { freePort, getHealth, metric, scrapeMetrics } from '../support/http.js';
import { indexMembers, publishedBans, readRecord, recordKey } from '../support/redis-layout.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { parseTarget } from '../../src/net/ip.js';
import { RedisChannel } from '../../src/fleet/redis-channel.js';
import { startFeedServer } from '../support/feed-server.js';

const ATTACKER = '198.18.0.11';

function stateDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ag-never-lost-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'state');
}

function target(text: string) {
  const t = parseTarget(text);
  assert.ok(t, text);
  return t;
}

/** the lines of the embedded store's state file that are bans, as [address, reason] */
function bansInStateFile(dir: string): Array<[string, string]> {
  return readFileSync(join(dir, 'store.json'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('["b"'))
    .map((l) => JSON.parse(l) as unknown[])
    .map((b) => [String(b[1]), String(b[4])] as [string, string])
    .sort();
}

async function startedUp(bed: Bed) {
  return bed.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store' && l.why === 'start-up', 30_000);
}

function removals(bed: Bed) {
  return bed.daemon.logs.filter((l) => /^reconciliation removed/.test(l.msg));
}

test('embedded store: a restart keeps every ban in the kernel and in the store, and takes in what the state file missed', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const dir = stateDir(t);
  const first = await startBed({ cleanup, recording: 'register-bruteforce', config: { store: { stateDir: dir } } });
  assert.deepEqual(await first.settle(), [ATTACKER]);
  assert.equal(await first.daemon.stop(), 0);
  assert.deepEqual(
    bansInStateFile(dir),
    [
      [MARKER, 'failures'],
      [ATTACKER, 'failures'],
    ].sort(),
  );
  // an element the state file does not know (written in the second before a crash, or by another version)
  await first.ns.execOk('nft', ['add', 'element', 'inet', first.table, 'banned_v4', '{ 198.51.100.77 timeout 2h }']);

  const second = await startBed({ cleanup, recording: 'legit-phone', ns: first.ns, config: { store: { stateDir: dir } } });
  const up = await startedUp(second);
  assert.equal(up.removed, 0, 'nothing lifted');
  assert.deepEqual(removals(second), []);
  assert.deepEqual((await second.elements()).sort(), [MARKER, ATTACKER, '198.51.100.77'].sort());
  const elements = await second.firewall.list();
  const attacker = elements.find((e) => e.address === ATTACKER);
  assert.ok(attacker?.expiresMs && attacker.expiresMs > 3_000_000, "with the ban's remaining time (1 h)");
  const adopted = elements.find((e) => e.address === '198.51.100.77');
  assert.ok(adopted?.expiresMs && adopted.expiresMs > 7_000_000, 'the adopted element keeps its own (2 h)');
  const took = second.daemon.logs.find((l) => /^took in 1 element\(s\) of the kernel sets/.test(l.msg));
  assert.ok(took, second.daemon.output().slice(-3000));

  // the store holds them: the attacker coming back is already banned there (no new ban), and the file says so
  assert.deepEqual(await second.settle(), [ATTACKER, '198.51.100.77'].sort());
  assert.equal(await second.daemon.stop(), 0);
  assert.deepEqual(
    bansInStateFile(dir),
    [
      [MARKER, 'failures'],
      [ATTACKER, 'failures'],
      ['198.51.100.77', 'restored'],
    ].sort(),
  );
  assert.equal(second.daemon.logs.filter((l) => l.event === 'ban').length, 0, 'no ban made again');

  // a corrupt state file is set aside, said in the log, and every ban stays
  writeFileSync(join(dir, 'store.json'), '{"format":"ami-guard-state","version":1,"id":"x"\n\u0000garbage');
  const third = await startBed({ cleanup, recording: 'legit-phone', ns: first.ns, config: { store: { stateDir: dir } } });
  await startedUp(third);
  const unusable = third.daemon.logs.find((l) => l.msg.startsWith('state file unusable, set aside'));
  assert.ok(unusable && unusable.level === 50, third.daemon.output().slice(-3000));
  assert.ok(readdirSync(dir).some((f) => f === unusable.setAsideAs));
  const lost = third.daemon.logs.find((l) => l.msg.startsWith('the store lost its data'));
  assert.ok(lost && lost.level === 40 && lost.elements === 3, 'the store identity changed with the file');
  assert.deepEqual(removals(third), []);
  assert.deepEqual((await third.elements()).sort(), [MARKER, ATTACKER, '198.51.100.77'].sort());
  assert.equal(third.daemon.child.exitCode, null);
});

test('Redis emptied while the daemon was stopped (FLUSHALL): nothing unbanned, Redis re-seeded from the kernel', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const client = new Redis(redis.url);
  t.after(async () => {
    await client.quit();
  });
  const dir = stateDir(t);
  const config = { store: { stateDir: dir } };
  const first = await startBed({ cleanup, recording: 'register-bruteforce', redisUrl: redis.url, keyPrefix: 'nl:', config });
  assert.deepEqual(await first.settle(), [ATTACKER]);
  assert.equal(await first.daemon.stop(), 0);
  await client.flushall();

  const port = await freePort();
  const second = await startBed({
    cleanup,
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'nl:',
    ns: first.ns,
    config: { ...config, http: { port } },
  });
  const up = await startedUp(second);
  assert.equal(up.removed, 0);
  assert.deepEqual(removals(second), []);
  const lost = second.daemon.logs.find((l) => l.msg.startsWith('the store lost its data'));
  assert.ok(lost, second.daemon.output().slice(-3000));
  assert.equal(lost.written, 2);
  assert.deepEqual((lost.addresses as string[]).sort(), [MARKER, ATTACKER].sort());
  assert.deepEqual((await second.elements()).sort(), [MARKER, ATTACKER].sort());

  const record = await readRecord(client, 'nl:', ATTACKER);
  assert.equal(record.r, 'restored');
  assert.equal(record.n, 'test-node');
  assert.deepEqual((await indexMembers(client, 'nl:')).map((m) => m.address).sort(), [MARKER, ATTACKER].sort());
  const m = await scrapeMetrics(`http://127.0.0.1:${port}`);
  assert.equal(metric(m, 'ami_guard_store_reseeds_total'), 1);
  assert.equal(metric(m, 'ami_guard_store_reseeded_bans_total'), 2);
});

test('Redis restarted empty while the daemon runs: seen as it reconnects, re-seeded (bans, not blocklist entries), nothing unbanned', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
  client.on('error', () => undefined);
  t.after(() => {
    client.disconnect();
  });
  // a community blocklist shares the kernel sets: its entry is no ban of ours and is never written into the store
  const feeds = await startFeedServer();
  t.after(() => feeds.stop());
  feeds.setList('voipbl', '198.51.100.60\n');
  const bed = await startBed({
    cleanup,
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'nl:',
    config: { store: { stateDir: stateDir(t) }, blocklists: { lists: [{ name: 'voipbl', url: feeds.listUrl('voipbl'), interval: '1h' }] } },
  });
  assert.deepEqual(await bed.settle(), [ATTACKER, '198.51.100.60'].sort());

  await redis.crash();
  await redis.restart(); // no persistence: an empty Redis, as after a restart without AOF or RDB
  const lost = await bed.daemon.waitForLog((l) => l.msg.startsWith('the store lost its data'), 30_000);
  assert.equal(lost.written, 2);
  assert.equal(lost.why, 'redis reconnected');
  const after = await bed.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store' && l.why === 'redis reconnected', 30_000);
  assert.equal(after.removed, 0);
  assert.deepEqual(removals(bed), []);
  assert.deepEqual((await bed.elements()).sort(), [MARKER, ATTACKER, '198.51.100.60'].sort());
  assert.deepEqual((await indexMembers(client, 'nl:')).map((x) => x.address).sort(), [MARKER, ATTACKER].sort());
  assert.equal(await client.exists(recordKey('nl:', '198.51.100.60')), 0, 'the feed entry is not a ban record');

  // the store works on: a new attacker is banned through the re-seeded Redis
  bed.replay.inject(markerEvents(5, '198.51.100.31'));
  await bannedInKernel(bed, '198.51.100.31', 20_000);
  assert.equal((await readRecord(client, 'nl:', '198.51.100.31')).r, 'failures');
});

test("Redis absent at boot: the daemon starts on the kernel's bans, bans meanwhile, and catches up once Redis answers", async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  await redis.crash(); // its port stays free; restart() brings it back there
  const ns = await createNetns(cleanup);
  // a ban a previous run left in the kernel
  const nft = new NftFirewall({ table: 'ami_guard', netns: ns.name });
  await nft.init();
  await nft.add([{ target: target('203.0.113.9'), timeoutMs: 3_600_000 }]);
  await nft.shutdown();

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const bed = await startBed({
    cleanup,
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'boot:',
    ns,
    config: { store: { stateDir: stateDir(t) }, http: { port } },
  });
  const boot = await bed.daemon.waitForLog((l) => l.msg.startsWith('store unreachable at start: starting on the local fallback'), 30_000);
  assert.equal(boot.bans, 1);
  assert.equal(boot.err, `Redis at ${redis.url} is unreachable: connection refused`);
  await played(bed);

  // banning from the start
  bed.replay.inject(markerEvents(5, '198.51.100.40'));
  await bannedInKernel(bed, '198.51.100.40', 20_000);
  assert.ok((await bed.elements()).includes('203.0.113.9'), "the kernel's ban stays");
  const health = await waitFor('/healthz to name the cause', async () => {
    const h = await getHealth(base);
    return h.report.store.error ? h : undefined;
  });
  assert.equal(health.status, 503);
  assert.equal(health.report.store.error, `Redis at ${redis.url} is unreachable: connection refused`);
  assert.equal(health.report.store.fallback?.active, true);
  assert.equal(health.report.store.fallback?.pendingWriteback, 1);

  await redis.restart();
  const back = await bed.daemon.waitForLog((l) => l.msg === 'redis reachable again: bans decided meanwhile written back', 30_000);
  assert.equal(back.written, 1);
  const reconciled = await bed.daemon.waitForLog(
    (l) => l.msg === 'reconciled firewall with store' && l.why === 'redis reachable again',
    30_000,
  );
  assert.equal(reconciled.removed, 0);
  assert.deepEqual(removals(bed), []);
  assert.deepEqual((await bed.elements()).sort(), ['198.51.100.40', '203.0.113.9'].sort());

  const client = new Redis(redis.url);
  t.after(async () => {
    await client.quit();
  });
  assert.equal((await readRecord(client, 'boot:', '198.51.100.40')).r, 'failures', 'the ban decided meanwhile is in Redis');
  assert.equal((await readRecord(client, 'boot:', '203.0.113.9')).r, 'restored', "and the kernel's (a Redis without an identity)");
  assert.deepEqual(await publishedBans(client, 'boot:'), ['198.51.100.40'], 'the fleet heard of it once');
  await waitFor('/healthz to answer 200', async () => ((await getHealth(base)).status === 200 ? true : undefined), 20_000);

  // the fleet channel is read from now on: another node's ban is enforced here
  const channel = new RedisChannel({ client, keyPrefix: 'boot:', maxlen: 1000 });
  await channel.publishBans([{ address: '198.51.100.41', until: Date.now() + 600_000, reason: 'failures' }], {
    node: 'pbx9',
    origin: 'pbx9:1',
  });
  await bannedInKernel(bed, '198.51.100.41', 20_000);
  assert.ok(!/max retries per request/i.test(bed.daemon.output()), 'no library words for the cause');
  assert.equal(bed.daemon.child.exitCode, null);
});
