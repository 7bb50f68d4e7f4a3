// Several PBXs share one Redis: each runs the real daemon in its own network namespace with its own nft table.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBed, markerEvents, FIXTURES, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startRedisCluster } from '../support/redis-cluster.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { waitFor, type RegisterCleanup } from '../support/netns.js';
import { cli } from '../support/cli.js';
import { createRedisClient } from '../../src/store/redis-client.js';
import { RedisChannel, parseEntry } from '../../src/fleet/redis-channel.js';
import { FleetSync } from '../../src/fleet/sync.js';
import { MAX_BANS_PER_MESSAGE } from '../../src/fleet/channel.js';
import { createLogger } from '../../src/log.js';
import type { IpTarget } from '../../src/net/ip.js';
import type { BanRecord } from '../../src/store/store.js';
import { Writable } from 'node:stream';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

const isMarker = (a: string): boolean => a.startsWith('192.0.2.');
async function bans(bed: Bed): Promise<string[]> {
  return (await bed.elements()).filter((a) => !isMarker(a));
}
async function hasBan(bed: Bed, address: string, want = true): Promise<void> {
  await waitFor(
    `${address} ${want ? 'in' : 'out of'} ${bed.ns.name}`,
    async () => ((await bed.elements()).includes(address) === want ? true : undefined),
    15_000,
  );
}

interface Node {
  id: string;
  recording: string;
  redis?: Record<string, unknown>;
}

/** Starts nodes in order, each one connected to AMI (and so subscribed to the channel) before the next starts. */
async function fleet(t: { after: (fn: () => Promise<void>) => void }, prefix: string, nodes: Node[]): Promise<Bed[]> {
  const cleanup: RegisterCleanup = (fn) => t.after(fn);
  const beds: Bed[] = [];
  for (const n of nodes) {
    const bed = await startBed({
      cleanup,
      recording: n.recording,
      redisUrl: redis.url,
      keyPrefix: prefix,
      config: { node: { id: n.id }, ...(n.redis ? { redis: n.redis } : {}) },
    });
    await bed.daemon.waitForLog((l) => l.msg === 'AMI connected');
    beds.push(bed);
  }
  return beds;
}

/** The recording's preamble (banner, login, FullyBooted, our own SuccessfulAuth) plus some of its failure events. */
function partialRecording(name: string, from: number, to: number): string {
  const lines = readFileSync(join(FIXTURES, `${name}.jsonl`), 'utf8')
    .trim()
    .split('\n');
  const records = lines.map((l) => JSON.parse(l) as { raw: string });
  const failures = records.filter((r) => r.raw.startsWith('Event: ChallengeResponseFailed'));
  const preamble = records.slice(
    0,
    records.findIndex((r) => r.raw.startsWith('Event: ChallengeResponseFailed') || r.raw.startsWith('Event: ChallengeSent')),
  );
  const dir = mkdtempSync(join(tmpdir(), 'ag-part-'));
  const file = join(dir, `${name}-${from}-${to}.jsonl`);
  writeFileSync(file, [...preamble, ...failures.slice(from, to)].map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

test('a ban on node A reaches B and C through the channel; unban on C clears A and B', async (t) => {
  // B and C first, so they are already reading the channel when A bans
  const [b, c, a] = await fleet(t, 'f1:', [
    { id: 'pbx-b', recording: 'legit-phone' },
    { id: 'pbx-c', recording: 'legit-phone' },
    { id: 'pbx-a', recording: 'register-bruteforce' },
  ]);
  assert.deepEqual(await a!.settle(), ['198.18.0.11']);
  await hasBan(b!, '198.18.0.11');
  await hasBan(c!, '198.18.0.11');
  const bReconciles = b!.daemon.logs.filter((l) => l.msg === 'reconciled firewall with store').length;
  assert.equal(bReconciles, 1, 'B learnt the ban from the channel, not from a reconciliation');
  // the kernel timeout on B is the ban's remaining time, not a fresh bantime
  const el = (await b!.firewall.list()).find((e) => e.address === '198.18.0.11');
  assert.ok(el && el.expiresMs !== null && el.expiresMs <= 3_600_000);

  const un = await cli(['unban', '198.18.0.11', '--config', c!.configFile]);
  assert.equal(un.code, 0, un.stderr);
  await hasBan(c!, '198.18.0.11', false);
  await hasBan(a!, '198.18.0.11', false);
  await hasBan(b!, '198.18.0.11', false);
  assert.deepEqual(await bans(a!), []);
});

test('guesses split between two PBXs add up to one ban', async (t) => {
  // 3 guesses on each node: under maxretry (5) on either, over it together
  const [a, b] = await fleet(t, 'f2:', [
    { id: 'pbx-a', recording: partialRecording('register-bruteforce', 0, 3) },
    { id: 'pbx-b', recording: partialRecording('register-bruteforce', 3, 6) },
  ]);
  await a!.replay.playDone;
  await b!.replay.playDone;
  await a!.settle();
  await b!.settle();
  await hasBan(a!, '198.18.0.11');
  await hasBan(b!, '198.18.0.11');
  const show = await cli(['show', '198.18.0.11', '--json', '--config', a!.configFile]);
  const s = JSON.parse(show.stdout) as { ban: { count: number; kinds: Record<string, number> } };
  assert.equal(s.ban.count, 5);
  assert.deepEqual(s.ban.kinds, { ChallengeResponseFailed: 5 });
  const banLines = [...a!.daemon.logs, ...b!.daemon.logs].filter((l) => l.event === 'ban' && l.address === '198.18.0.11');
  assert.equal(banLines.filter((l) => l.source === 'ami').length, 1, 'one node made the ban, once');
  // and the other enforced it as the fleet's, saying whose it was
  const other = banLines.filter((l) => l.source === 'fleet');
  assert.ok(other.length <= 1, 'the fleet ban logged at most once');
});

test('a node stopped during a ban applies it when it starts again', async (t) => {
  const [a, c] = await fleet(t, 'f3:', [
    { id: 'pbx-a', recording: 'legit-phone' },
    { id: 'pbx-c', recording: 'legit-phone' },
  ]);
  await c!.replay.playDone;
  assert.equal(await c!.daemon.stop(), 0);
  await a!.replay.playDone;
  a!.replay.inject(markerEvents(5, '198.51.100.33'));
  await hasBan(a!, '198.51.100.33');
  assert.ok(!(await c!.elements()).includes('198.51.100.33'), 'C is down: nothing applied it yet');
  const again = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'f3:',
    ns: c!.ns,
    config: { node: { id: 'pbx-c' } },
  });
  await again.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store');
  assert.ok((await again.elements()).includes('198.51.100.33'));
});

test('a node cut off from Redis catches up when it is back', async (t) => {
  const proxy = await startTcpProxy(redis.port);
  t.after(() => proxy.stop());
  const [b, a] = await fleet(t, 'f4:', [
    { id: 'pbx-b', recording: 'legit-phone', redis: { url: `redis://127.0.0.1:${proxy.port}` } },
    { id: 'pbx-a', recording: 'legit-phone' },
  ]);
  await a!.replay.playDone;
  proxy.block();
  await b!.daemon.waitForLog((l) => l.msg === 'fleet channel read failed; retrying');
  a!.replay.inject(markerEvents(5, '198.51.100.44'));
  await hasBan(a!, '198.51.100.44');
  assert.ok(!(await b!.elements()).includes('198.51.100.44'));
  proxy.unblock();
  await hasBan(b!, '198.51.100.44');
  assert.ok(b!.daemon.logs.some((l) => l.msg === 'fleet channel reachable again; resynchronising'));
});

test('the same on a real Redis Cluster: counting, propagation, unban', async (t) => {
  const cluster = await startRedisCluster();
  t.after(() => cluster.stop());
  const clusterConfig = { url: '', cluster: cluster.nodes };
  const [b, a] = await fleet(t, 'fc:', [
    { id: 'pbx-b', recording: partialRecording('register-bruteforce', 3, 6), redis: clusterConfig },
    { id: 'pbx-a', recording: partialRecording('register-bruteforce', 0, 3), redis: clusterConfig },
  ]);
  await a!.replay.playDone;
  await b!.replay.playDone;
  await a!.settle();
  await hasBan(a!, '198.18.0.11');
  await hasBan(b!, '198.18.0.11');
  const list = await cli(['list', '--json', '--config', b!.configFile]);
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as Array<{ address: string; count: number }>;
  assert.equal(rows.find((r) => r.address === '198.18.0.11')?.count, 5);
  const un = await cli(['unban', '198.18.0.11', '--config', b!.configFile]);
  assert.equal(un.code, 0, un.stderr);
  await hasBan(a!, '198.18.0.11', false);
  await hasBan(b!, '198.18.0.11', false);
});

test('the bans of one batch go out as one stream message, and every node applies each of them', async (t) => {
  const quiet = createLogger(
    'warn',
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    }),
  );
  const sync = (origin: string): { sync: FleetSync; channel: RedisChannel } => {
    const client = createRedisClient({ url: redis.url });
    const channel = new RedisChannel({ client, keyPrefix: 'fb:', maxlen: 1_000, logger: quiet });
    const s = new FleetSync({ channel, origin, nodeId: origin, reconcileIntervalMs: 3_600_000, logger: quiet });
    t.after(async () => {
      await s.stop();
      await client.quit();
    });
    return { sync: s, channel };
  };
  const a = sync('pbx-a');
  const b = sync('pbx-b');
  const applied: Array<{ target: IpTarget; until: number }> = [];
  b.sync.start('0-0', {
    applyBan: (target, until) => applied.push({ target, until }) > 0,
    applyUnban: () => undefined,
    reconcile: async () => undefined,
  });
  const until = Date.now() + 3_600_000;
  const bans = Array.from({ length: 1_200 }, (_, i): BanRecord => ({
    address: `10.9.${i >> 8}.${i & 255}`,
    reason: 'failures',
    kinds: {},
    count: 5,
    firstSeen: 0,
    lastSeen: 0,
    bannedAt: 0,
    until: until + i,
    node: 'pbx-a',
    previousBans: 0,
  }));
  // what the daemon does with the verdicts of one batch: a ban event each, in one turn of the event loop
  await Promise.all(bans.map((ban) => a.sync.publishBan(ban)));
  const reader = createRedisClient({ url: redis.url });
  t.after(() => reader.quit().then(() => undefined));
  const entries = await reader.xrange('fb:stream', '-', '+');
  assert.equal(entries.length, Math.ceil(1_200 / MAX_BANS_PER_MESSAGE), 'one message per 500 bans, not one per ban');
  await waitFor('B applied every ban', async () => (applied.length === 1_200 ? true : undefined), 10_000);
  assert.deepEqual(
    applied.map((x) => [x.target.text, x.until]),
    bans.map((x) => [x.address, x.until]),
  );

  // a message is input: its lines are checked, parsed once, bounded
  const lines = [`10.9.0.1 ${until} failures`, `10.9.0.2 ${until}`, `010.9.0.3 ${until} failures`, `10.9.0.4 ${until} r\u001b[2J`];
  const parsed = parseEntry('1-1', ['t', 'bans', 'n', '\u001b[31mx', 'o', 'o', 'b', lines.join('\n')]);
  assert.deepEqual(
    parsed.messages.map((m) => m.address),
    ['10.9.0.1'],
  );
  assert.equal(parsed.bad, 3);
  assert.equal(parsed.messages[0]!.node, '\u001b[31mx', 'text is kept as it is: whatever prints it escapes it');
  const many = Array.from({ length: 2 * MAX_BANS_PER_MESSAGE }, (_, i) => `10.8.${i >> 8}.${i & 255} ${until} failures`);
  const big = parseEntry('1-2', ['t', 'bans', 'b', many.join('\n')]);
  assert.equal(big.messages.length, MAX_BANS_PER_MESSAGE);
  assert.equal(big.bad, MAX_BANS_PER_MESSAGE);
  assert.deepEqual(parseEntry('1-3', ['t', 'bans', 'b', 'x'.repeat(70_000)]), { messages: [], bad: 1 });
  assert.deepEqual(parseEntry('1-4', 'not fields'), { messages: [], bad: 1 });
});
