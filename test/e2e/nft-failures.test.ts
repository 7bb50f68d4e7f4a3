// nft missing, refused, or failing now and then. At start: one clear line and exit code 1. While running: a ban
// whose nft run failed is retried with backoff, counted and logged, and lands once nft works again; a ban nft keeps
// refusing is reported as an error and enforced by the next reconciliation, never silently dropped. These run the
// daemon with `nft.writer: spawn`, where nft.path names the binary, so a fake nft can stand in for the real one;
// the persistent writer's own failures (killed, refused, unanswered, no python3) are in test/firewall/nft-writer.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBed, markerEvents, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { played, bannedInKernel } from '../support/bed-wait.js';
import { freePort, getText, metric, parseMetrics } from '../support/http.js';
import type { LogLine } from '../support/daemon-process.js';

const ATTACKER = '198.51.100.77';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

function realNft(): string {
  const r = spawnSync('sh', ['-c', 'command -v nft'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status !== 0 || !path) throw new Error('nft not found: apt-get install -y nftables');
  return path;
}

/** A directory holding an executable `nft` with this shell body, removed when the test ends. */
function fakeNft(t: TestContext, body: string): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ag-nft-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'nft');
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return { dir, path };
}

function errorLines(logs: readonly LogLine[]): LogLine[] {
  return logs.filter((l) => l.level >= 50);
}

async function startRefused(t: TestContext, nftPath: string, netns: boolean): Promise<Bed> {
  return startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    config: { nft: { path: nftPath, writer: 'spawn', ...(netns ? {} : { netns: '' }) } },
  });
}

for (const netns of [true, false]) {
  const where = netns ? 'through nsenter into a namespace' : 'in our own namespace';
  test(`nft.path naming no binary (${where}): exit code 1 and one error line saying to install nftables`, async (t) => {
    const bed = await startRefused(t, '/nonexistent/sbin/nft', netns);
    assert.equal(await bed.daemon.exited, 1);
    const errors = errorLines(bed.daemon.logs);
    assert.equal(errors.length, 1, bed.daemon.output());
    assert.match(String(errors[0]!.err), /nft not found at \/nonexistent\/sbin\/nft: install the nftables package/);
  });
}

test('nft refused for lack of privilege: exit code 1 and one error line naming CAP_NET_ADMIN', async (t) => {
  const { path } = fakeNft(t, "echo 'Operation not permitted (you must be root)' >&2\nexit 1");
  for (const netns of [true, false]) {
    const bed = await startRefused(t, path, netns);
    assert.equal(await bed.daemon.exited, 1);
    const errors = errorLines(bed.daemon.logs);
    assert.equal(errors.length, 1, bed.daemon.output());
    assert.match(String(errors[0]!.err), /nft needs CAP_NET_ADMIN: run ami-guard as root or grant it CAP_NET_ADMIN/);
  }
});

/**
 * Real nft, except that the next N scripts adding elements fail as a busy kernel makes them fail; N is read from
 * `fail-adds` beside it. Everything else (listings, the start-up script) goes straight to nft.
 */
function flakyNft(t: TestContext): { path: string; failNextAdds: (n: number) => void } {
  const { dir, path } = fakeNft(
    t,
    `set -u
counter="$(dirname "$0")/fail-adds"
[ "\${1:-}" = "-f" ] || exec ${realNft()} "$@"
script="$(cat; echo .)"
script="\${script%.}"
n="$(cat "$counter")"
case "$script" in
  *"add element"*)
    if [ "$n" -gt 0 ]; then
      echo $((n - 1)) > "$counter"
      echo 'Error: Could not process rule: Device or resource busy' >&2
      exit 1
    fi;;
esac
printf '%s' "$script" | ${realNft()} "$@"`,
  );
  const failNextAdds = (n: number): void => writeFileSync(join(dir, 'fail-adds'), `${n}\n`);
  failNextAdds(0);
  return { path, failNextAdds };
}

async function metrics(port: number): Promise<{ retries?: number; errors?: number }> {
  const m = parseMetrics((await getText(`http://127.0.0.1:${port}/metrics`)).body);
  return { retries: metric(m, 'ami_guard_nft_retries_total'), errors: metric(m, 'ami_guard_firewall_errors_total') };
}

test('a ban whose nft runs fail three times is retried with backoff, logged, counted, and lands', async (t) => {
  const nft = flakyNft(t);
  const port = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'flaky:',
    config: { nft: { path: nft.path, writer: 'spawn' }, http: { host: '127.0.0.1', port } },
  });
  await played(bed);
  nft.failNextAdds(3);
  bed.replay.inject(markerEvents(5, ATTACKER));
  await bannedInKernel(bed, ATTACKER, 15_000, 'the ban to land after the retries');

  const retries = bed.daemon.logs.filter((l) => l.msg === 'nft ban failed; retrying');
  assert.deepEqual(
    retries.map((l) => [l.attempt, l.retryInMs]),
    [
      [1, 500],
      [2, 1000],
      [3, 2000],
    ],
  );
  for (const l of retries) {
    assert.deepEqual(l.addresses, [ATTACKER]);
    assert.match(String(l.err), /Device or resource busy/);
  }
  const landed = await bed.daemon.waitForLog((l) => l.msg === 'nft ban applied after retrying');
  assert.equal(landed.attempts, 4);
  assert.deepEqual(await metrics(port), { retries: 3, errors: 0 });
  const el = (await bed.firewall.list()).find((e) => e.address === ATTACKER);
  // the retry keeps the ban's end: a bantime of 1h less the 3.5 s spent retrying
  assert.ok(el && el.expiresMs !== null && el.expiresMs <= 3_597_000, `timeout ${el?.expiresMs}`);
});

test('a ban nft keeps refusing is given up after 5 tries with an error, counted, and enforced by the next reconciliation', async (t) => {
  const nft = flakyNft(t);
  const port = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    redisUrl: redis.url,
    keyPrefix: 'refused:',
    // the tries span 7.5 s from the injection, just after start-up; the first periodic reconciliation comes after
    config: { nft: { path: nft.path, writer: 'spawn' }, http: { host: '127.0.0.1', port }, fleet: { reconcileInterval: '20s' } },
  });
  await played(bed);
  nft.failNextAdds(5);
  bed.replay.inject(markerEvents(5, ATTACKER));
  const error = await bed.daemon.waitForLog((l) => l.msg === 'could not apply ban to nftables', 15_000);
  assert.equal(error.level, 50);
  assert.deepEqual(error.addresses, [ATTACKER]);
  assert.equal(bed.daemon.logs.filter((l) => l.msg === 'nft ban failed; retrying').length, 4);
  assert.deepEqual(await metrics(port), { retries: 4, errors: 1 });
  assert.ok(!(await bed.elements()).includes(ATTACKER));

  await bed.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store' && l.why === 'periodic', 25_000);
  await bannedInKernel(bed, ATTACKER, 5_000, 'the ban in the kernel after the reconciliation');
});
