// One unauthenticated SIP REGISTER must not hang, blind or turn ami-guard (issue 11). pjsip un-escapes %0D%0A in the
// From user and writes it raw into the AMI AccountID line, before Asterisk's own SessionID, LocalAddress and
// RemoteAddress. Each payload below goes, in the bytes Asterisk writes, through a real TCP AMI server into the real
// daemon with real Redis and real nft: the forged address is never banned, the genuine source is banned with reason
// `injection`, the guesses around it are all counted, and /healthz answers throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { bannedInKernel, played } from '../support/bed-wait.js';
import { freePort, getHealth, parseMetrics, getText } from '../support/http.js';
import { injectedEvent, pjsipEvent } from '../support/ami-events.js';
import { waitFor } from '../support/netns.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

const FORGED = '203.0.113.99';

async function bed(t: { after: (fn: () => Promise<void>) => void }, prefix: string): Promise<{ bed: Bed; http: string }> {
  const port = await freePort();
  const b = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: prefix,
    config: { http: { port } },
  });
  await played(b);
  const http = `http://127.0.0.1:${port}`;
  // the health checks' first results (until then every part counts as down)
  await waitFor(
    '/healthz to answer 200',
    async () => ((await getHealth(http).catch(() => undefined))?.status === 200 ? true : undefined),
    20_000,
  );
  return { bed: b, http };
}

async function banIndex(prefix: string): Promise<string[]> {
  const c = new Redis(redis.url);
  try {
    return await c.zrange(`${prefix}bans`, 0, -1);
  } finally {
    c.disconnect();
  }
}

function bans(b: Bed, address: string): Array<Record<string, unknown>> {
  return b.daemon.logs.filter((l) => l.event === 'ban' && l.address === address);
}

test("a recording of real injections from the lab's Asterisk: each attacker banned for injection, the phone and the forged addresses never", async (t) => {
  const truth = JSON.parse(readFileSync('test/fixtures/ami/lab-injection.truth.json', 'utf8')) as {
    attackers: string[];
    legitimate: string[];
    forged: string[];
  };
  const b = await startBed({ cleanup: (fn) => t.after(fn), recording: 'lab-injection', redisUrl: redis.url, keyPrefix: 'inj0:' });
  assert.deepEqual(await b.settle(), [...truth.attackers].sort());
  for (const a of truth.attackers) assert.equal(bans(b, a)[0]?.['reason'], 'injection', a);
  for (const a of [...truth.legitimate, ...truth.forged]) assert.equal(bans(b, a).length, 0, `${a} banned`);
  assert.ok(!(await banIndex('inj0:')).some((a) => truth.forged.includes(a)));
});

const PAYLOADS: Array<[string, string]> = [
  ['a forged RemoteAddress line', `\r\nRemoteAddress: IPV4/${FORGED}/`],
  ['a forged RemoteAddress of the Redis host', '\r\nRemoteAddress: IPV4/127.0.0.1/'],
  ['a forged link-local IPv6 gateway', '\r\nRemoteAddress: IPV6/fe80::1/'],
  ['an empty line and Event: rawevent (asterisk-manager looped for ever)', '\r\n\r\nEvent: rawevent'],
  ['an empty line and Response: Follows (asterisk-manager swallowed what followed)', '\r\n\r\nResponse: Follows'],
  ['an empty line and Event: close (asterisk-manager reconnected)', '\r\n\r\nEvent: close'],
  ['a __proto__ header (asterisk-manager threw)', '\r\n__proto__: x'],
  ['a bare LF, as the issue measured it', `\nRemoteAddress: IPV4/${FORGED}/`],
];

test('each injection payload: the forged address is never banned, the genuine source is banned at once for injection', async (t) => {
  const { bed: b, http } = await bed(t, 'inj1:');
  for (let i = 0; i < PAYLOADS.length; i++) {
    const [what, payload] = PAYLOADS[i]!;
    const source = `198.51.100.${10 + i}`;
    // once is enough: the strongest sign there is
    b.replay.inject(injectedEvent(payload, source));
    // an event of Asterisk's own right after it, as under attack (on a quiet link the daemon's Ping closes it)
    b.replay.inject(pjsipEvent('ChallengeSent', { remote: '198.18.0.30' }));
    await bannedInKernel(b, source, 20_000, `${source} banned for ${what}`);
    const [ban] = bans(b, source);
    assert.equal(ban?.['reason'], 'injection', what);
    assert.equal((await getHealth(http)).status, 200, `/healthz after ${what}`);
  }
  const elements = await b.elements();
  for (const forged of [FORGED, '127.0.0.1', 'fe80::1', '10.9.9.9']) {
    assert.ok(!elements.includes(forged), `${forged} is in the kernel set`);
    assert.equal(bans(b, forged).length, 0, `${forged} was banned`);
  }
  assert.ok(!(await banIndex('inj1:')).includes(FORGED), 'the forged address reached the ban index');
  const metrics = parseMetrics((await getText(`${http}/metrics`)).body);
  const injections = metrics.filter((m) => m.name === 'ami_guard_ami_injections_total').reduce((a, m) => a + m.value, 0);
  assert.ok(injections >= PAYLOADS.length, `${injections} injections counted`);
  assert.equal(b.daemon.child.exitCode, null);
});

test('one split-frame injection every few events beside a password guesser: every guess is counted, the guesser banned', async (t) => {
  const { bed: b, http } = await bed(t, 'inj2:');
  const guesser = '198.51.100.40';
  const injector = '198.51.100.41';
  for (let i = 0; i < 5; i++) {
    b.replay.inject(injectedEvent('\r\n\r\nResponse: Follows', injector));
    b.replay.inject(
      pjsipEvent('ChallengeResponseFailed', { remote: guesser, session: `guess-${i}`, eventTv: `2026-11-21T19:15:48.${100 + i}+0000` }),
    );
  }
  await bannedInKernel(b, guesser, 20_000, 'the guesser banned after 5 guesses');
  const [ban] = bans(b, guesser);
  assert.equal(ban?.['reason'], 'failures');
  assert.equal(ban?.['count'], 5, 'none of the 5 guesses was swallowed');
  await bannedInKernel(b, injector, 20_000);
  assert.equal((await getHealth(http)).status, 200);
});

test('60 wrong passwords in a burst on one Call-ID and one nonce count as 60 guesses', async (t) => {
  const { bed: b } = await bed(t, 'inj3:');
  const guesser = '198.51.100.60';
  // thresholds of a trusted phone: 10; the burst must cross it although every event has the same session and time
  let burst = '';
  for (let i = 0; i < 60; i++) burst += pjsipEvent('ChallengeResponseFailed', { remote: guesser, session: 'one-call-id' });
  b.replay.inject(burst);
  // the old rule skipped a failure repeating the session and time of the last one: 1 count, never a ban
  await bannedInKernel(b, guesser, 20_000);
  assert.equal(bans(b, guesser)[0]?.['reason'], 'failures');
});

test('hostile streams cost bounded memory and never stall: a 10 MB line, a frame that never ends, a flood of event names', async (t) => {
  const { bed: b, http } = await bed(t, 'inj4:');
  const pid = b.daemon.child.pid!;
  const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const before = rss();
  // a line with no end: dropped at 8 KiB, nothing held beyond the frame bound
  const mb = Buffer.alloc(1024 * 1024, 0x41);
  for (let i = 0; i < 10; i++) b.replay.inject(mb);
  assert.equal((await getHealth(http)).status, 200, '/healthz during an endless line');
  b.replay.inject('\r\n\r\n');
  // a frame that never ends: header after header, each short, beyond every bound
  const line = Buffer.from('X-Header: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n');
  b.replay.inject(Buffer.concat(Array.from({ length: 100_000 }, () => line)));
  b.replay.inject('\r\n');
  // 20,000 security events of 20,000 made-up kinds: one metric label for all of them
  let flood = '';
  for (let i = 0; i < 20_000; i++) flood += pjsipEvent(`Kind${i}x`, { remote: '198.18.0.20' });
  b.replay.inject(flood);
  // two UserEvent headers in one event killed asterisk-manager
  b.replay.inject('Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: a\r\nUserEvent: b\r\n\r\n');
  b.replay.inject(markerEvents(5, MARKER));
  await bannedInKernel(b, MARKER, 30_000, 'the marker after the hostile streams');
  assert.equal((await getHealth(http)).status, 200);
  const text = (await getText(`${http}/metrics`)).body;
  const kindLabels = new Set(
    parseMetrics(text)
      .filter((m) => m.name === 'ami_guard_security_events_total')
      .map((m) => m.labels['kind']),
  );
  assert.ok(kindLabels.size <= 20, `${kindLabels.size} kind labels: ${[...kindLabels].slice(0, 30).join(', ')}`);
  assert.ok(text.length < 200_000, `/metrics is ${text.length} bytes`);
  // nothing of the 15 MB is held: the daemon's memory grows by far less than what it was sent
  await waitFor('RSS to settle', async () => (rss() - before < 100 * 1024 * 1024 ? true : undefined), 10_000);
  assert.equal(b.daemon.child.exitCode, null);
  assert.ok(!b.daemon.output().includes('yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy'), 'attacker text of a dropped frame is not logged');
});
