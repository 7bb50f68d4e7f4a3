// Ban notifications from the real daemon to real local webhooks: what they carry, that the URL's credentials never
// reach the logs, and that a dead or hanging webhook holds up no ban and no shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBed, MARKER } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { freePort, getText, metric, parseMetrics, startReceiver } from '../support/http.js';

test('each ban is POSTed as JSON with a Slack-compatible text; the URL credentials never reach the output', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const receiver = await startReceiver();
  t.after(() => receiver.stop());
  const url = `http://user:tok3n@127.0.0.1:${receiver.port}/hook?key=s3cret`;
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'hook:',
    config: { notify: { webhook: { url } }, log: { level: 'debug' } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const requests = await receiver.waitFor(2);

  const first = requests[0]!;
  assert.equal(first.method, 'POST');
  assert.equal(first.url, '/hook?key=s3cret');
  assert.equal(first.headers['content-type'], 'application/json');
  assert.equal(first.headers.authorization, `Basic ${Buffer.from('user:tok3n').toString('base64')}`);
  const ban = JSON.parse(first.body) as Record<string, unknown>;
  assert.equal(ban.event, 'ban');
  assert.equal(ban.address, '198.18.0.11');
  assert.equal(ban.reason, 'failures');
  assert.equal(ban.count, 5);
  assert.deepEqual(ban.kinds, { ChallengeResponseFailed: 5 });
  assert.equal(ban.duration, '1h');
  assert.equal(ban.durationSeconds, 3600);
  assert.equal(ban.node, 'test-node');
  assert.equal(ban.previousBans, 0);
  assert.equal(Date.parse(ban.until as string) - Date.parse(ban.bannedAt as string), 3_600_000);
  assert.equal(ban.text, 'ami-guard on test-node: banned 198.18.0.11 for 1h (5 failures: ChallengeResponseFailed ×5)');
  assert.equal((JSON.parse(requests[1]!.body) as { address: string }).address, MARKER);

  assert.equal(await bed.daemon.stop(), 0);
  const out = bed.daemon.output();
  for (const secret of ['tok3n', 's3cret', 'user:', '/hook']) assert.ok(!out.includes(secret), `${secret} in the daemon output`);
  // what the logs do say: the origin
  const announced = bed.daemon.logs.find((l) => l.msg === 'ban notifications go to a webhook');
  assert.equal(announced?.webhook, `http://127.0.0.1:${receiver.port}`);
});

test('a dead webhook and a hanging one hold up no ban, and SIGTERM still exits 0', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());

  // dead: nothing listens on the port
  const deadPort = await freePort();
  const httpPort = await freePort();
  const dead = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'dead:',
    config: { notify: { webhook: { url: `http://127.0.0.1:${deadPort}/hook`, retries: 1 } }, http: { port: httpPort } },
  });
  assert.deepEqual(await dead.settle(), ['198.18.0.11']);
  const failed = await dead.daemon.waitForLog((l) => l.msg === 'webhook notification failed', 20_000);
  assert.equal(failed.why, 'ECONNREFUSED');
  assert.equal(failed.attempts, 2);
  const m = parseMetrics((await getText(`http://127.0.0.1:${httpPort}/metrics`)).body);
  assert.ok((metric(m, 'ami_guard_webhook_notifications_total', { result: 'failed' }) ?? 0) >= 1);
  assert.equal(metric(m, 'ami_guard_webhook_notifications_total', { result: 'sent' }), 0);
  assert.equal(dead.daemon.child.exitCode, null, 'the daemon keeps running');

  // hanging: the first request is held open, unanswered, for longer than the test
  const hanging = await startReceiver(() => 'hang');
  t.after(() => hanging.stop());
  const slow = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'slow:',
    config: { notify: { webhook: { url: `http://127.0.0.1:${hanging.port}/hook`, timeout: '10m' } } },
  });
  const [held] = await hanging.waitFor(1);
  assert.equal((JSON.parse(held!.body) as { address: string }).address, '198.18.0.11');
  // with that request hanging, a new attacker (the bed's marker) is banned in the kernel
  assert.deepEqual(await slow.settle(), ['198.18.0.11']);
  assert.equal(hanging.requests.length, 1, 'the next notification waits behind the hanging one');
  assert.ok(!held!.answered && !held!.closed, 'the first notification is still hanging');

  assert.equal(await slow.daemon.stop(), 0);
  assert.ok(slow.daemon.logs.some((l) => l.msg === 'stopped'));
  assert.ok(!slow.daemon.logs.some((l) => /took too long/.test(l.msg)), 'shut down within its deadline');
  const unsent = slow.daemon.logs.find((l) => l.msg === 'stopping: webhook notifications not sent');
  assert.equal(unsent?.dropped, 1, 'the queued notification is counted as dropped');
});
