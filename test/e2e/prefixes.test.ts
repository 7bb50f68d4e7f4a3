// Attackers who rotate addresses (issue 15), through the real daemon, a real Redis and real nft in a namespace, with
// recorded pjsip events re-addressed: thousands of addresses of one /64 with one guess each; attackers spread over a
// /24 and over the /64s of a /48 with subnet escalation on; an ignore-listed and a trusted address inside the
// attacked prefix; the legitimate IPv6 phone; and the /64 that holds this host's own address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { bannedInKernel, played } from '../support/bed-wait.js';
import { waitFor } from '../support/netns.js';
import { cli } from '../support/cli.js';
import { freePort, scrapeMetrics, metric, startReceiver } from '../support/http.js';
import { publishedBans, scanKeys } from '../support/redis-layout.js';
import { eventsFrom, hostOf, readdress, readdressedRecording } from '../support/readdress.js';
import { parseAddress } from '../../src/net/ip.js';

let redis: RedisServer;
let raw: Redis;
before(async () => {
  redis = await startRedisServer();
  raw = new Redis(redis.url);
});
after(async () => {
  raw?.disconnect();
  await redis?.stop();
});

/** a real pjsip wrong password over IPv6 (svcrack against the lab's Asterisk 22) */
const GUESS_V6 = eventsFrom('ipv6-attacker', 'fd00::66', 'ChallengeResponseFailed')[0]!;
/** and over IPv4 */
const GUESS_V4 = eventsFrom('register-bruteforce', '198.18.0.11', 'ChallengeResponseFailed')[0]!;

let shift = 0;
/** `n` guesses from each address, each its own request (EventTV a millisecond apart) */
function guesses(addresses: readonly string[], n = 1): string {
  let out = '';
  for (const a of addresses) for (let i = 0; i < n; i++) out += readdress(a.includes(':') ? GUESS_V6 : GUESS_V4, a, ++shift);
  return out;
}

/** Sends the marker's guesses and waits for its ban: everything injected before it has been decided and applied. */
async function drained(bed: Bed): Promise<string[]> {
  bed.replay.inject(markerEvents(5, MARKER));
  await bannedInKernel(bed, MARKER, 30_000);
  return (await bed.elements()).filter((a) => a !== MARKER);
}

function bansLogged(bed: Bed): Array<Record<string, unknown>> {
  return bed.daemon.logs.filter((l) => l.event === 'ban' && l.address !== MARKER);
}

test('3,000 addresses of one /64, one guess each: the /64 is banned at the 5th, in the interval set, and Redis counts one window', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'p64:' });
  await played(bed);
  const addresses = Array.from({ length: 3_000 }, (_, i) => hostOf('2001:db8:aa:1::', i + 1));
  bed.replay.inject(guesses(addresses));
  assert.deepEqual(await drained(bed), ['2001:db8:aa:1::/64']);
  const bans = bansLogged(bed);
  assert.equal(bans.length, 1, JSON.stringify(bans));
  assert.deepEqual([bans[0]!.address, bans[0]!.reason, bans[0]!.count], ['2001:db8:aa:1::/64', 'failures', 5]);
  const el = (await bed.firewall.list()).find((e) => e.address === '2001:db8:aa:1::/64');
  assert.ok(el && el.family === 6 && el.expiresMs! > 3_500_000, JSON.stringify(el));
  // Redis: nothing of the 3,000 addresses, one record for the prefix (and the marker's, and the phone's trust)
  const keys = await scanKeys(raw, 'p64:{*');
  const records = keys
    .filter((k) => !/\}(w\d+|bans)$/.test(k))
    .map((k) => k.replace(/^p64:\{[0-9a-f]{3}\}/, ''))
    .sort();
  assert.deepEqual(records, ['192.0.2.250', '198.18.0.20', '2001:db8:aa:1::/64']);
  for (const k of keys.filter((k) => /\}w\d+$/.test(k))) {
    for (const field of await raw.hkeys(k)) assert.ok(!field.startsWith('2001:db8:aa:1:'), `a window for ${field}`);
  }
  // the operator's view
  const shown = JSON.parse((await cli(['show', '2001:db8:aa:1::/64', '--json', '--config', bed.configFile])).stdout) as {
    banned: boolean;
    ban: { reason: string; count: number };
  };
  assert.deepEqual([shown.banned, shown.ban.reason, shown.ban.count], [true, 'failures', 5]);
  const listed = JSON.parse((await cli(['list', '--json', '--config', bed.configFile])).stdout) as Array<{ address: string }>;
  assert.deepEqual(listed.map((b) => b.address).sort(), ['192.0.2.250', '2001:db8:aa:1::/64']);
  // an address of the prefix: not banned on its own, covered by the prefix's ban, and how to lift that
  const one = await cli(['show', '2001:db8:aa:1::7', '--config', bed.configFile]);
  assert.match(one.stdout, /banned: +yes, by the network ban 2001:db8:aa:1::\/64 \(failures, by test-node, \S+ left\)\n/);
  assert.match(one.stdout, /lift: +ami-guard unban 2001:db8:aa:1::\/64 \(lifts the whole network\)\n/);
  assert.match(one.stdout, /counted: +as 2001:db8:aa:1::\/64 \(policy\.ipv6prefix\)/);
  const unban = await cli(['unban', '2001:db8:aa:1::7', '--config', bed.configFile]);
  assert.equal(unban.code, 0, unban.stderr);
  assert.match(
    unban.stdout,
    /^2001:db8:aa:1::7 is not banned itself: it is covered by the network ban 2001:db8:aa:1::\/64 \(failures, \S+ left\); lift that with: ami-guard unban 2001:db8:aa:1::\/64\n$/,
  );
  assert.ok((await bed.elements()).includes('2001:db8:aa:1::/64'), 'the prefix stays banned');
  assert.equal((await cli(['unban', '2001:db8:aa:1::/64', '--config', bed.configFile])).stdout, 'unbanned 2001:db8:aa:1::/64\n');
  await waitFor('the prefix lifted in the kernel', async () => ((await bed.elements()).includes('2001:db8:aa:1::/64') ? undefined : true));
});

test('subnet escalation: 3 attackers of a /24 and 3 /64s of a /48 ban the /24 and the /48, fleet-wide, named in list, show, the webhook and the metrics', async (t) => {
  const receiver = await startReceiver();
  t.after(() => receiver.stop());
  const httpPort = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'esc:',
    config: {
      policy: { subnet: { maxbans: 3, bantime: '2h' } },
      notify: { webhook: { url: `http://127.0.0.1:${receiver.port}/hook` } },
      http: { port: httpPort },
    },
  });
  await played(bed);
  // each attacker a wrong password five times; the IPv6 ones from five addresses of their /64 each
  const v4 = ['203.0.113.7', '203.0.113.80', '203.0.113.201'];
  bed.replay.inject(guesses(v4, 5));
  const v6 = [1, 2, 3].map((n) => Array.from({ length: 5 }, (_, i) => hostOf(`2001:db8:ee:${n}::`, 100 + i)));
  for (const prefix of v6) bed.replay.inject(guesses(prefix));
  // the /64s fold into the /48 in the interval set (it refuses overlapping elements); the hosts stay in their hash set
  const elements = await drained(bed);
  assert.deepEqual(elements.sort(), ['2001:db8:ee::/48', ...v4, '203.0.113.0/24'].sort());
  const net = (await bed.firewall.list()).find((e) => e.address === '2001:db8:ee::/48');
  assert.ok(net && net.expiresMs! > 3_600_000 + 3_000_000, `the /48 keeps the longer timeout: ${JSON.stringify(net)}`);
  const subnetBans = bansLogged(bed).filter((l) => l.reason === 'subnet');
  assert.deepEqual(
    subnetBans.map((l) => [l.address, l.count, l.duration, l.members]).sort(),
    [
      ['2001:db8:ee::/48', 3, '2h', ['2001:db8:ee:1::/64', '2001:db8:ee:2::/64', '2001:db8:ee:3::/64']],
      ['203.0.113.0/24', 3, '2h', v4],
    ].sort(),
  );
  // fleet-wide: on the channel like any ban, and in the index
  const published = await publishedBans(raw, 'esc:');
  assert.ok(published.includes('203.0.113.0/24') && published.includes('2001:db8:ee::/48'), published.join(' '));

  const listed = JSON.parse((await cli(['list', '--reason', 'subnet', '--json', '--config', bed.configFile])).stdout) as Array<{
    address: string;
    reason: string;
    members: string[];
  }>;
  assert.deepEqual(
    listed.map((b) => [b.address, b.reason, b.members]).sort(),
    [
      ['2001:db8:ee::/48', 'subnet', ['2001:db8:ee:1::/64', '2001:db8:ee:2::/64', '2001:db8:ee:3::/64']],
      ['203.0.113.0/24', 'subnet', v4],
    ].sort(),
  );
  const shown = await cli(['show', '203.0.113.0/24', '--config', bed.configFile]);
  assert.match(shown.stdout, /banned: +yes, subnet, by test-node/);
  assert.match(shown.stdout, /why: +3 of its addresses or prefixes banned .*: 203\.0\.113\.7, 203\.0\.113\.80, 203\.0\.113\.201/);

  const requests = await receiver.waitFor(9);
  const posted = requests.map((r) => JSON.parse(r.body) as { address: string; reason: string; members?: string[]; text: string });
  const hook = posted.find((p) => p.address === '203.0.113.0/24');
  assert.ok(hook, posted.map((p) => p.address).join(' '));
  assert.deepEqual([hook.reason, hook.members], ['subnet', v4]);
  assert.equal(
    hook.text,
    'ami-guard on test-node: banned 203.0.113.0/24 for 2h (subnet: 3 of its addresses or prefixes banned: 203.0.113.7, 203.0.113.80, 203.0.113.201)',
  );
  let samples = await scrapeMetrics(`http://127.0.0.1:${httpPort}`);
  assert.equal(metric(samples, 'ami_guard_bans_total', { reason: 'subnet' }), 2);
  assert.equal(metric(samples, 'ami_guard_bans_total', { reason: 'failures' }), 7, 'three addresses, three /64s and the marker');

  // events still on their way from inside a banned subnet make no ban of their own (the kernel drops the rest)
  const skippedBefore = metric(samples, 'ami_guard_events_skipped_total', { why: 'already-banned' }) ?? 0;
  bed.replay.inject(guesses(['203.0.113.99', '2001:db8:ee:4::1'], 5));
  const after = await drained(bed);
  assert.ok(!after.includes('203.0.113.99') && !after.includes('2001:db8:ee:4::/64'), after.join(' '));
  samples = await scrapeMetrics(`http://127.0.0.1:${httpPort}`);
  assert.equal(
    metric(samples, 'ami_guard_events_skipped_total', { why: 'already-banned' }),
    skippedBefore + 10 + 5,
    "and the marker's, banned already",
  );
  assert.equal(metric(samples, 'ami_guard_bans_total', { reason: 'subnet' }), 2);
});

test('a flood over 4,000 /64s of a /48 with escalation on: the /48 falls, and the prefixes still waiting for the store are not banned one by one', async (t) => {
  const httpPort = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'flood:',
    config: { policy: { subnet: { maxbans: 3 } }, http: { port: httpPort } },
  });
  await played(bed);
  const url = `http://127.0.0.1:${httpPort}`;
  const read = async (): Promise<number> =>
    metric(await scrapeMetrics(url), 'ami_guard_security_events_total', { kind: 'ChallengeResponseFailed' }) ?? 0;
  const before = await read();
  const prefixes = Array.from({ length: 4_000 }, (_, i) => `2001:db8:f1:${i.toString(16)}::`);
  // Redis holds the daemon's writes (not its reads) while the flood is read, so the flood waits in the daemon's fold
  // as it does when the store cannot keep up; well within the daemon's command timeout, and it lifts itself
  await raw.call('CLIENT', 'PAUSE', '1500', 'WRITE');
  bed.replay.inject(prefixes.map((p) => guesses(Array.from({ length: 5 }, (_, j) => hostOf(p, j + 1)))).join(''));
  await waitFor('the flood read by the daemon', async () => ((await read()) >= before + 20_000 ? true : undefined));
  assert.deepEqual(await drained(bed), ['2001:db8:f1::/48']);
  const banned = bansLogged(bed);
  assert.equal(banned.filter((l) => l.reason === 'subnet').length, 1);
  // only the entries already at the store when the /48 fell: at most 4 calls of 256 (4,000 without the check)
  const prefixBans = banned.filter((l) => l.reason === 'failures').length;
  assert.ok(prefixBans >= 3 && prefixBans <= 4 * 256, `${prefixBans} /64s banned one by one`);
  const samples = await scrapeMetrics(url);
  assert.ok((metric(samples, 'ami_guard_events_skipped_total', { why: 'already-banned' }) ?? 0) >= 5 * (4_000 - 4 * 256));
});

test('an ignore-listed phone inside the attacked /64: the prefix is counted per address, the attacker alone is banned', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'ign:',
    config: { policy: { ignoreip: ['127.0.0.0/8', '::1', '2001:db8:bb:1::20'] } },
  });
  await played(bed);
  bed.replay.inject(guesses(['2001:db8:bb:1::20'], 12));
  bed.replay.inject(guesses(['2001:db8:bb:1::66'], 5));
  // another address of the prefix, below maxretry on its own: a ban of the prefix would have covered it
  bed.replay.inject(guesses(['2001:db8:bb:1::67'], 4));
  assert.deepEqual(await drained(bed), ['2001:db8:bb:1::66']);
});

test("the legitimate IPv6 phone logs in inside the attacked /64: the attacker's address is banned at trust.maxretry, never the prefix or the phone", async (t) => {
  // the recorded phone (a typo among its logins) moved into the /64, and the same phone at fd00::20 (the lab's)
  const phone = '2001:db8:cc:1::20';
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: readdressedRecording('legit-phone', '198.18.0.20', phone),
    redisUrl: redis.url,
    keyPrefix: 'trust:',
  });
  await played(bed);
  const prefix = JSON.parse((await cli(['show', '2001:db8:cc:1::/64', '--json', '--config', bed.configFile])).stdout) as {
    trusted: boolean;
    failures: unknown[];
  };
  assert.equal(prefix.trusted, true, 'the prefix holds a trusted address');
  assert.equal(prefix.failures.length, 1, "the phone's typo counts toward its prefix");
  // the attacker: 8 more make 9 of 10, nothing is banned; the 10th bans its sender
  bed.replay.inject(guesses(['2001:db8:cc:1::66'], 8));
  assert.deepEqual(await drained(bed), []);
  bed.replay.inject(guesses(['2001:db8:cc:1::66'], 1));
  await bannedInKernel(bed, '2001:db8:cc:1::66', 20_000);
  // the phone goes on registering, typo included, from the same prefix and from fd00::20
  for (const raw of eventsFrom('legit-phone', '198.18.0.20'))
    bed.replay.inject(readdress(raw, phone, ++shift) + readdress(raw, 'fd00::20', shift));
  assert.deepEqual(await drained(bed), ['2001:db8:cc:1::66']);
  const ban = bansLogged(bed).find((l) => l.address === '2001:db8:cc:1::66');
  assert.deepEqual([ban?.reason, ban?.count], ['failures', 10]);
});

/** This host's own global IPv6 address, as `ip` reports it (the daemon reads it through src/net itself). */
function hostIpv6(): string | undefined {
  const links = JSON.parse(execFileSync('ip', ['-j', '-6', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' })) as Array<{
    addr_info: Array<{ local: string }>;
  }>;
  return links.flatMap((l) => l.addr_info.map((a) => a.local)).find((a) => !a.startsWith('fe80'));
}

test("the /64 that holds this host's own address is counted per address: the attacker next to the PBX is banned, not its neighbours", async (t) => {
  const own = hostIpv6();
  assert.ok(own, 'this test needs a global IPv6 address on this machine (the attackers share its /64)');
  const words = parseAddress(own)!.words;
  const neighbour = (last: number): string =>
    parseAddress(
      `${[words[0]!, words[1]!].map((w) => `${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`).join(':')}::${last.toString(16)}`,
    )!.text;
  const [attacker, next] = [neighbour(0x6601), neighbour(0x6602)];
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'own:' });
  await played(bed);
  bed.replay.inject(guesses([attacker], 5));
  bed.replay.inject(guesses([next], 4));
  assert.deepEqual(await drained(bed), [attacker]);
});

test('SIGHUP changing policy.ipv6prefix: per address before the reload, per /64 after it', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'hup:',
    config: { policy: { ipv6prefix: 128 } },
  });
  await played(bed);
  const original = JSON.parse(readFileSync(bed.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  // five addresses of one /64, one guess each: per address nothing is banned
  bed.replay.inject(guesses(Array.from({ length: 5 }, (_, i) => hostOf('2001:db8:dd:1::', i + 1))));
  assert.deepEqual(await drained(bed), []);
  writeFileSync(bed.configFile, JSON.stringify({ ...original, policy: { ...original.policy, ipv6prefix: 64 } }));
  assert.ok(bed.daemon.child.kill('SIGHUP'));
  const reloaded = await bed.daemon.waitForLog((l) => l.msg === 'configuration reloaded');
  assert.ok((reloaded.applied as string[]).includes('policy.ipv6prefix'), JSON.stringify(reloaded.applied));
  bed.replay.inject(guesses(Array.from({ length: 5 }, (_, i) => hostOf('2001:db8:dd:2::', i + 1))));
  // (the marker is banned already: it cannot tell when these are done, the /64's own ban does)
  await bannedInKernel(bed, '2001:db8:dd:2::/64', 30_000);
  assert.deepEqual(
    (await bed.elements()).filter((a) => a !== MARKER),
    ['2001:db8:dd:2::/64'],
  );
});
