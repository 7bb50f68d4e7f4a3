// The operator's verbs against what the real daemon did: real Redis, real nft in a namespace, real replay server.
// `run` asks the daemon through its control socket, as on the PBX itself; `direct` reads the same configuration
// without a daemon to ask (control.socket empty), as on an admin host of the fleet: it goes to Redis, and the daemon
// is then another PBX that hears of it on the fleet channel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startBed, markerEvents, MARKER, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { writeConfig } from '../support/daemon-process.js';
import { cli } from '../support/cli.js';
import { startReceiver } from '../support/http.js';
import { Redis } from 'ioredis';
import { NodeStatusReporter } from '../../src/fleet/node-status.js';
import { quietLogger } from '../../src/cli/context.js';
import { patchRecord } from '../support/redis-layout.js';
import { encodeText } from '../../src/store/codec.js';

let redis: RedisServer;
let bed: Bed;
let directConfig: string;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  redis = await startRedisServer();
  bed = await startBed({ cleanup: (fn) => cleanups.push(fn), recording: 'register-bruteforce', redisUrl: redis.url, keyPrefix: 'cli:' });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  directConfig = writeConfig({ ...(JSON.parse(readFileSync(bed.configFile, 'utf8')) as object), control: { socket: '' } });
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
  await redis?.stop();
});

const run = (...args: string[]) => cli([...args, '--config', bed.configFile]);
const direct = (...args: string[]) => cli([...args, '--config', directConfig]);
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

test('list shows what the daemon banned, as JSON and as an 80-column table, through the daemon and from Redis', async () => {
  for (const ask of [run, direct]) {
    const json = await ask('list', '--json');
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    const row = rows.find((r) => r.address === '198.18.0.11');
    assert.ok(row, json.stdout);
    assert.equal(row.reason, 'failures');
    assert.equal(row.node, 'test-node');
    assert.equal(row.count, 5);
    assert.equal(row.origin, 'daemon');
    assert.deepEqual(row.kinds, { ChallengeResponseFailed: 5 });
    assert.ok((row.remainingSeconds as number) > 3500 && (row.remainingSeconds as number) < 3600, 'rounded down');
    for (const k of ['bannedAt', 'until', 'firstSeen', 'lastSeen']) assert.match(String(row[k]), ISO, k);

    const human = await ask('list');
    assert.equal(human.code, 0);
    const lines = human.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^ADDRESS\s+REASON\s+BANNED\s+LEFT\s+NODE\s+BEFORE$/);
    assert.ok(
      lines.some((l) => /^198\.18\.0\.11\s+failures\s+\S+\s+59m\S*\s+test-node\s+0$/.test(l)),
      human.stdout,
    );
    for (const l of lines) assert.ok(l.length <= 80, `too wide: ${l}`);
  }
});

test('show tells why an address is banned', async () => {
  const r = await run('show', '198.18.0.11', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as {
    banned: boolean;
    ban: { reason: string; kinds: Record<string, number> };
    history: unknown[];
    ignored: boolean;
  };
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
  await waitFor(
    'a status record from the daemon',
    async () => {
      const r = await run('status', '--json');
      const s = JSON.parse(r.stdout) as { nodes: Array<{ node: string; state: string; ami: { connected: boolean }; events: number }> };
      return s.nodes.some((n) => n.node === 'test-node' && n.events > 0) ? true : undefined;
    },
    15_000,
  );
  for (const ask of [run, direct]) {
    const r = await ask('status', '--json');
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
    const human = await ask('status');
    assert.match(human.stdout, /nodes\n\s+NODE\s+STATE\s+AMI/);
    assert.match(human.stdout, /test-node\s+running\s+connected\s+ok/);
    const times = JSON.parse(r.stdout) as { nodes: Array<{ startedAt: string; updatedAt: string }> };
    for (const n of times.nodes) {
      assert.match(n.startedAt, ISO);
      assert.match(n.updatedAt, ISO);
    }
  }
});

test('status names the addresses failing but not yet banned, through the daemon and from Redis', async () => {
  bed.replay.inject(markerEvents(3, '198.51.100.77'));
  // a ban after them: once it is in the kernel, the daemon has counted the three before it
  bed.replay.inject(markerEvents(5, '192.0.2.252'));
  await waitFor('the sync marker', async () => ((await bed.elements()).includes('192.0.2.252') ? true : undefined));
  for (const ask of [run, direct]) {
    const r = await ask('status', '--json');
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      failing: {
        total: number;
        top: Array<{ address: string; failures: number; threshold: number; lastFailure: string; account: string }>;
      };
    };
    const mine = s.failing.top.find((f) => f.address === '198.51.100.77');
    assert.ok(mine, JSON.stringify(s.failing));
    assert.deepEqual(
      { ...mine, lastFailure: '' },
      { address: '198.51.100.77', failures: 3, threshold: 5, lastFailure: '', account: 'marker' },
    );
    assert.match(mine.lastFailure, ISO);
    assert.ok(s.failing.total >= 1 && s.failing.total >= s.failing.top.length);
    assert.ok(!s.failing.top.some((f) => f.address === '192.0.2.252' || f.address === '198.18.0.11'), 'banned ones are not failing');
    const human = await ask('status');
    assert.match(human.stdout, /\nfailing \d+ address(es)? counting toward a ban; most:\n/);
    assert.match(human.stdout, /\n {8}198\.51\.100\.77 3\/5 \(last \S+ ago, account marker\)\n/);
  }
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
  await bed.daemon.waitForLog((l) => l.event === 'unban' && l.address === '198.18.0.11');
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

test('without a daemon on the host, a ban and an unban from the CLI are announced to the webhook by the CLI', async () => {
  const receiver = await startReceiver();
  try {
    const env = { AMI_GUARD_NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${receiver.port}/hook` };
    assert.equal((await cli(['ban', '198.51.100.77', '--reason', 'noisy', '--config', directConfig], env)).code, 0);
    assert.equal((await cli(['unban', '198.51.100.77', '--config', directConfig], env)).code, 0);
    const [banned, lifted] = (await receiver.waitFor(2)).map(
      (r) => JSON.parse(r.body) as { event: string; address: string; reason?: string; text: string },
    );
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

/** the column each title of a table's header starts at */
function columnStarts(header: string): Map<string, number> {
  return new Map([...header.matchAll(/\S+/g)].map((m) => [m[0], m.index]));
}

test('list: a full IPv6 address keeps the table aligned, ages in whole seconds, time left rounded down, ISO in --json', async () => {
  const long = ['2001:db8:1234:5678:9abc:def0:1234:5678', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:0/112'];
  const b = await run('ban', ...long, '--for', '2h', '--json');
  assert.equal(b.code, 0, b.stderr);
  const banned = JSON.parse(b.stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(
    banned.map((x) => x.address),
    long,
  );
  for (const x of banned) {
    for (const k of ['bannedAt', 'until', 'firstSeen', 'lastSeen']) assert.match(String(x[k]), ISO, `ban --json ${k}`);
    assert.equal(x.origin, 'cli');
  }

  const r = await run('list');
  assert.equal(r.code, 0, r.stderr);
  const [header, ...rows] = r.stdout.trimEnd().split('\n');
  const starts = columnStarts(header!);
  assert.deepEqual([...starts.keys()], ['ADDRESS', 'REASON', 'BANNED', 'LEFT', 'NODE', 'BEFORE']);
  assert.ok(rows.length >= 3, r.stdout);
  for (const row of rows) {
    // every cell starts under its title, whatever the width of the address before it
    const cells = [...row.matchAll(/\S+/g)];
    assert.equal(cells.length, 6, row);
    assert.deepEqual(
      cells.map((c) => c.index),
      [...starts.values()],
      `misaligned:\n${header}\n${row}`,
    );
    const [, , bannedAge, timeLeft] = cells.map((c) => c[0]);
    assert.match(bannedAge!, /^(\d+[dhms]){1,2}$/, 'an age in whole seconds, never milliseconds');
    assert.match(timeLeft!, /^(\d+[dhms]){1,2}$/);
  }
  for (const address of long) {
    const row = rows.find((l) => l.startsWith(`${address} `));
    assert.ok(row, `${address} missing:\n${r.stdout}`);
    // 2h from the ban, read a moment later: 1h59m, never 2h
    assert.match(row, /\s1h59m\s/);
  }
});

test('list --reason, --node, --origin and --sort', async () => {
  const rows = async (...args: string[]) => {
    const r = await run('list', '--json', ...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Array<{
      address: string;
      reason: string;
      node: string;
      origin: string;
      bannedAt: string;
      until: string;
    }>;
  };
  assert.equal((await run('ban', '10.0.0.10', '10.0.0.9', '--for', '3h')).code, 0);
  const all = await rows();
  assert.ok(all.some((x) => x.reason === 'failures') && all.some((x) => x.reason === 'manual'), JSON.stringify(all));

  const manual = await rows('--reason', 'manual');
  assert.ok(manual.length >= 2 && manual.every((x) => x.reason === 'manual'));
  assert.deepEqual((await rows('--origin', 'cli')).map((x) => x.address).sort(), manual.map((x) => x.address).sort());
  const daemon = await rows('--origin', 'daemon');
  assert.ok(daemon.length >= 1 && daemon.every((x) => x.reason !== 'manual'));
  assert.equal(daemon.length + manual.length, all.length);
  const addresses = async (...args: string[]) => (await rows(...args)).map((x) => x.address).sort();
  assert.deepEqual(await addresses('--reason', 'manual,failures', '--node', 'test-node'), await addresses('--node', 'test-node'));
  assert.deepEqual(await addresses('--reason', 'manual', '--reason', 'failures'), await addresses('--reason', 'manual,failures'));
  assert.deepEqual(await rows('--node', 'pbx-nowhere'), []);
  assert.equal((await run('list', '--node', 'pbx-nowhere')).stdout, 'no active bans match\n');

  // numeric order: IPv4 before IPv6, 10.0.0.9 before 10.0.0.10
  const byAddress = (await rows('--sort', 'address')).map((x) => x.address);
  assert.ok(byAddress.indexOf('10.0.0.9') < byAddress.indexOf('10.0.0.10'), byAddress.join(' '));
  assert.ok(byAddress.findIndex((a) => a.includes(':')) > byAddress.indexOf('10.0.0.10'));
  assert.deepEqual(
    (await rows('--sort', 'address', '--reverse')).map((x) => x.address),
    [...byAddress].reverse(),
  );
  const newest = await rows('--sort', 'banned');
  for (let i = 1; i < newest.length; i++) assert.ok(newest[i - 1]!.bannedAt >= newest[i]!.bannedAt, 'newest first');
  const soonest = await rows('--sort', 'left');
  for (let i = 1; i < soonest.length; i++) assert.ok(soonest[i - 1]!.until <= soonest[i]!.until, 'soonest to expire first');
  const table = await run('list', '--sort', 'address', '--reason', 'manual');
  assert.ok(table.stdout.split('\n')[1]!.startsWith('10.0.0.9 '), table.stdout);

  for (const [args, re] of [
    [
      ['--reason', 'failure'],
      /invalid --reason "failure" \(did you mean failures\?\): one of failures, scanner, recidive, injection, manual/,
    ],
    [['--origin', 'feeds'], /invalid --origin "feeds" \(did you mean feed\?\): one of daemon, cli, feed/],
    [['--sort', 'age'], /invalid --sort "age": one of left, banned, address, reason, node, before/],
  ] as const) {
    const bad = await run('list', ...args);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, re);
  }
});

test('text from Redis reaches the terminal escaped', async () => {
  assert.equal((await run('ban', '198.51.100.66', '--reason', 'plain')).code, 0);
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    // what a compromised node or anyone with the Redis password could write
    await patchRecord(client, 'cli:', '198.51.100.66', { o: encodeText('x\u001b]0;owned\u0007\u009b2J\u202eevil'), n: 'pbx\u001b[31m' });
    await client.set('cli:node:evil', JSON.stringify({ node: 'evil' }));
    await client.zadd('cli:nodes', Date.now(), 'evil');
  } finally {
    await client.quit();
  }
  const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/;
  // through the daemon and straight from Redis alike
  for (const ask of [run, direct]) {
    for (const args of [['show', '198.51.100.66'], ['show', '198.51.100.66', '--json'], ['list'], ['list', '--json'], ['status']]) {
      const r = await ask(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(!control.test(r.stdout), `${args.join(' ')} printed a control character: ${JSON.stringify(r.stdout)}`);
    }
    assert.match((await ask('show', '198.51.100.66')).stdout, /by pbx\\u001b\[31m/);
    // the status record of the wrong shape is skipped and said to be
    const st = await ask('status');
    assert.match(st.stdout, /1 node status record\(s\) in Redis could not be read/);
    assert.doesNotMatch(st.stdout, /^\s+evil\s/m);
  }
});

test('status shows a stopped node as stopped, not as connected', async () => {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  const reporter = new NodeStatusReporter({
    client,
    keyPrefix: 'cli:',
    nodeId: 'pbx-stopped',
    intervalMs: 60_000,
    logger: quietLogger,
    // what a daemon reports as it stops: still logged in, table in place
    collect: async () => ({
      node: 'pbx-stopped',
      version: '0.1.0',
      pid: 4242,
      startedAt: Date.now() - 60_000,
      ami: { connected: true, reconnects: 0 },
      firewall: { present: true },
      events: 10,
      failures: 5,
      invalid: 0,
      bans: 1,
    }),
  });
  reporter.start();
  await reporter.stop();
  await client.quit();
  const human = await run('status');
  assert.match(human.stdout, /pbx-stopped\s+stopped\s+-\s+-\s+10\s+1\s+\d+s ago/);
  assert.match(human.stdout, /test-node\s+running\s+connected\s+ok/);
  const s = JSON.parse((await run('status', '--json')).stdout) as {
    nodes: Array<{ node: string; state: string; ami: { connected: boolean }; firewall: { present: boolean | null } }>;
  };
  const stopped = s.nodes.find((n) => n.node === 'pbx-stopped')!;
  assert.equal(stopped.state, 'stopped');
  assert.equal(stopped.ami.connected, false);
  assert.equal(stopped.firewall.present, null);
});

test('unban --all without a daemon on the host: refused without --yes, filtered like list, told to the fleet, the kernel set follows', async () => {
  const before = await bed.elements();
  const manual = (JSON.parse((await direct('list', '--json', '--reason', 'manual')).stdout) as Array<{ address: string }>).map(
    (x) => x.address,
  );
  assert.ok(manual.length >= 3);

  const refused = await direct('unban', '--all', '--reason', 'manual');
  assert.equal(refused.code, 2);
  assert.match(
    refused.stderr,
    new RegExp(`^ami-guard: unban --all would lift ${manual.length} bans on every PBX sharing this Redis; add --yes to do it\\n$`),
  );
  assert.deepEqual(await bed.elements(), before, 'nothing lifted without --yes');
  for (const [args, re] of [
    [['unban', '--all', '192.0.2.1', '--yes'], /addresses or --all, not both/],
    [['unban', '192.0.2.1', '--reason', 'manual'], /choose bans for --all/],
    [['unban'], /give the addresses to unban, or --all/],
  ] as const) {
    const bad = await direct(...args);
    assert.equal(bad.code, 2, args.join(' '));
    assert.match(bad.stderr, re);
  }

  const some = await direct('unban', '--all', '--reason', 'manual', '--yes');
  assert.equal(some.code, 0, some.stderr);
  const lines = some.stdout.trimEnd().split('\n');
  assert.equal(lines.pop(), `${manual.length} bans lifted`);
  assert.deepEqual(lines.map((l) => l.replace(/^unbanned /, '')).sort(), [...manual].sort());
  // the daemon heard each of them on the fleet channel (the CLI's own nft delete would hide a missing message)
  for (const address of manual) await bed.daemon.waitForLog((l) => l.event === 'unban' && l.address === address);
  const left = await direct('list', '--json');
  const rest = JSON.parse(left.stdout) as Array<{ reason: string }>;
  assert.ok(rest.length > 0 && rest.every((x) => x.reason !== 'manual'), left.stdout);

  const everything = await direct('unban', '--all', '--yes', '--json');
  assert.equal(everything.code, 0, everything.stderr);
  assert.equal((JSON.parse(everything.stdout) as unknown[]).length, rest.length);
  assert.equal((await direct('list')).stdout, 'no active bans\n');
  await waitFor('the kernel set to empty', async () => ((await bed.elements()).length === 0 ? true : undefined));
  assert.equal((await direct('unban', '--all')).stdout, 'no active bans\n');
});

test('a network ban covers its addresses: show names it, unban says how to lift it (through the daemon and from Redis)', async () => {
  const ban = await run('ban', '203.0.113.0/24', '--for', '2h', '--reason', 'abuse desk');
  assert.equal(ban.code, 0, ban.stderr);
  try {
    for (const ask of [run, direct]) {
      const human = await ask('show', '203.0.113.5');
      assert.equal(human.code, 0, human.stderr);
      assert.match(
        human.stdout,
        /^203\.0\.113\.5\n {2}banned: {4}yes, by the network ban 203\.0\.113\.0\/24 \(manual "abuse desk", by test-node, 1h59m left\)\n/,
      );
      assert.match(human.stdout, /\n {2}lift: {6}ami-guard unban 203\.0\.113\.0\/24 /);
      const json = JSON.parse((await ask('show', '203.0.113.5', '--json')).stdout) as {
        banned: boolean;
        ban: unknown;
        coveredBy: Array<{ network: string; reason: string }>;
      };
      assert.equal(json.banned, true);
      assert.equal(json.ban, null, 'the address has no ban of its own');
      assert.deepEqual(
        json.coveredBy.map((c) => [c.network, c.reason]),
        [['203.0.113.0/24', 'manual']],
      );
      // an address outside it is not covered
      assert.match((await ask('show', '203.0.114.5')).stdout, /banned: {4}no\n/);

      const un = await ask('unban', '203.0.113.5');
      assert.equal(un.code, 0, un.stderr);
      assert.match(
        un.stdout,
        /^203\.0\.113\.5 is not banned itself: it is covered by the network ban 203\.0\.113\.0\/24 \(manual, 1h59m left\); lift that with: ami-guard unban 203\.0\.113\.0\/24\n$/,
      );
      const unJson = JSON.parse((await ask('unban', '203.0.113.5', '--json')).stdout) as Array<{
        wasBanned: boolean;
        coveredBy: Array<{ network: string }>;
      }>;
      assert.equal(unJson[0]!.wasBanned, false);
      assert.equal(unJson[0]!.coveredBy[0]!.network, '203.0.113.0/24');
      assert.ok((await bed.elements()).includes('203.0.113.0/24'), 'the network ban stays');
    }
  } finally {
    assert.equal((await run('unban', '203.0.113.0/24')).stdout, 'unbanned 203.0.113.0/24\n');
  }
  assert.match((await run('show', '203.0.113.5')).stdout, /banned: {4}no\n/);
});
