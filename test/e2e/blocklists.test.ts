// Community blocklists with the real daemon, real nft in a namespace, and a local HTTP server playing APIBAN and
// serving plain lists: what reaches the kernel, what never does, what leaves it, and what a failing feed changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, writeConfig } from '../support/daemon-process.js';
import { startBed, type Bed } from '../support/bed.js';
import { startFeedServer, type FeedServer } from '../support/feed-server.js';
import { waitFor } from '../support/netns.js';
import { freePort, getText, metric, parseMetrics } from '../support/http.js';

const IGNORED = '203.0.113.77';

/** 203.0.113.0/24 less 203.0.113.77: the CIDR networks an ignore-listed address splits it into */
const SPLIT_24 = [
  '203.0.113.0/26',
  '203.0.113.64/29',
  '203.0.113.72/30',
  '203.0.113.76',
  '203.0.113.78/31',
  '203.0.113.80/28',
  '203.0.113.96/27',
  '203.0.113.128/25',
];

const LIST = [
  '# a VoIPBL-style list',
  '198.51.100.20',
  '203.0.113.0/24',
  '; a comment line',
  'this is garbage',
  '0.0.0.0/0',
  '10.0.0.0/33',
  '198.51.100.21 # trailing comment',
  '2001:db8:bb::/48',
  '198.51.100.22',
  '127.0.0.1',
  '',
].join('\n');

async function feedBed(
  t: { after: (fn: () => Promise<void>) => void },
  server: FeedServer,
  extra: Record<string, Record<string, unknown>> = {},
): Promise<Bed> {
  return startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    config: {
      policy: { ignoreip: ['127.0.0.0/8', '::1', IGNORED] },
      blocklists: {
        apiban: { url: server.apibanUrl, key: server.apibanKey, interval: '1s' },
        lists: [{ name: 'voipbl', url: server.listUrl('voipbl'), interval: '1s' }],
        timeout: '5s',
      },
      ...extra,
    },
  });
}

async function inKernel(bed: Bed, want: readonly string[], not: readonly string[] = [], what = 'the feed entries'): Promise<string[]> {
  try {
    return await waitFor(
      what,
      async () => {
        const els = new Set(await bed.elements());
        return want.every((a) => els.has(a)) && not.every((a) => !els.has(a)) ? [...els] : undefined;
      },
      30_000,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}; kernel: ${(await bed.elements()).join(' ')}; daemon output:\n${bed.daemon.output().slice(-5000)}`,
    );
  }
}

test('APIBAN pages and a plain list reach the kernel; garbage, 0.0.0.0/0 and ignore-listed addresses never do', async (t) => {
  const server = await startFeedServer();
  t.after(() => server.stop());
  const first = server.addBans(['198.51.100.10', '198.51.100.11', 'not-an-ip', 42, '0.0.0.0/0']);
  const second = server.addBans(['2001:db8:aa::1', '198.51.100.12', IGNORED, '127.0.0.1']);
  server.setList('voipbl', LIST);
  const port = await freePort();
  const bed = await feedBed(t, server, { http: { port } });

  const apiban = ['198.51.100.10', '198.51.100.11', '198.51.100.12', '2001:db8:aa::1'];
  const list = ['198.51.100.20', '198.51.100.21', '198.51.100.22', '2001:db8:bb::/48', ...SPLIT_24];
  const els = await inKernel(bed, [...apiban, ...list]);
  for (const never of [IGNORED, '203.0.113.0/24', '0.0.0.0/0', '127.0.0.1', '10.0.0.0/33'])
    assert.ok(!els.includes(never), `${never} in the kernel`);
  assert.equal(els.length, apiban.length + list.length, `exactly the feeds' entries: ${els.join(' ')}`);

  // APIBAN was asked from "100", then from each page's ID; the next pulls start from the last one
  const ids = server.apibanRequests.map((r) => r.id);
  assert.deepEqual(ids.slice(0, 3), ['100', first, second]);
  await waitFor('a second APIBAN pull', () => (server.apibanRequests.length > 3 ? true : undefined), 15_000);
  assert.equal(server.apibanRequests[3]!.id, second, 'the next pull starts from the last ID');
  assert.ok(server.apibanRequests.every((r) => r.authorization === `Bearer ${server.apibanKey}`));

  // an APIBAN entry is held for bantime (7 days) from when it was seen; a list entry for two intervals, at least 1 h
  const timeouts = new Map((await bed.firewall.list()).map((e) => [e.address, e.expiresMs]));
  const day = 86_400_000;
  assert.ok(timeouts.get('198.51.100.10')! > 6.9 * day && timeouts.get('198.51.100.10')! <= 7 * day, String(timeouts.get('198.51.100.10')));
  assert.ok(
    timeouts.get('198.51.100.20')! > 3_500_000 && timeouts.get('198.51.100.20')! <= 3_600_000,
    String(timeouts.get('198.51.100.20')),
  );

  // an entry dropped from the list leaves the kernel at the next pull; a new APIBAN page arrives
  server.setList('voipbl', LIST.replace('198.51.100.22\n', ''));
  server.addBans(['198.51.100.13']);
  await inKernel(bed, ['198.51.100.20', '198.51.100.13', ...apiban], ['198.51.100.22'], '198.51.100.22 gone, 198.51.100.13 in');

  const samples = parseMetrics((await getText(`http://127.0.0.1:${port}/metrics`)).body);
  assert.equal(metric(samples, 'ami_guard_feed_entries', { feed: 'apiban' }), 5);
  assert.equal(metric(samples, 'ami_guard_feed_entries', { feed: 'voipbl' }), 2 + 1 + SPLIT_24.length);
  assert.equal(metric(samples, 'ami_guard_feed_skipped', { feed: 'voipbl', why: 'garbage' }), 2);
  assert.equal(metric(samples, 'ami_guard_feed_skipped', { feed: 'voipbl', why: 'too-wide' }), 1);
  assert.equal(metric(samples, 'ami_guard_feed_skipped', { feed: 'voipbl', why: 'refused' }), 1, '127.0.0.1');
  assert.equal(metric(samples, 'ami_guard_feed_skipped', { feed: 'voipbl', why: 'split' }), 1, '203.0.113.0/24');
  assert.equal(metric(samples, 'ami_guard_feed_skipped', { feed: 'apiban', why: 'refused' }), 2, `${IGNORED} and 127.0.0.1`);
  assert.ok(metric(samples, 'ami_guard_feed_pulls_total', { feed: 'voipbl' })! >= 2);
  assert.equal(metric(samples, 'ami_guard_feed_errors_total', { feed: 'apiban' }), 0);
  assert.ok(metric(samples, 'ami_guard_feed_last_success_timestamp_seconds', { feed: 'apiban' })! > Date.now() / 1000 - 60);
});

test('a feed that fails, answers garbage or is rate-limited changes nothing enforced, and is retried until it works', async (t) => {
  const server = await startFeedServer();
  t.after(() => server.stop());
  server.addBans(['198.51.100.10']);
  server.setList('voipbl', '198.51.100.20\n198.51.100.21\n');
  const bed = await feedBed(t, server);
  const enforced = ['198.51.100.10', '198.51.100.20', '198.51.100.21'];
  await inKernel(bed, enforced);

  const failures = (kind: string, feed: string) =>
    bed.daemon.logs.filter((l) => l.msg === 'feed pull failed; what is enforced stays' && l.kind === kind && l.feed === feed).length;
  const failed = async (kind: string, feed: string, after = failures(kind, feed)): Promise<void> => {
    await bed.daemon.waitForLog(() => failures(kind, feed) > after, 20_000);
  };
  for (const mode of ['garbage', 'bad-page', 'rate-limit', 'http-500'] as const) {
    const before = failures(mode === 'bad-page' ? 'garbage' : mode === 'http-500' ? 'fetch' : mode, 'apiban');
    server.mode = mode;
    await failed(mode === 'bad-page' ? 'garbage' : mode === 'http-500' ? 'fetch' : mode, 'apiban', before);
  }
  server.removeList('voipbl');
  await failed('fetch', 'voipbl');
  server.setList('voipbl', Buffer.alloc(70 * 1024 * 1024, '9'));
  await failed('too-big', 'voipbl');
  assert.deepEqual(
    (await bed.elements()).filter((a) => enforced.includes(a)).sort(),
    [...enforced].sort(),
    'every failure left the entries in force',
  );

  // back to normal: the next tries (backoff from a fraction of the interval) pick up what changed meanwhile
  server.mode = 'normal';
  server.addBans(['198.51.100.13']);
  server.setList('voipbl', '198.51.100.21\n198.51.100.23\n');
  await inKernel(bed, ['198.51.100.10', '198.51.100.13', '198.51.100.21', '198.51.100.23'], ['198.51.100.20'], 'the feeds recovered');
  // failures in a row back off from an eighth of the interval (at least 250 ms), doubling up to the interval
  const retried = bed.daemon.logs
    .filter((l) => l.msg === 'feed pull failed; what is enforced stays' && l.feed === 'apiban')
    .map((l) => Number(l.retryInMs));
  assert.deepEqual(retried.slice(0, 3), [250, 500, 1000], retried.join(' '));
  assert.ok(
    retried.every((ms) => ms === 1000 || retried.indexOf(ms) < 3),
    retried.join(' '),
  );
});

test('APIBAN paging stopped by a rate limit keeps the pages it read and goes on from there', async (t) => {
  const server = await startFeedServer();
  t.after(() => server.stop());
  const first = server.addBans(['198.51.100.10']);
  server.addBans(['198.51.100.11']);
  server.mode = 'rate-limit-after-first';
  server.setList('voipbl', '');
  const bed = await feedBed(t, server);
  await inKernel(bed, ['198.51.100.10'], [], 'the first page');
  await bed.daemon.waitForLog((l) => l.msg === 'feed pull stopped early; what it read is kept' && l.kind === 'rate-limit');
  assert.ok(!(await bed.elements()).includes('198.51.100.11'));
  server.mode = 'normal';
  await inKernel(bed, ['198.51.100.10', '198.51.100.11'], [], 'the second page after the rate limit');
  const afterLimit = server.apibanRequests.slice(2).map((r) => r.id);
  assert.ok(afterLimit.includes(first) && !afterLimit.includes('100'), `later pulls start after the page kept: ${afterLimit.join(' ')}`);
});

test('a wrong APIBAN key from keyFile: refused clearly, nothing applied, the key never printed', async (t) => {
  const server = await startFeedServer();
  t.after(() => server.stop());
  server.addBans(['198.51.100.10']);
  server.setList('voipbl', '198.51.100.20\n');
  const wrong = 'wrong-key-3b7f0e91a2';
  const dir = mkdtempSync(join(tmpdir(), 'ag-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'apiban.key'), `${wrong}\n`, { mode: 0o600 });
  const port = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    config: {
      http: { port },
      log: { level: 'debug' },
      blocklists: {
        apiban: { url: server.apibanUrl, keyFile: join(dir, 'apiban.key'), interval: '1s' },
        lists: [{ name: 'voipbl', url: server.listUrl('voipbl'), interval: '1s' }],
      },
    },
  });
  await inKernel(bed, ['198.51.100.20'], [], 'the list, whatever APIBAN says');
  const refused = await bed.daemon.waitForLog((l) => l.msg === 'feed pull failed; what is enforced stays' && l.kind === 'unauthorized');
  assert.match(String(refused.err), /refused the key \(unauthorized\): check blocklists\.apiban\.key/);
  assert.ok(
    server.apibanRequests.some((r) => r.authorization === `Bearer ${wrong}`),
    'the key from the file was sent, in the header',
  );
  assert.ok(!(await bed.elements()).includes('198.51.100.10'));
  const metrics = (await getText(`http://127.0.0.1:${port}/metrics`)).body;
  assert.ok(metric(parseMetrics(metrics), 'ami_guard_feed_errors_total', { feed: 'apiban' })! >= 1);
  await bed.daemon.stop();
  assert.ok(!bed.daemon.output().includes(wrong), 'the key in the daemon output');
  assert.ok(!metrics.includes(wrong));
});

test('an unreadable keyFile stops the daemon at start, naming the file', () => {
  const cfg = writeConfig({ blocklists: { apiban: { keyFile: '/nonexistent/apiban.key' } }, nft: { netns: 'none' }, http: { port: 0 } });
  const r = spawnSync(process.execPath, [CLI, 'run', '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.match(r.stdout, /cannot read blocklists\.apiban\.keyFile \/nonexistent\/apiban\.key: ENOENT/);
});
