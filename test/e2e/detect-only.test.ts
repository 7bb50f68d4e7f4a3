// `run --detect-only` (issue 17, like CrowdSec's simulation mode): the real daemon on a recorded real attack decides
// and logs the bans it would make, and nothing leaves the process: no element in the kernel, no key in the Redis it
// was configured with, no state file; the CLI lists the would-be bans through the control socket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER } from '../support/bed.js';
import { played } from '../support/bed-wait.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { cli } from '../support/cli.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

test('detect-only: the attacker is logged as a ban it would make; nothing reaches the kernel, Redis or the state directory', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'do:',
    args: ['run', '--detect-only'],
  });
  await played(bed);
  bed.replay.inject(markerEvents(5));
  const wouldBan = await bed.daemon.waitForLog((l) => l.event === 'would-ban' && l.address === MARKER, 20_000);
  assert.match(wouldBan.msg, /^would ban /);
  assert.ok(
    bed.daemon.logs.some((l) => l.event === 'would-ban' && l.address === '198.18.0.11'),
    'the recorded attacker is a would-be ban',
  );
  assert.ok(!bed.daemon.logs.some((l) => l.event === 'ban'), 'no ban line: nothing was banned');
  assert.ok(
    bed.daemon.logs.some((l) => l.level === 40 && /detect-only/.test(l.msg)),
    'the mode is announced',
  );

  assert.equal(await bed.firewall.present(), false, 'no nft table was made');
  const c = new Redis(redis.url);
  t.after(() => c.disconnect());
  assert.deepEqual(await c.keys('do:*'), [], 'nothing was written to Redis');

  const list = await cli(['list', '--json', '--config', bed.configFile]);
  assert.equal(list.code, 0, list.stderr);
  const listed = (JSON.parse(list.stdout) as Array<{ address: string }>).map((b) => b.address);
  assert.ok(listed.includes('198.18.0.11') && listed.includes(MARKER), `list shows the would-be bans: ${listed.join(', ')}`);
  const status = await cli(['status', '--config', bed.configFile]);
  assert.match(status.stdout, /DETECT-ONLY/);

  await bed.daemon.stop();
  const stateDir = join(dirname(bed.configFile), 'state');
  assert.ok(!existsSync(stateDir) || readdirSync(stateDir).length === 0, 'no state file: the would-be bans are not bans at the next start');
});
