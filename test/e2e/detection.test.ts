// Trust and escalation through the real daemon, with the state in a real Redis across a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBed, markerEvents } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { cli } from '../support/cli.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

test('a phone that logged in is trusted: 6 mistyped passwords are no ban, 10 are', async (t) => {
  // the recording's phone registers successfully (SuccessfulAuth with a password): the fleet trusts it for a day
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'trust:' });
  assert.deepEqual(await bed.settle(), []);
  const shown = JSON.parse((await cli(['show', '198.18.0.20', '--json', '--config', bed.configFile])).stdout) as { trusted: boolean };
  assert.equal(shown.trusted, true);
  // the recording already holds one mistyped password; five more make six
  bed.replay.inject(markerEvents(5, '198.18.0.20'));
  bed.replay.inject(markerEvents(5, '192.0.2.252'));
  await waitFor('the marker', async () => ((await bed.elements()).includes('192.0.2.252') ? true : undefined));
  assert.ok(!(await bed.elements()).includes('198.18.0.20'), 'six failures do not ban a trusted phone');
  bed.replay.inject(markerEvents(3, '198.18.0.20'));
  bed.replay.inject(markerEvents(5, '192.0.2.253'));
  await waitFor('the marker', async () => ((await bed.elements()).includes('192.0.2.253') ? true : undefined));
  assert.ok(!(await bed.elements()).includes('198.18.0.20'), 'nine do not either');
  bed.replay.inject(markerEvents(1, '198.18.0.20'));
  await waitFor('the ban of the trusted address', async () => ((await bed.elements()).includes('198.18.0.20') ? true : undefined));
});

test('escalation and the offender threshold survive a daemon restart (history in Redis)', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const first = await startBed({ cleanup, recording: 'register-bruteforce', redisUrl: redis.url, keyPrefix: 'esc:' });
  assert.deepEqual(await first.settle(), ['198.18.0.11']);
  assert.equal((await cli(['unban', '198.18.0.11', '--config', first.configFile])).code, 0);
  assert.equal(await first.daemon.stop(), 0);

  const second = await startBed({ cleanup, recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'esc:', ns: first.ns });
  await second.settle();
  second.replay.inject(markerEvents(3, '198.18.0.11'));
  await waitFor('the second ban', async () => ((await second.elements()).includes('198.18.0.11') ? true : undefined));
  const ban = second.daemon.logs.find((l) => l.event === 'ban' && l.address === '198.18.0.11')!;
  assert.equal(ban.count, 3, 'a known offender is banned after offender.maxretry failures');
  assert.equal(ban.duration, '2h', 'the second ban lasts bantime x 2');
  assert.equal(ban.previousBans, 1);
  const el = (await second.firewall.list()).find((e) => e.address === '198.18.0.11');
  assert.ok(el && el.expiresMs! > 3_600_000 && el.expiresMs! <= 7_200_000, `kernel timeout ${el?.expiresMs}`);
});
