// The CLI on the PBX asks the real daemon through its control socket: with the embedded store (which lives only in
// the daemon), with two daemons on one Redis (the fleet and the webhook hear of a manual ban once), with Redis down
// (a ban goes to the local fallback and is written back, an unban waits for Redis and holds after it returns), and
// against hostile requests and other users.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { CLI, startDaemon } from '../support/daemon-process.js';
import { cli } from '../support/cli.js';
import { startReceiver, type Receiver } from '../support/http.js';
import { RedisChannel } from '../../src/fleet/redis-channel.js';
import type { ReceivedBanMessage } from '../../src/fleet/channel.js';

interface Hook {
  event: string;
  address: string;
  reason?: string;
}

const hooks = (r: Receiver): Hook[] => r.requests.map((q) => JSON.parse(q.body) as Hook);

/**
 * Cleanups run last registered first (t.after runs them in order): the fleet reader stops before the Redis it reads,
 * the daemons before their namespaces.
 */
function lifo(t: TestContext): (fn: () => Promise<void>) => void {
  const fns: Array<() => Promise<void>> = [];
  t.after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return (fn) => void fns.push(fn);
}

/** The fleet channel as a daemon reads it, from its start: every ban and unban message, in order. */
function readFleet(url: string, cleanup: (fn: () => Promise<void>) => void): ReceivedBanMessage[] {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  const channel = new RedisChannel({ client, keyPrefix: 'ami-guard:', maxlen: 100_000, blockMs: 200 });
  const seen: ReceivedBanMessage[] = [];
  channel.subscribe('0-0', { message: (m) => seen.push(m), resync: () => undefined });
  cleanup(async () => {
    await channel.stop();
    client.disconnect();
  });
  return seen;
}

/** Messages about `address` of one type, once a later message about `sentinel` has been read (a copy would precede it). */
async function fleetCount(seen: ReceivedBanMessage[], type: 'ban' | 'unban', address: string, sentinel: string): Promise<number> {
  await waitFor(`the fleet message for ${sentinel}`, () => (seen.some((m) => m.address === sentinel) ? true : undefined), 20_000);
  return seen.filter((m) => m.type === type && m.address === address).length;
}

test('embedded store: list, show, status, ban and unban through the socket; the webhook hears each once', async (t) => {
  const receiver = await startReceiver();
  t.after(() => receiver.stop());
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    config: { notify: { webhook: { url: `http://127.0.0.1:${receiver.port}/hook` } } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const run = (...args: string[]) => cli([...args, '--config', bed.configFile]);
  // as an operator under sudo: the audit log names them
  const asAlice = (...args: string[]) => cli([...args, '--config', bed.configFile], { SUDO_USER: 'alice' });

  const list = await run('list', '--json');
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ address: string }>).map((r) => r.address).sort(), ['192.0.2.250', '198.18.0.11']);
  const show = await run('show', '198.18.0.11');
  assert.match(show.stdout, /banned: {4}yes, failures, by test-node/);

  const ban = await asAlice('ban', '198.51.100.9', '--for', '1h', '--reason', 'by hand');
  assert.equal(ban.code, 0, ban.stderr);
  assert.equal(ban.stdout, 'banned 198.51.100.9 for 1h (by hand)\n');
  assert.ok((await bed.elements()).includes('198.51.100.9'), 'in the kernel set when the CLI returns');
  const un = await asAlice('unban', '198.51.100.9');
  assert.equal(un.stdout, 'unbanned 198.51.100.9\n');
  assert.ok(!(await bed.elements()).includes('198.51.100.9'));
  // a permanent ban: the longest a kernel timeout holds, refused beside --for
  const forever = await run('ban', '198.51.100.11', '--permanent');
  assert.equal(forever.stdout, 'banned 198.51.100.11 permanently (3 years, until unbanned)\n', forever.stderr);
  const element = (await bed.firewall.list()).find((e) => e.address === '198.51.100.11');
  assert.ok(
    element && element.expiresMs !== null && element.expiresMs > 1_000 * 86_400_000,
    `a kernel timeout of about 3 years: ${element?.expiresMs}`,
  );
  assert.equal((await run('ban', '198.51.100.12', '--permanent', '--for', '1h')).code, 2);
  assert.equal((await run('unban', '198.51.100.11')).stdout, 'unbanned 198.51.100.11\n');
  // the audit trail: each logged once, with where it came from and who asked
  for (const event of ['ban', 'unban']) {
    const lines = bed.daemon.logs.filter((l) => l.event === event && l.address === '198.51.100.9');
    assert.equal(lines.length, 1, `one ${event} line`);
    assert.equal(lines[0]!.source, 'cli');
    assert.equal(lines[0]!.user, 'alice');
  }
  // a later ban as a sentinel: had either message gone out twice, the copy would arrive before it
  assert.equal((await run('ban', '198.51.100.10')).code, 0);
  await receiver.waitFor(6);
  // the recording's ban and the marker's come first, from the daemon's own decisions
  const manual = hooks(receiver).filter((h) => h.address.startsWith('198.51.100.'));
  assert.deepEqual(
    manual.map((h) => `${h.event} ${h.address}`),
    ['ban 198.51.100.9', 'unban 198.51.100.9', 'ban 198.51.100.11', 'unban 198.51.100.11', 'ban 198.51.100.10'],
  );
  assert.equal(manual[0]!.reason, 'manual');

  const status = await run('status', '--json');
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as {
    daemon: { node: string; pid: number; ami: { connected: boolean }; firewall: { present: boolean; elements: { v4: number } } };
    store: { kind: string };
    redis: unknown;
    bans: { active: number; byReason: Record<string, number> };
    enforced: number;
    nodes: unknown;
  };
  assert.equal(s.daemon.node, 'test-node');
  assert.equal(s.daemon.pid, bed.daemon.child.pid);
  assert.equal(s.daemon.ami.connected, true);
  assert.equal(s.store.kind, 'memory');
  assert.equal(s.redis, null);
  assert.equal(s.nodes, null);
  assert.deepEqual(s.bans, { active: 3, byReason: { failures: 2, manual: 1 } });
  assert.equal(s.enforced, 3);
  assert.equal(s.daemon.firewall.elements.v4, 3);
  const human = await run('status');
  assert.match(human.stdout, /\nstore {3}embedded \(in the daemon process; nothing shared with other PBXs\)\n/);
  assert.match(human.stdout, /\ndaemon {2}test-node, pid \d+, version \S+, up \S+, config \S+config\.json\n {8}AMI connected/);
});

test('two daemons on one Redis: a ban and an unban through one reach the other over the fleet channel, and the webhook once', async (t) => {
  const cleanup = lifo(t);
  const redis = await startRedisServer();
  cleanup(() => redis.stop());
  const receiver = await startReceiver();
  cleanup(() => receiver.stop());
  const hook = { webhook: { url: `http://127.0.0.1:${receiver.port}/hook` } };
  const a = await startBed({ cleanup, recording: 'legit-phone', redisUrl: redis.url, config: { node: { id: 'pbx-a' }, notify: hook } });
  const b = await startBed({ cleanup, recording: 'legit-phone', redisUrl: redis.url, config: { node: { id: 'pbx-b' }, notify: hook } });
  // both replay the same phone into one Redis (it may be banned, twice as many failures): only the markers matter here
  await a.settle();
  await b.settle();
  const fleet = readFleet(redis.url, cleanup);
  const viaA = (...args: string[]) => cli([...args, '--config', a.configFile]);

  assert.equal((await viaA('ban', '203.0.113.0/24', '--reason', 'abuse')).code, 0);
  await waitFor("the network in B's set", async () => ((await b.elements()).includes('203.0.113.0/24') ? true : undefined));
  assert.equal((await viaA('unban', '203.0.113.0/24')).stdout, 'unbanned 203.0.113.0/24\n');
  await waitFor("the network gone from B's set", async () => (!(await b.elements()).includes('203.0.113.0/24') ? true : undefined));
  await b.daemon.waitForLog((l) => l.event === 'unban' && l.address === '203.0.113.0/24' && l.source === 'fleet' && l.by === 'pbx-a');
  // B's audit trail: the ban it enforced for A, once, with where it came from
  const fromA = b.daemon.logs.filter((l) => l.event === 'ban' && l.address === '203.0.113.0/24');
  assert.equal(fromA.length, 1);
  assert.equal(fromA[0]!.source, 'fleet');
  assert.equal(fromA[0]!.by, 'pbx-a');
  assert.equal(fromA[0]!.reason, 'manual');
  assert.equal((await viaA('ban', '198.51.100.10')).code, 0);
  await waitFor('the sentinel notification', () => (hooks(receiver).some((h) => h.address === '198.51.100.10') ? true : undefined), 20_000);
  const manual = hooks(receiver).filter((h) => ['203.0.113.0/24', '198.51.100.10'].includes(h.address));
  assert.deepEqual(
    manual.map((h) => `${h.event} ${h.address}`),
    ['ban 203.0.113.0/24', 'unban 203.0.113.0/24', 'ban 198.51.100.10'],
  );
  assert.equal(await fleetCount(fleet, 'ban', '203.0.113.0/24', '198.51.100.10'), 1);
  assert.equal(await fleetCount(fleet, 'unban', '203.0.113.0/24', '198.51.100.10'), 1);
});

test("Redis down: the CLI works through the daemon; the outage's ban is written back, its unban holds once Redis returns", async (t) => {
  const cleanup = lifo(t);
  const redis = await startRedisServer({ persist: true });
  cleanup(() => redis.stop());
  const receiver = await startReceiver();
  cleanup(() => receiver.stop());
  const bed = await startBed({
    cleanup,
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    config: { notify: { webhook: { url: `http://127.0.0.1:${receiver.port}/hook` } } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const run = (...args: string[]) => cli([...args, '--config', bed.configFile], {}, 20_000);
  assert.equal((await run('ban', '203.0.113.7', '--reason', 'before')).code, 0);

  await redis.crash();
  const status = await run('status');
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /\nredis {3}redis:\/\/127\.0\.0\.1:\d+: UNREACHABLE/);
  assert.match(status.stdout, /\nbans {4}unknown \(the store cannot be read\); 3 enforced by this daemon\n/);

  const listed = await run('list');
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stderr, /the store cannot be read/);
  assert.match(listed.stdout, /^198\.18\.0\.11\s+\?\s+\?\s+59m\S*\s+\?\s+\?$/m);
  assert.match(listed.stdout, /^203\.0\.113\.7\s+\?/m);
  assert.match(
    (await run('show', '198.18.0.11')).stdout,
    /banned: {4}yes, enforced here until \S+ \(59m\S* left\); its record cannot be read now/,
  );

  const ban = await run('ban', '198.51.100.44', '--reason', 'during the outage');
  assert.equal(ban.code, 0, ban.stderr);
  assert.match(ban.stderr, /Redis unreachable: kept in the local fallback store and written back to Redis when it answers/);
  const un = await run('unban', '203.0.113.7');
  assert.equal(un.code, 0, un.stderr);
  assert.equal(un.stdout, 'unbanned 203.0.113.7\n');
  assert.match(un.stderr, /lifted here now, in Redis and on the other PBXs once Redis answers/);
  let elements = await bed.elements();
  assert.ok(elements.includes('198.51.100.44') && !elements.includes('203.0.113.7'), elements.join(' '));
  assert.match((await run('list')).stdout, /^198\.51\.100\.44\s+manual\s/m);

  await redis.restart();
  const back = await bed.daemon.waitForLog((l) => l.msg === 'redis reachable again: bans decided meanwhile written back', 30_000);
  assert.equal(back.written, 1);
  assert.equal(back.unbanned, 1);
  await bed.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store' && l.why === 'redis reachable again');
  elements = await bed.elements();
  assert.ok(elements.includes('198.51.100.44'), "the outage's ban is in Redis, so the reconciliation kept it");
  assert.ok(!elements.includes('203.0.113.7'), "the outage's unban reached Redis, so the reconciliation did not bring the ban back");
  const shown = JSON.parse((await run('show', '198.51.100.44', '--json')).stdout) as { ban: { reason: string; node: string } };
  assert.equal(shown.ban.reason, 'manual');
  assert.equal((JSON.parse((await run('show', '203.0.113.7', '--json')).stdout) as { banned: boolean }).banned, false);

  // the fleet hears of the outage's ban and unban once, after it; the webhook heard of each once, at the time
  const fleet = readFleet(redis.url, cleanup);
  assert.equal((await run('ban', '198.51.100.45')).code, 0);
  assert.equal(await fleetCount(fleet, 'ban', '198.51.100.44', '198.51.100.45'), 1);
  assert.equal(await fleetCount(fleet, 'unban', '203.0.113.7', '198.51.100.45'), 1);
  await waitFor('the sentinel notification', () => (hooks(receiver).some((h) => h.address === '198.51.100.45') ? true : undefined), 20_000);
  const manual = hooks(receiver).filter((h) => ['198.51.100.44', '203.0.113.7', '198.51.100.45'].includes(h.address));
  assert.deepEqual(
    manual.map((h) => `${h.event} ${h.address}`),
    ['ban 203.0.113.7', 'ban 198.51.100.44', 'unban 203.0.113.7', 'ban 198.51.100.45'],
  );
});

test('the daemon refuses hostile requests on its socket and keeps serving; another user cannot use it; a second daemon cannot take it', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'register-bruteforce' });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const send = (bytes: string | Buffer): Promise<string> =>
    new Promise((resolve, reject) => {
      const sock = createConnection(bed.socket);
      let out = '';
      sock.setEncoding('utf8').on('data', (d: string) => (out += d));
      sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
      sock.on('close', () => resolve(out));
      sock.on('connect', () => sock.write(bytes));
    });
  const before = await bed.elements();
  for (const [bytes, re] of [
    ['\u0000\u0001garbage\n', /not JSON/],
    [Buffer.alloc(200_000, 0x7b), /request longer than 65536 bytes/],
    ['{"v":1,"verb":"flushall"}\n', /unknown verb/],
    ['{"v":1,"verb":"ban","targets":["127.0.0.1"]}\n', /refusing to ban 127\.0\.0\.1: 127\.0\.0\.1 is loopback/],
    ['{"v":1,"verb":"ban","targets":["0.0.0.0/0"]}\n', /refusing to ban 0\.0\.0\.0\/0: .*wider than a ban may be/],
    ['{"v":1,"verb":"ban","targets":["198.51.100.1","nft; flush ruleset"]}\n', /invalid address or CIDR network: "nft; flush ruleset"/],
    ['{"v":1,"verb":"unban","targets":["198.18.0.11"],"__proto__":{"x":1}}\n', /unknown field "__proto__"/],
  ] as const) {
    const answer = JSON.parse((await send(bytes)).trim().split('\n').pop()!) as { ok: boolean; error: string };
    assert.equal(answer.ok, false);
    assert.match(answer.error, re);
  }
  assert.deepEqual(await bed.elements(), before, 'nothing banned or lifted');
  await bed.daemon.waitForLog((l) => l.msg === 'control request refused');
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon runs on');
  assert.equal((await cli(['status', '--config', bed.configFile])).code, 0);

  // a user other than root: the socket is 0600, even with its directory opened to everyone
  chmodSync(dirname(bed.socket), 0o755);
  const asNobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'list'], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { PATH: process.env.PATH, AMI_GUARD_CONTROL_SOCKET: bed.socket },
  });
  assert.equal(asNobody.status, 1, asNobody.stderr);
  assert.equal(asNobody.stderr, `ami-guard: permission denied on the daemon's control socket ${bed.socket}: run ami-guard as root\n`);

  // a second daemon with the same socket stops at once, before it touches nft
  const second = startDaemon(bed.configFile);
  assert.equal(await second.exited, 1);
  assert.match(second.output(), /another ami-guard daemon is listening there/);
  assert.equal((await cli(['status', '--config', bed.configFile])).code, 0, 'the first one still answers');
  bed.replay.inject(markerEvents(5, '192.0.2.251'));
  await waitFor('a ban after all that', async () => ((await bed.elements()).includes('192.0.2.251') ? true : undefined));
  assert.ok((await bed.elements()).includes(MARKER));
});

test('a control socket that cannot be made is logged, and the daemon protects the PBX without it', async (t) => {
  // /proc takes no directories: like a read-only /run in a container without its tmpfs
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    config: { control: { socket: '/proc/ami-guard-test/control.sock' } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const logged = await bed.daemon.waitForLog(
    (l) => l.msg === 'control socket unavailable: running without it; the CLI on this host cannot reach this daemon',
  );
  assert.equal(logged.level, 50);
  const r = await cli(['list', '--config', bed.configFile]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /no ami-guard daemon runs on this host \(nothing listens on \/proc\/ami-guard-test\/control\.sock\) and no Redis is configured/,
  );
});
