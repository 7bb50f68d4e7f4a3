// Asterisk restarted under the real daemon (the asterisk-restart recording: Shutdown, socket closed, a new login
// gets FullyBooted): the daemon reconnects by itself, every event of both connections is counted exactly once, and
// the gap shows in the metrics and the log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startBed, FIXTURES } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { freePort, getText, metric, parseMetrics } from '../support/http.js';
import { readRecord, windowState } from '../support/redis-layout.js';

interface Truth {
  sources: Array<{ ip: string; ami_events: Record<string, number> }>;
}

test('asterisk-restart: one reconnect, each event counted once, the gap in metrics and log', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const port = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'asterisk-restart',
    redisUrl: redis.url,
    config: { http: { port } },
  });
  assert.deepEqual(await bed.settle(), []);
  assert.equal(bed.replay.connections, 2, 'the daemon logged in again after the restart');

  const m = parseMetrics((await getText(`http://127.0.0.1:${port}/metrics`)).body);
  const truth = JSON.parse(readFileSync(join(FIXTURES, 'asterisk-restart.truth.json'), 'utf8')) as Truth;
  // the recording's events plus the marker's five guesses, each seen once
  const expected = new Map<string, number>([['InvalidPassword', 5]]);
  for (const s of truth.sources) for (const [kind, n] of Object.entries(s.ami_events)) expected.set(kind, (expected.get(kind) ?? 0) + n);
  for (const [kind, n] of expected) assert.equal(metric(m, 'ami_guard_security_events_total', { kind }), n, kind);
  assert.equal(
    metric(m, 'ami_guard_security_events_total'),
    [...expected.values()].reduce((a, b) => a + b, 0),
  );
  assert.equal(metric(m, 'ami_guard_ami_reconnects_total'), 1);
  const gapSeconds = metric(m, 'ami_guard_ami_gap_seconds_total') ?? 0;
  assert.ok(gapSeconds > 0, 'the gap is counted');
  assert.equal(metric(m, 'ami_guard_ami_connected'), 1);

  const lost = await bed.daemon.waitForLog((l) => l.msg === 'AMI connection lost; reconnecting');
  assert.equal(lost.reason, 'closed');
  const back = await bed.daemon.waitForLog((l) => l.msg === 'AMI reconnected; events Asterisk sent during the gap were not seen');
  assert.equal(typeof back.gapMs, 'number');
  t.diagnostic(`gap ${String(back.gapMs)} ms between Shutdown and the new login`);

  // in Redis: the phone's two challenges were answered by its two logins, once each
  const client = new Redis(redis.url);
  t.after(async () => {
    await client.quit();
  });
  const window = await windowState(client, 'ami-guard:', '198.18.0.20');
  assert.deepEqual(window, null, 'no challenge pending, no failure: no window at all');
  assert.ok((await readRecord(client, 'ami-guard:', '198.18.0.20')).t, 'trusted');
});
