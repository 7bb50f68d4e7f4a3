// The operator's verbs against what the real daemon did: real Redis, real nft in a namespace, real replay server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBed, markerEvents, MARKER, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { writeConfig } from '../support/daemon-process.js';
import { cli } from '../support/cli.js';
import { startReceiver } from '../support/http.js';

let redis: RedisServer;
let bed: Bed;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  redis = await startRedisServer();
  bed = await startBed({ cleanup: (fn) => cleanups.push(fn), recording: 'register-bruteforce', redisUrl: redis.url, keyPrefix: 'cli:' });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
  await redis?.stop();
});

const run = (...args: string[]) => cli([...args, '--config', bed.configFile]);

test('list shows what the daemon banned, as JSON and as an 80-column table', async () => {
  const json = await run('list', '--json');
  assert.equal(json.code, 0, json.stderr);
  const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
  const row = rows.find((r) => r.address === '198.18.0.11');
  assert.ok(row, json.stdout);
  assert.equal(row.reason, 'failures');
  assert.equal(row.node, 'test-node');
  assert.equal(row.count, 5);
  assert.deepEqual(row.kinds, { ChallengeResponseFailed: 5 });
  assert.ok((row.remainingSeconds as number) > 3500 && (row.remainingSeconds as number) <= 3600);

  const human = await run('list');
  assert.equal(human.code, 0);
  const lines = human.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^ADDRESS\s+REASON\s+BANNED\s+LEFT\s+NODE\s+BEFORE$/);
  assert.ok(lines.some((l) => /^198\.18\.0\.11\s+failures\s+\S+\s+59m\S*\s+test-node\s+0$/.test(l)), human.stdout);
  for (const l of lines) assert.ok(l.length <= 80, `too wide: ${l}`);
});

test('show tells why an address is banned', async () => {
  const r = await run('show', '198.18.0.11', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { banned: boolean; ban: { reason: string; kinds: Record<string, number> }; history: unknown[]; ignored: boolean };
  assert.equal(s.banned, true);
  assert.deepEqual(s.ban.kinds, { ChallengeResponseFailed: 5 });
  assert.equal(s.history.length, 1);
  assert.equal(s.ignored, false);
  const human = await run('show', '::ffff:198.18.0.11');
  assert.match(human.stdout, /^198\.18\.0\.11\n {2}banned: {4}yes, failures, by test-node/);
  const loop = await run('show', '127.0.0.1');
  assert.match(loop.stdout, /ignoreip: {2}yes/);
});

test('status reports the daemon, Redis, the nft table and bans by reason', async () => {
  await waitFor('a status record from the daemon', async () => {
    const r = await run('status', '--json');
    const s = JSON.parse(r.stdout) as { nodes: Array<{ node: string; state: string; ami: { connected: boolean }; events: number }> };
    return s.nodes.some((n) => n.node === 'test-node' && n.events > 0) ? true : undefined;
  }, 15_000);
  const r = await run('status', '--json');
  const s = JSON.parse(r.stdout) as {
    version: string;
    redis: { url: string; reachable: boolean };
    bans: { active: number; byReason: Record<string, number> };
    firewall: { present: boolean; elements: { v4: number; v6: number } };
    nodes: Array<{ node: string; state: string; ami: { connected: boolean }; firewall: { present: boolean } }>;
  };
  assert.match(s.version, /^\d+\.\d+\.\d+/);
  assert.equal(s.redis.reachable, true);
  assert.ok(s.bans.byReason.failures! >= 1);
  assert.equal(s.firewall.present, true);
  assert.equal(s.firewall.elements.v4, s.bans.active, 'every active ban is in the kernel set');
  const node = s.nodes.find((n) => n.node === 'test-node')!;
  assert.equal(node.state, 'running');
  assert.equal(node.ami.connected, true);
  assert.equal(node.firewall.present, true);
  const human = await run('status');
  assert.match(human.stdout, /nodes\n\s+NODE\s+STATE\s+AMI/);
  assert.match(human.stdout, /test-node\s+running\s+connected\s+ok/);
});

test('ban and unban: kernel set and Redis both follow, counters reset, history kept', async () => {
  const ban = await run('ban', '203.0.113.0/24', '2001:db8::7', '--for', '2h', '--reason', 'abuse report #42');
  assert.equal(ban.code, 0, ban.stderr);
  assert.match(ban.stdout, /banned 203\.0\.113\.0\/24 for 2h \(abuse report #42\)/);
  const elements = await bed.elements();
  assert.ok(elements.includes('203.0.113.0/24') && elements.includes('2001:db8::7'), elements.join(' '));
  const shown = JSON.parse((await run('show', '203.0.113.9/24', '--json')).stdout) as { ban: { reason: string; note: string } };
  assert.equal(shown.ban.reason, 'manual');
  assert.equal(shown.ban.note, 'abuse report #42');

  const un = await run('unban', '198.18.0.11', '203.0.113.0/24', '192.0.2.99');
  assert.equal(un.code, 0, un.stderr);
  assert.equal(un.stdout, 'unbanned 198.18.0.11\nunbanned 203.0.113.0/24\n192.0.2.99 was not banned\n');
  const after = await bed.elements();
  assert.ok(!after.includes('198.18.0.11') && !after.includes('203.0.113.0/24'), after.join(' '));
  const s = JSON.parse((await run('show', '198.18.0.11', '--json')).stdout) as { banned: boolean; history: unknown[]; failures: unknown[] };
  assert.equal(s.banned, false);
  assert.equal(s.history.length, 1, 'history survives an unban');
  assert.equal(s.failures.length, 0, 'the failure window is reset');

  // the daemon heard the unban: the next failures count afresh; as a known offender the address now gets
  // offender.maxretry (3) chances, and its second ban lasts twice as long
  await bed.daemon.waitForLog((l) => l.msg === 'unban 198.18.0.11');
  bed.replay.inject(markerEvents(2, '198.18.0.11'));
  bed.replay.inject(markerEvents(5, '192.0.2.251'));
  await waitFor('the second marker', async () => ((await bed.elements()).includes('192.0.2.251') ? true : undefined));
  assert.ok(!(await bed.elements()).includes('198.18.0.11'), 'two failures after an unban are not a ban');
  bed.replay.inject(markerEvents(1, '198.18.0.11'));
  await waitFor('the re-ban', async () => ((await bed.elements()).includes('198.18.0.11') ? true : undefined));
  const again = JSON.parse((await run('show', '198.18.0.11', '--json')).stdout) as {
    ban: { previousBans: number; count: number; remainingSeconds: number };
  };
  assert.equal(again.ban.previousBans, 1);
  assert.equal(again.ban.count, 3);
  assert.ok(again.ban.remainingSeconds > 3600 && again.ban.remainingSeconds <= 7200, String(again.ban.remainingSeconds));
  assert.ok((await bed.elements()).includes(MARKER));
});

test('a ban and an unban from the CLI are announced to the webhook by the CLI', async () => {
  const receiver = await startReceiver();
  try {
    const env = { AMI_GUARD_NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${receiver.port}/hook` };
    assert.equal((await cli(['ban', '198.51.100.77', '--reason', 'noisy', '--config', bed.configFile], env)).code, 0);
    assert.equal((await cli(['unban', '198.51.100.77', '--config', bed.configFile], env)).code, 0);
    const [banned, lifted] = (await receiver.waitFor(2)).map((r) => JSON.parse(r.body) as { event: string; address: string; reason?: string; text: string });
    assert.equal(banned!.event, 'ban');
    assert.equal(banned!.address, '198.51.100.77');
    assert.equal(banned!.reason, 'manual');
    assert.equal(lifted!.event, 'unban');
    assert.equal(lifted!.address, '198.51.100.77');
    assert.match(lifted!.text, /198\.51\.100\.77/);
  } finally {
    await receiver.stop();
  }
});

test('bad addresses: one-line error naming it, exit 2, nothing applied', async () => {
  const before = await bed.elements();
  for (const args of [
    ['ban', '198.51.100.1', '198.51.100.300'],
    ['ban', '198.51.100.1', '10.0.0.0/33'],
    ['ban', '198.51.100.1', '127.0.0.1'],
    ['ban', '198.51.100.1', '--for', 'forever'],
    ['unban', 'fd00::1', 'not-an-ip'],
    ['show', 'x'],
  ]) {
    const r = await run(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^ami-guard: /);
  }
  assert.match((await run('ban', '198.51.100.1', '198.51.100.300')).stderr, /"198\.51\.100\.300"/);
  assert.deepEqual(await bed.elements(), before);
  const s = JSON.parse((await run('show', '198.51.100.1', '--json')).stdout) as { banned: boolean };
  assert.equal(s.banned, false, 'the valid address before the bad one was not banned either');
});

test('Redis unreachable: one line naming the URL without its password, exit 1, within seconds', async () => {
  const cfg = writeConfig({ redis: { url: 'redis://admin:s3cr3t-pw@127.0.0.1:1/0' }, nft: { netns: bed.ns.name } });
  for (const verb of [['list'], ['status'], ['unban', '198.51.100.9'], ['ban', '198.51.100.9'], ['show', '198.51.100.9']]) {
    // the 15 s cap only tells a hang from an answer; the client gives up after its own 3-4 s
    const r = await cli([...verb, '--config', cfg], {}, 15_000);
    assert.equal(r.code, 1, `${verb[0]}: ${r.stderr}`);
    assert.match(r.stderr, /^ami-guard: cannot reach Redis at redis:\/\/admin:\*\*\*@127\.0\.0\.1:1\/0: .+\n$/);
    assert.ok(!r.stderr.includes('s3cr3t-pw'));
  }
});

test('--help, <verb> --help and --version', async () => {
  const h = await cli(['--help']);
  assert.equal(h.code, 0);
  for (const verb of ['run', 'ban', 'unban', 'list', 'show', 'status', 'replay']) assert.match(h.stdout, new RegExp(`\\n  ${verb} `));
  const b = await cli(['ban', '--help']);
  assert.match(b.stdout, /--for <duration>/);
  const v = await cli(['--version']);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  const bad = await cli(['frobnicate']);
  assert.equal(bad.code, 2);
});
