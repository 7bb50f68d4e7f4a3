// The AMI secret and the Redis password never appear in logs or error messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startBed } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { CLI, writeConfig } from '../support/daemon-process.js';
import { AMI_SECRET } from '../support/bed.js';
import { cli } from '../support/cli.js';
import { freePort, getText } from '../support/http.js';

const REDIS_PASSWORD = 'redis-pw-b9e1c7d2';

test('a full run, a refused AMI login and a refused Redis login never print a secret', async (t) => {
  const redis = await startRedisServer({ password: REDIS_PASSWORD });
  t.after(() => redis.stop());
  assert.ok(redis.url.includes(REDIS_PASSWORD));
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    config: { log: { level: 'debug' } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);

  // Asterisk now refuses our secret: reported once, clearly, without the secret
  bed.replay.setCredentials('ami-guard', 'another-secret');
  bed.replay.drop();
  await bed.daemon.waitForLog((l) => l.level >= 50 && /login rejected/.test(l.msg));
  await bed.daemon.stop();
  const out = bed.daemon.output();
  assert.ok(out.length > 1000);
  assert.ok(!out.includes(AMI_SECRET), 'AMI secret in the daemon output');
  assert.ok(!out.includes(REDIS_PASSWORD), 'Redis password in the daemon output');

  // a wrong Redis password and an unreachable Redis: errors, no password
  const wrong = redis.url.replace(REDIS_PASSWORD, 'wrong-pw-4411');
  for (const url of [wrong, `redis://:${REDIS_PASSWORD}@127.0.0.1:1/0`]) {
    const cfg = writeConfig({ ami: { port: 1, secret: AMI_SECRET }, redis: { url }, nft: { netns: bed.ns.name } });
    const r = spawnSync(process.execPath, [CLI, 'run', '--config', cfg], { encoding: 'utf8', timeout: 20_000, killSignal: 'SIGTERM' });
    const text = `${r.stdout}${r.stderr}`;
    assert.ok(!text.includes(REDIS_PASSWORD) && !text.includes('wrong-pw-4411') && !text.includes(AMI_SECRET), text.slice(0, 2000));
  }
});

test('a broken config file names the field, never the secret', () => {
  const cfg = writeConfig({ ami: { secret: AMI_SECRET, port: 'not-a-port' }, redis: { url: `http://u:${REDIS_PASSWORD}@x` } });
  const r = spawnSync(process.execPath, [CLI, 'run', '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /ami\.port/);
  assert.match(r.stderr, /redis\.url/);
  assert.ok(!r.stderr.includes(AMI_SECRET) && !r.stderr.includes(REDIS_PASSWORD), r.stderr);
});

test('a Redis password given as ?password= in the URL is hidden like one in the userinfo', async (t) => {
  const redis = await startRedisServer({ password: REDIS_PASSWORD });
  t.after(() => redis.stop());
  const url = `redis://127.0.0.1:${redis.port}/0?password=${REDIS_PASSWORD}`;
  const port = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: url,
    config: { log: { level: 'debug' }, http: { port } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11'], 'ioredis logged in with the password from the query');

  const status = await cli(['status', '--config', bed.configFile]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`redis   redis://127\\.0\\.0\\.1:${redis.port}/0\\?password=\\*\\*\\*: reachable`));
  const json = await cli(['status', '--json', '--config', bed.configFile]);
  assert.match(json.stdout, /"url":"redis:\/\/127\.0\.0\.1:\d+\/0\?password=\*\*\*"/);
  const health = await getText(`http://127.0.0.1:${port}/healthz`);
  const metrics = await getText(`http://127.0.0.1:${port}/metrics`);

  // the same URL, unreachable: the CLI's error names it without the password
  const cfg = writeConfig({ redis: { url: `redis://127.0.0.1:1/0?db=0&password=${REDIS_PASSWORD}` }, nft: { netns: bed.ns.name } });
  const down = await cli(['list', '--config', cfg], {}, 15_000);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^ami-guard: cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/0\?db=0&password=\*\*\*: /);

  await bed.daemon.stop();
  for (const [where, text] of [
    ['daemon log', bed.daemon.output()],
    ['status', status.stdout + status.stderr],
    ['status --json', json.stdout],
    ['/healthz', health.body],
    ['/metrics', metrics.body],
    ['CLI error', down.stderr],
  ] as const) {
    assert.ok(!text.includes(REDIS_PASSWORD), `the password in the ${where}`);
  }
  assert.ok(bed.daemon.logs.some((l) => l.msg === 'using Redis' && String(l.redis).endsWith('?password=***')));
});
