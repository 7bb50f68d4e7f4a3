// ami-guard as a service: /metrics and /healthz over real HTTP from the real daemon, health that follows a stopped
// Redis, a lost AMI login and a deleted table, SIGTERM in the middle of an attack, and the log format by terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { startBed, markerEvents, FIXTURES, AMI_SECRET } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { CLI, writeConfig } from '../support/daemon-process.js';
import { freePort, getHealth, getText, metric, parseMetrics } from '../support/http.js';
import type { HealthReport } from '../../src/http/health.js';
import { indexMembers, readRecord, recordKey } from '../support/redis-layout.js';

interface Truth {
  sources: Array<{ ami_events: Record<string, number> }>;
}

const SECOND_MARKER = '192.0.2.251';

function bogusEvent(): string {
  return (
    'Event: InvalidPassword\r\nPrivilege: security,all\r\nEventTV: 2026-11-21T19:25:18.477+0000\r\nSeverity: Error\r\nService: SIP\r\nEventVersion: 2\r\n' +
    'AccountID: 6001\r\nSessionID: 0x7f6bc409f790\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\nRemoteAddress: IPV4/UDP/999.1.1.1/5060\r\n\r\n'
  );
}

async function health(base: string): Promise<{ status: number; report: HealthReport }> {
  const h = await getHealth(base);
  assert.equal(h.type, 'application/json');
  return h;
}

/** Polls /healthz until it answers `status` (bounded), and returns the report; a listener not up yet is polled on. */
async function healthBecomes(base: string, status: number, what: string): Promise<HealthReport> {
  return waitFor(
    what,
    async () => {
      const h = await health(base).catch(() => undefined);
      return h?.status === status ? h.report : undefined;
    },
    20_000,
  );
}

test('/metrics counts what happened and /healthz follows Redis, AMI and the nft table', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    config: { http: { port }, ami: { reconnectMax: '1s' } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  // the bogus event goes before a second marker: once that marker is banned, the bogus event has been handled
  bed.replay.inject(bogusEvent());
  bed.replay.inject(markerEvents(5, SECOND_MARKER));
  await waitFor('the second marker ban', async () => ((await bed.elements()).includes(SECOND_MARKER) ? true : undefined), 20_000);

  const up = await healthBecomes(base, 200, '/healthz to answer 200');
  assert.equal(up.status, 'ok');
  assert.deepEqual(up.down, []);
  assert.deepEqual(up.ami, { connected: true });
  assert.equal(up.store.kind, 'redis');
  assert.equal(up.store.ok, true);
  assert.equal(typeof up.store.rttMs, 'number');
  assert.deepEqual(up.firewall, { present: true });

  const started = performance.now();
  const scrape = await getText(`${base}/metrics`);
  const ms = performance.now() - started;
  assert.equal(scrape.status, 200);
  assert.match(scrape.type ?? '', /^text\/plain/);
  t.diagnostic(`/metrics: ${scrape.body.length} bytes in ${ms.toFixed(1)} ms`);
  const m = parseMetrics(scrape.body);

  // every security event of the recording, by kind, plus the two markers' InvalidPassword events
  const truth = JSON.parse(readFileSync(join(FIXTURES, 'register-bruteforce.truth.json'), 'utf8')) as Truth;
  const expected = new Map<string, number>([['InvalidPassword', 10]]);
  for (const s of truth.sources) for (const [kind, n] of Object.entries(s.ami_events)) expected.set(kind, (expected.get(kind) ?? 0) + n);
  for (const [kind, n] of expected) assert.equal(metric(m, 'ami_guard_security_events_total', { kind }), n, kind);
  assert.equal(
    metric(m, 'ami_guard_security_events_total'),
    [...expected.values()].reduce((a, b) => a + b, 0),
  );
  assert.equal(metric(m, 'ami_guard_security_events_total', { kind: 'ChallengeResponseFailed', service: 'PJSIP' }), 200);

  const elements = await bed.elements();
  assert.deepEqual(elements, ['192.0.2.250', SECOND_MARKER, '198.18.0.11'].sort());
  assert.equal(metric(m, 'ami_guard_bans_total', { reason: 'failures' }), elements.length);
  assert.equal(metric(m, 'ami_guard_active_bans', { family: 'ipv4' }), elements.length);
  assert.equal(metric(m, 'ami_guard_active_bans', { family: 'ipv6' }), 0);
  assert.equal(metric(m, 'ami_guard_events_invalid_total', { reason: 'bad-address' }), 1);
  assert.equal(metric(m, 'ami_guard_ami_connected'), 1);
  assert.equal(metric(m, 'ami_guard_ami_reconnects_total'), 0);
  assert.ok((metric(m, 'ami_guard_nft_apply_seconds_count', { op: 'reconcile' }) ?? 0) >= 1, 'the start-up reconciliation is timed');
  assert.ok((metric(m, 'ami_guard_nft_apply_seconds_count', { op: 'add' }) ?? 0) >= elements.length, 'every ban is timed');
  assert.equal(
    metric(m, 'ami_guard_ban_latency_seconds_count'),
    elements.length,
    `every ban timed from its AMI read, once: early ${metric(m, 'ami_guard_ban_latency_seconds_count', { path: 'early' })}, ` +
      `store ${metric(m, 'ami_guard_ban_latency_seconds_count', { path: 'store' })}, early bans confirmed ` +
      `${metric(m, 'ami_guard_early_bans_total', { outcome: 'confirmed' })}, withdrawn ${metric(m, 'ami_guard_early_bans_total', { outcome: 'withdrawn' })}\n` +
      bed.daemon.output().slice(-6000),
  );
  assert.ok((metric(m, 'ami_guard_store_ping_seconds_count') ?? 0) >= 1, 'the store is pinged');
  assert.ok((metric(m, 'ami_guard_failures_total', { kind: 'ChallengeResponseFailed' }) ?? 0) >= 5);
  // counters are there at 0 before their first event, with their known label values
  assert.equal(metric(m, 'ami_guard_webhook_notifications_total', { result: 'sent' }), 0, 'no webhook configured, nothing sent');
  assert.equal(metric(m, 'ami_guard_unbans_total', { source: 'fleet' }), 0);
  assert.equal(metric(m, 'ami_guard_bans_total', { reason: 'scanner' }), 0);
  assert.equal(metric(m, 'ami_guard_security_events_total', { kind: 'SessionLimit', service: 'AMI' }), 0);
  // the build, the parts /healthz checks, and the process metrics under their usual names
  assert.equal(metric(m, 'ami_guard_build_info', { node: 'test-node' }), 1);
  assert.equal(metric(m, 'ami_guard_store_up'), 1);
  assert.equal(metric(m, 'ami_guard_firewall_up'), 1);
  for (const name of [
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
    'nodejs_heap_size_used_bytes',
    'nodejs_eventloop_lag_p99_seconds',
  ]) {
    assert.ok((metric(m, name) ?? 0) > 0, name);
  }
  assert.doesNotMatch(scrape.body, /^# TYPE \S+_total gauge$/m, 'a gauge named like a counter');
  // attacker-controlled text never becomes a label value
  assert.ok(!scrape.body.includes('6001'), 'an account id in /metrics');

  assert.equal((await getText(`${base}/nothing`)).status, 404);
  assert.equal((await getText(`${base}/metrics`, { method: 'POST' })).status, 405);
  assert.equal((await getText(`${base}/healthz?verbose=1`, { method: 'HEAD' })).status, 200);

  // a hung Redis: the store is down and only the store
  redis.pause();
  const hung = await healthBecomes(base, 503, '/healthz to notice the stopped Redis');
  assert.equal(hung.status, 'down');
  assert.deepEqual(hung.down, ['store']);
  assert.equal(hung.store.ok, false);
  assert.equal(hung.store.rttMs, null);
  assert.equal(metric(parseMetrics((await getText(`${base}/metrics`)).body), 'ami_guard_store_up'), 0);
  redis.resume();
  const back = await healthBecomes(base, 200, '/healthz to see Redis again');
  assert.equal(back.store.ok, true);

  // Asterisk refuses the login now: AMI is down
  bed.replay.setCredentials('ami-guard', 'another-secret');
  bed.replay.drop();
  const noAmi = await healthBecomes(base, 503, '/healthz to notice the lost AMI login');
  assert.deepEqual(noAmi.down, ['ami']);
  bed.replay.setCredentials('ami-guard', AMI_SECRET);
  await healthBecomes(base, 200, '/healthz to see AMI again');
  const reconnects = metric(parseMetrics((await getText(`${base}/metrics`)).body), 'ami_guard_ami_reconnects_total');
  assert.equal(reconnects, 1);

  // someone deletes our table: the firewall is down
  await bed.ns.execOk('nft', ['delete', 'table', 'inet', bed.table]);
  const noTable = await healthBecomes(base, 503, '/healthz to notice the deleted table');
  assert.deepEqual(noTable.down, ['firewall']);
  assert.deepEqual(noTable.firewall, { present: false });
  await bed.daemon.waitForLog((l) => l.msg === 'health: nft table missing or incomplete');
  assert.equal(metric(parseMetrics((await getText(`${base}/metrics`)).body), 'ami_guard_firewall_up'), 0);
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon keeps running');
});

test('with the embedded store /healthz reports kind memory, and http.port 0 turns the listener off', async (t) => {
  const port = await freePort();
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', config: { http: { port } } });
  const up = await healthBecomes(`http://127.0.0.1:${port}`, 200, '/healthz to answer 200');
  assert.deepEqual(up.store, { kind: 'memory', ok: true, rttMs: 0 });

  const off = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', ns: bed.ns, config: { http: { port: 0 } } });
  await off.daemon.waitForLog((l) => l.msg === 'http listener off (http.port is 0)');
  assert.ok(!off.daemon.logs.some((l) => /http listening/.test(l.msg)));
});

test('SIGTERM in the middle of an attack: exit 0, the ban stays in the kernel and in Redis', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'term:',
    speed: 1,
    config: { http: { port: await freePort() } },
  });
  await bed.daemon.waitForLog((l) => l.event === 'ban' && l.address === '198.18.0.11', 30_000);
  let done = false;
  void bed.replay.playDone.then(() => (done = true));
  assert.ok(!done && bed.replay.sent.events < 200, `the replay is still playing (${bed.replay.sent.events} events sent)`);

  assert.equal(await bed.daemon.stop('SIGTERM'), 0);
  assert.ok(!done, 'stopped before the recording ended');
  assert.ok(bed.daemon.logs.some((l) => l.msg === 'stopped'));
  assert.ok(!bed.daemon.logs.some((l) => /took too long/.test(l.msg)), 'shut down within its deadline');
  assert.ok((await bed.elements()).includes('198.18.0.11'), 'the ban is still in the kernel set');

  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  t.after(() => client.quit().then(() => undefined));
  await client.connect();
  const ban = await readRecord(client, 'term:', '198.18.0.11');
  assert.equal(ban.r, 'failures');
  assert.ok(Number.parseInt(ban.u ?? '0', 36) - Date.now() > 3_000_000, 'the ban keeps its bantime');
  assert.ok((await client.pttl(recordKey('term:', '198.18.0.11'))) > 3_000_000, 'the record outlives the ban');
  assert.ok(
    (await indexMembers(client, 'term:')).some((m) => m.address === '198.18.0.11'),
    'the ban is in the index reconciliation reads',
  );
});

test('logs: JSON lines on a pipe, readable lines on a terminal', async (t) => {
  // a port in use fails the start right after the first log lines, before anything touches nft
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as { port: number }).port;
  const cfg = writeConfig({ ami: { port: 1, secret: AMI_SECRET }, http: { port }, node: { id: 'log-test' } });

  const piped = spawnSync(process.execPath, [CLI, 'run', '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(piped.status, 1);
  const lines = piped.stdout.split('\n').filter((l) => l.trim());
  assert.ok(lines.length >= 2);
  const parsed = lines.map((l) => JSON.parse(l) as { msg: string; err?: string; findtime?: unknown; bantime?: unknown });
  // durations in the words of the configuration and of every other line, not a bare 600
  const starting = parsed.find((l) => l.msg === 'ami-guard starting');
  assert.equal(starting?.findtime, '10m');
  assert.equal(starting?.bantime, '1h');
  const failure = parsed.find((l) => l.msg === 'ami-guard could not start');
  assert.match(failure?.err ?? '', new RegExp(`cannot listen on 127\\.0\\.0\\.1 port ${port}: EADDRINUSE`));

  // script(1) gives the daemon a pseudo-terminal as stdout
  const command = [process.execPath, CLI, 'run', '--config', cfg].map((a) => `'${a}'`).join(' ');
  const tty = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  tty.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const killer = setTimeout(() => tty.kill('SIGKILL'), 20_000);
    tty.on('exit', (c) => {
      clearTimeout(killer);
      resolve(c);
    });
  });
  assert.equal(code, 1);
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  // one event, one line: the fields follow the message as JSON on the same line
  assert.match(plain, /INFO.*ami-guard starting \{"node":"log-test",.*"findtime":"10m","bantime":"1h"/);
  assert.match(plain, /ERROR.*ami-guard could not start/);
  assert.ok(!plain.split(/\r?\n/).some((l) => l.startsWith('{')), `JSON on a terminal:\n${plain}`);
});
