// Someone else removes our table or empties its sets while the daemon runs: the nftables service flushes the whole
// ruleset when it restarts (fail2ban #2480), a firewall manager deletes what it does not know, an operator flushes a
// set by hand. The daemon must notice by itself and put the table and the bans back, with their remaining time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { startBed, MARKER, type Bed } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { freePort, getText, metric, parseMetrics } from '../support/http.js';

const ATTACKER = '198.18.0.11';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

async function restores(port: number): Promise<number | undefined> {
  return metric(parseMetrics((await getText(`http://127.0.0.1:${port}/metrics`)).body), 'ami_guard_nft_restores_total');
}

/** Breaks the table with `nft <args>` in the namespace; returns how long until the attacker's ban was enforced again. */
async function breakAndWait(bed: Bed, args: string[], what: string): Promise<number> {
  const seen = bed.daemon.logs.length;
  await bed.ns.execOk('nft', args);
  const t0 = performance.now();
  const enforced = async (): Promise<boolean> => (await bed.firewall.present()) && (await bed.elements()).includes(ATTACKER);
  // no check that the ban is gone first: the writer repairs within milliseconds of noticing, which can be sooner than
  // a look from here (a few spawned nft runs); the warning the caller waits for says what was found missing
  await waitFor(`${what}: the ban enforced again`, async () => ((await enforced()) ? true : undefined), 15_000);
  const ms = performance.now() - t0;
  assert.deepEqual((await bed.elements()).sort(), [ATTACKER, MARKER].sort());
  const el = (await bed.firewall.list()).find((e) => e.address === ATTACKER);
  // the remaining ban time from the store, not a fresh hour
  assert.ok(el && el.expiresMs !== null && el.expiresMs > 3_000_000 && el.expiresMs < 3_600_000, `${what}: timeout ${el?.expiresMs}`);
  await bed.daemon.waitForLog(
    (l) => bed.daemon.logs.indexOf(l) >= seen && l.msg === 'reconciled firewall with store' && l.why === 'nft table restored',
  );
  return ms;
}

test('flushed ruleset, deleted table, emptied set: the table and the ban come back by themselves', async (t) => {
  const port = await freePort();
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'wd:',
    config: { nft: { checkInterval: '1s' }, http: { host: '127.0.0.1', port } },
  });
  assert.deepEqual(await bed.settle(), [ATTACKER]);
  // a few checks on an intact table (and a health check): nothing to restore, and no process started for them,
  // the persistent nft writer being the daemon's only child throughout
  const writer = await children(bed.daemon.child.pid!);
  assert.equal(writer.length, 1, `children: ${writer.join(', ')}`);
  const started = await startedProcesses(bed.daemon.child.pid!);
  await new Promise((r) => setTimeout(r, 5_500));
  assert.equal(await restores(port), 0);
  assert.deepEqual(await children(bed.daemon.child.pid!), writer);
  assert.equal(await startedProcesses(bed.daemon.child.pid!), started, 'no process started for the checks');

  const cases: Array<[string, string[], string[]]> = [
    ['nft flush ruleset', ['flush', 'ruleset'], ['table inet ami_guard']],
    ['nft delete table inet ami_guard', ['delete', 'table', 'inet', 'ami_guard'], ['table inet ami_guard']],
    ['nft flush set inet ami_guard banned_v4', ['flush', 'set', 'inet', 'ami_guard', 'banned_v4'], ['elements of set banned_v4']],
    ['nft flush chain inet ami_guard prerouting', ['flush', 'chain', 'inet', 'ami_guard', 'prerouting'], ['drop rule for @banned_v4']],
  ];
  for (const [what, args, missing] of cases) {
    const seen = bed.daemon.logs.length;
    const ms = await breakAndWait(bed, args, what);
    t.diagnostic(`${what}: ban enforced again after ${Math.round(ms)} ms (nft.checkInterval 1s)`);
    const warning = await bed.daemon.waitForLog((l) => bed.daemon.logs.indexOf(l) >= seen && l.level === 40 && Array.isArray(l.missing));
    assert.match(warning.msg, /changed by someone else/);
    for (const m of missing) assert.ok((warning.missing as string[]).includes(m), `${what}: ${JSON.stringify(warning.missing)}`);
  }
  assert.equal(await restores(port), cases.length);
  assert.equal(bed.daemon.child.exitCode, null);
});

test('with the default nft.checkInterval (5s) a flushed ruleset is repaired within about 5 s', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'register-bruteforce', redisUrl: redis.url, keyPrefix: 'wd5:' });
  assert.deepEqual(await bed.settle(), [ATTACKER]);
  const ms = await breakAndWait(bed, ['flush', 'ruleset'], 'nft flush ruleset');
  t.diagnostic(`nft flush ruleset: ban enforced again after ${Math.round(ms)} ms (default nft.checkInterval)`);
  assert.ok(ms < 8_000, `${Math.round(ms)} ms`);
});

/** pids of a process's children, from every one of its threads */
async function children(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return out.sort((a, b) => a - b);
}

/**
 * A figure that moves whenever a process has started a child and waited for it: the minor page faults of its
 * waited-for children (cminflt), which every exec'd program adds to by the hundreds.
 */
async function startedProcesses(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[8]);
}
