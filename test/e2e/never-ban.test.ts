// fail2ban's ignoreself, and more (issue 11): a ban that would cut the host off is refused whoever asks. The CLI
// refuses it before anything is written; the daemon refuses it when it arrives from the store (a record someone wrote
// by hand) or from detection. The host's addresses and gateway are read here independently of src/net.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { bannedInKernel, played } from '../support/bed-wait.js';
import { cli } from '../support/cli.js';
import { writeConfig } from '../support/daemon-process.js';
import { indexKey } from '../support/redis-layout.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

/** A non-loopback address of this host, and its IPv4 default gateway, as `ip` and os report them. */
function hostFacts(): { own: string | undefined; gateway: string | undefined } {
  const own = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && !a.internal && a.family === 'IPv4')?.address;
  const routes = JSON.parse(execFileSync('ip', ['-j', 'route', 'show', 'default'], { encoding: 'utf8' })) as Array<{ gateway?: string }>;
  return { own, gateway: routes.find((r) => r.gateway)?.gateway };
}

test('the CLI refuses every ban that would cut the host off, naming why, and applies none of the others', async () => {
  const { own, gateway } = hostFacts();
  // a Sentinel this configuration depends on: a service of the host, never banned (the refusal comes before any
  // connection, so it need not answer)
  const config = writeConfig({
    redis: { url: '', sentinels: ['198.51.100.200:26379'], name: 'mymaster' },
    nft: { netns: 'agtest-nonexistent' },
  });
  const cases: Array<[string, RegExp]> = [
    ['128.0.0.0/1', /wider than a ban may be/],
    ['::/1', /wider than a ban may be/],
    ['fe80::/10', /wider than a ban may be/],
    ['fe80::1', /link-local/],
    ['169.254.169.254', /link-local/],
    ['127.0.0.1', /loopback/],
    ['198.51.100.200', /which this host needs/],
    ...(own ? [[own, /this host's own address/] as [string, RegExp]] : []),
    ...(gateway ? [[gateway, /default gateway/] as [string, RegExp]] : []),
  ];
  assert.ok(own && gateway, 'this machine has an address and a default gateway to protect');
  for (const [target, why] of cases) {
    const r = await cli(['ban', '198.51.100.1', target, '--config', config]);
    assert.equal(r.code, 2, `${target}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^ami-guard: refusing to ban ${target.replace(/[.:/]/g, '\\$&')}`), r.stderr);
    assert.match(r.stderr, why, target);
  }
});

test('the daemon refuses what no ban may cover when it arrives from the store, and still bans the rest', async (t) => {
  const { gateway } = hostFacts();
  assert.ok(gateway);
  // records a hostile or careless writer put into Redis before the daemon starts: each would cut the host off
  const c = new Redis(redis.url);
  t.after(() => c.disconnect());
  const until = Date.now() + 3_600_000;
  const hostile = ['128.0.0.0/1', '169.254.169.254', gateway, 'fe80::/10'];
  for (const a of hostile) await c.zadd(indexKey('nb:', a), until, a);
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'nb:' });
  await played(bed);
  // an attack still bans its source
  bed.replay.inject(markerEvents(5, MARKER));
  await bannedInKernel(bed, MARKER, 20_000);
  const elements = await bed.elements();
  for (const a of hostile) {
    assert.ok(!elements.includes(a), `${a} reached the kernel`);
    assert.ok(
      bed.daemon.logs.some((l) => l.address === a && /ban not applied here/.test(l.msg)),
      `no refusal logged for ${a}`,
    );
  }
});

test('a fleet message naming what no ban may cover, or an ignore-listed address, is refused; its good lines apply', async (t) => {
  const { gateway } = hostFacts();
  assert.ok(gateway);
  const ignored = '192.0.2.77';
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'nbf:',
    config: { policy: { ignoreip: [ignored] } },
  });
  await played(bed);
  // another "node" on the same Redis (a compromised PBX, or anyone holding the password) publishes bans
  const c = new Redis(redis.url);
  t.after(() => c.disconnect());
  const until = Date.now() + 3_600_000;
  const hostile = [gateway, '169.254.169.254', '0.0.0.0/0', ignored, '::1'];
  const good = '203.0.113.50';
  const lines = [...hostile.map((a) => `${a} ${until} failures`), 'garbage line', `${good} ${until} failures`];
  await c.xadd('nbf:stream', '*', 't', 'bans', 'n', 'intruder', 'o', 'intruder-origin', 'b', lines.join('\n'));
  await bannedInKernel(bed, good, 20_000);
  const elements = await bed.elements();
  for (const a of hostile) {
    assert.ok(!elements.includes(a), `${a} reached the kernel`);
  }
  for (const a of [gateway, '169.254.169.254', ignored]) {
    assert.ok(
      bed.daemon.logs.some((l) => l.address === a && /ban not applied here/.test(l.msg)),
      `no refusal logged for ${a}`,
    );
  }
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon is still running');
});
