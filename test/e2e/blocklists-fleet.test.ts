// Feeds in a fleet: two real daemons on one real Redis, each with nft in its own namespace. One of them pulls each
// feed (a lock in Redis), both enforce what was pulled, each under its own ignore list; the CLI shows the feeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { startBed, type Bed } from '../support/bed.js';
import { startFeedServer } from '../support/feed-server.js';
import { startRedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { cli } from '../support/cli.js';

async function inKernel(bed: Bed, want: readonly string[], not: readonly string[] = []): Promise<string[]> {
  try {
    return await waitFor(
      `the feed entries in ${bed.ns.name}`,
      async () => {
        const els = new Set(await bed.elements());
        return want.every((a) => els.has(a)) && not.every((a) => !els.has(a)) ? [...els] : undefined;
      },
      30_000,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}; kernel: ${(await bed.elements()).join(' ')}; daemon output:\n${bed.daemon.output().slice(-5000)}`,
    );
  }
}

test('two nodes, one pull per feed, both enforce; list, show and status name the feeds', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const server = await startFeedServer();
  t.after(() => server.stop());
  const first = server.addBans(['198.51.100.10', '198.51.100.11']);
  const second = server.addBans(['2001:db8:aa::1']);
  server.setList('voipbl', '198.51.100.20\n198.51.100.21\n203.0.113.0/24\n# the end\n');
  // an interval longer than the test: whichever node takes the lock first pulls, once, for the fleet
  const blocklists = {
    apiban: { url: server.apibanUrl, key: server.apibanKey, interval: '1h' },
    lists: [{ name: 'voipbl', url: server.listUrl('voipbl'), interval: '1h' }],
  };
  const node = (id: string, ignoreip: string[]) =>
    startBed({
      cleanup: (fn) => t.after(fn),
      recording: 'legit-phone',
      redisUrl: redis.url,
      keyPrefix: 'fb:',
      config: { node: { id }, policy: { ignoreip: ['127.0.0.0/8', '::1', ...ignoreip] }, blocklists },
    });
  // B ignores one of the list's addresses: its own ignore list holds for what the fleet pulled
  const [a, b] = await Promise.all([node('pbx-a', []), node('pbx-b', ['198.51.100.21', '203.0.113.128/25'])]);
  const all = ['198.51.100.10', '198.51.100.11', '2001:db8:aa::1', '198.51.100.20', '198.51.100.21', '203.0.113.0/24'];
  await inKernel(a!, all);
  await inKernel(
    b!,
    [...all.filter((x) => x !== '198.51.100.21' && x !== '203.0.113.0/24'), '203.0.113.0/25'],
    ['198.51.100.21', '203.0.113.0/24'],
  );

  assert.equal(server.listRequests('voipbl'), 1, 'the list was pulled once for both nodes');
  assert.deepEqual(
    server.apibanRequests.map((r) => r.id),
    ['100', first, second],
    'APIBAN was asked once for both nodes',
  );
  const pulled = (bed: Bed, feed: string) => bed.daemon.logs.filter((l) => l.msg === 'feed pulled' && l.feed === feed).length;
  for (const feed of ['apiban', 'voipbl']) assert.equal(pulled(a!, feed) + pulled(b!, feed), 1, feed);

  const run = (...args: string[]) => cli([...args, '--config', a!.configFile]);
  const list = await run('list', '--json', '--origin', 'feed');
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as Array<{ address: string; reason: string; origin: string; until: string | null; node: string }>;
  assert.deepEqual(rows.map((r) => r.address).sort(), [...all].sort(), 'list shows the entries as pulled');
  for (const r of rows) {
    assert.equal(r.origin, 'feed');
    assert.equal(r.reason, r.address.startsWith('198.51.100.1') || r.address.includes(':') ? 'apiban' : 'voipbl', r.address);
    assert.ok(['pbx-a', 'pbx-b'].includes(r.node));
    if (r.reason === 'voipbl') assert.equal(r.until, null, 'a list entry stays while listed');
  }
  const apibanOnly = JSON.parse((await run('list', '--json', '--reason', 'apiban')).stdout) as Array<{ address: string }>;
  assert.equal(apibanOnly.length, 3);
  const table = await run('list', '--origin', 'feed', '--sort', 'address');
  assert.match(table.stdout, /^203\.0\.113\.0\/24 +voipbl +- +listed +pbx-[ab] +-$/m, table.stdout);
  assert.match(table.stdout, /^198\.51\.100\.10 +apiban +\d+s +6d23h +pbx-[ab] +-$/m, table.stdout);
  // the daemons' own bans (both nodes replay the same phone's failures into one Redis, which may add up to a ban) are
  // listed beside the feeds, and `--origin daemon,cli` leaves the feeds out
  const everything = JSON.parse((await run('list', '--json')).stdout) as Array<{ address: string; origin: string; reason: string }>;
  const own = JSON.parse((await run('list', '--json', '--origin', 'daemon,cli')).stdout) as Array<{ address: string; reason: string }>;
  assert.equal(everything.length, rows.length + own.length);
  assert.ok(
    own.every((r) => !['apiban', 'voipbl'].includes(r.reason)),
    JSON.stringify(own),
  );

  const show = JSON.parse((await run('show', '198.51.100.10', '--json')).stdout) as {
    banned: boolean;
    listed: boolean;
    feeds: Array<{ feed: string; until: string }>;
  };
  assert.equal(show.banned, false);
  assert.equal(show.listed, true);
  assert.deepEqual(
    show.feeds.map((f) => f.feed),
    ['apiban'],
  );
  const inside = await run('show', '203.0.113.9');
  assert.match(inside.stdout, /feeds: +voipbl as 203\.0\.113\.0\/24: listed, pulled \d+s ago by pbx-[ab]/, inside.stdout);

  const status = await run('status', '--json');
  const feeds = (
    JSON.parse(status.stdout) as {
      feeds: Array<{ feed: string; entries: number; pulledBy: string; failures: number; nextPullInSeconds: number }>;
    }
  ).feeds;
  assert.deepEqual(
    feeds.map((f) => [f.feed, f.entries, f.failures]),
    [
      ['apiban', 3, 0],
      ['voipbl', 3, 0],
    ],
  );
  for (const f of feeds) assert.ok(f.nextPullInSeconds > 3000 && ['pbx-a', 'pbx-b'].includes(f.pulledBy), JSON.stringify(f));
  const text = await run('status');
  assert.match(
    text.stdout,
    /^feeds\n +FEED +ENTRIES +PULLED +BY +NEXT +FAILURES +LAST ERROR\n +apiban +3 +\d+s ago +pbx-[ab] +in 5\dm/m,
    text.stdout,
  );

  // the key never shows, wherever an operator looks, nor in what the fleet shares
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  t.after(() => client.disconnect());
  const keys = await client.keys('fb:*');
  assert.ok(keys.includes('fb:{feed:apiban}') && keys.includes('fb:{feed:voipbl}:lock'), keys.join(' '));
  for (const k of keys.filter((x) => x.includes('{feed:'))) {
    const dump = (await client.dumpBuffer(k)) ?? Buffer.alloc(0);
    assert.ok(!dump.includes(server.apibanKey), `the key in ${k}`);
  }
  await Promise.all([a!.daemon.stop(), b!.daemon.stop()]);
  for (const out of [a!.daemon.output(), b!.daemon.output(), list.stdout, table.stdout, status.stdout, text.stdout, inside.stdout]) {
    assert.ok(!out.includes(server.apibanKey));
  }
});

test('the embedded store: a single node pulls and enforces alike, and a restarted node pulls again', async (t) => {
  const server = await startFeedServer();
  t.after(() => server.stop());
  server.addBans(['198.51.100.10']);
  server.setList('voipbl', '198.51.100.20\n');
  const config = {
    blocklists: {
      apiban: { url: server.apibanUrl, key: server.apibanKey, interval: '1h' },
      lists: [{ name: 'voipbl', url: server.listUrl('voipbl'), interval: '1h' }],
    },
  };
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', config });
  await inKernel(bed, ['198.51.100.10', '198.51.100.20']);
  assert.equal(server.listRequests('voipbl'), 1);
  await bed.daemon.stop();
  // nothing of the embedded store survives a restart: the new process pulls again, from APIBAN's first ID
  const again = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', ns: bed.ns, config });
  await waitFor('a second pull of the list', () => (server.listRequests('voipbl') === 2 ? true : undefined), 15_000);
  await inKernel(again, ['198.51.100.10', '198.51.100.20']);
  assert.deepEqual(server.apibanRequests.filter((r) => r.id === '100').length, 2);
});

test('the Redis ACL of docs/fleet.md covers the feeds: the daemon pulls and enforces, the CLI reads, nothing refused', async (t) => {
  const m = /^ACL SETUSER (\S+) on >\S+ (.+)$/m.exec(readFileSync('docs/fleet.md', 'utf8'));
  assert.ok(m);
  const [user, rules] = [m[1]!, m[2]!.trim().split(/\s+/)];
  for (const [, command] of readFileSync('src/feeds/lua/commit.lua', 'utf8').matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) {
    assert.ok(rules.includes(`+${command!.toLowerCase()}`), `commit.lua runs ${command}, which the ACL does not allow`);
  }
  const adminPw = 'admin-pw-77e1';
  const pw = 'feeds-acl-pw-2c4d';
  const redis = await startRedisServer({ password: adminPw });
  t.after(() => redis.stop());
  const adminClient = new Redis({ port: redis.port, host: '127.0.0.1', password: adminPw, maxRetriesPerRequest: 1 });
  t.after(() => adminClient.disconnect());
  await adminClient.call('ACL', 'SETUSER', user, 'reset', 'on', `>${pw}`, ...rules);
  await adminClient.call('ACL', 'LOG', 'RESET');
  const server = await startFeedServer();
  t.after(() => server.stop());
  server.addBans(['198.51.100.10']);
  server.setList('voipbl', '198.51.100.20\n');
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: `redis://${user}:${pw}@127.0.0.1:${redis.port}`,
    config: {
      blocklists: {
        apiban: { url: server.apibanUrl, key: server.apibanKey, interval: '1s' },
        lists: [{ name: 'voipbl', url: server.listUrl('voipbl'), interval: '1s' }],
      },
    },
  });
  await inKernel(bed, ['198.51.100.10', '198.51.100.20']);
  server.setList('voipbl', '198.51.100.21\n');
  await inKernel(bed, ['198.51.100.21'], ['198.51.100.20']);
  for (const verb of [['list'], ['show', '198.51.100.10'], ['status']]) {
    const r = await cli([...verb, '--config', bed.configFile]);
    assert.equal(r.code, 0, `${verb.join(' ')}: ${r.stderr}`);
  }
  const log = (await adminClient.call('ACL', 'LOG')) as unknown[];
  assert.deepEqual(log, [], 'nothing refused');
});

test('a node stopped in the middle of a pull hands the lock back and records no failure', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  // a list server that accepts and never answers
  const sockets = new Set<Socket>();
  const hang = createServer((sock) => {
    sockets.add(sock);
    sock.resume();
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        hang.close(() => r());
      }),
  );
  const connected = (): number => sockets.size;
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'fs:',
    config: {
      blocklists: {
        lists: [{ name: 'slow', url: `http://127.0.0.1:${(hang.address() as AddressInfo).port}/list`, interval: '1h' }],
        timeout: '60s',
      },
    },
  });
  await waitFor('the pull under way', () => (connected() > 0 ? true : undefined), 15_000);
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  t.after(() => client.disconnect());
  assert.ok((await client.pttl('fs:{feed:slow}:lock')) > 0, 'the pull holds the lock');
  assert.equal(await bed.daemon.stop(), 0);
  assert.equal(await client.pttl('fs:{feed:slow}:lock'), -2, 'the lock was handed back');
  assert.equal(await client.hget('fs:{feed:slow}', 'fails'), null, 'stopping is not a failure of the feed');
});
