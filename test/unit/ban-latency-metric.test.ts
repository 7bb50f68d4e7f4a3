// ami_guard_ban_latency_seconds: each ban of an attack is observed once its element is in the firewall, under the
// path that placed it: early (on the store's brink, as the failure was read) or store (on the store's verdict).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/load.js';
import type { Metrics } from '../../src/metrics.js';
import { Policy } from '../../src/policy/policy.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { ActivityVerdict, TargetActivity } from '../../src/store/store.js';
import { failure, memoryDaemon, until } from '../support/memory-daemon.js';

/** count and sum of the histogram for `path` */
async function observed(metrics: Metrics, path: string): Promise<{ count: number; sum: number }> {
  const { values } = await metrics.banLatency.get();
  const pick = (name: string): number =>
    values.find((v) => v.metricName === `ami_guard_ban_latency_seconds_${name}` && v.labels.path === path)?.value ?? NaN;
  return { count: pick('count'), sum: pick('sum') };
}

test('a guesser banned on the brink is timed as early, a burst banned on the verdict as store', async () => {
  const policy = new Policy(loadConfig({ env: {} }).policy);
  const store = new MemoryStore({ nodeId: 'test', policy: policy.params });
  const { daemon, firewall, metrics } = await memoryDaemon(policy, store);
  assert.deepEqual(await observed(metrics, 'early'), { count: 0, sum: 0 }, 'both paths are exported before any ban');
  assert.deepEqual(await observed(metrics, 'store'), { count: 0, sum: 0 });

  // one failure per read, each answered before the next: the fourth leaves the address on the brink
  const guesser = '198.51.100.77';
  for (let i = 1; i <= 4; i++) {
    daemon.onBatch({ events: [failure(guesser)], injections: [] });
    await daemon.idle();
  }
  assert.equal((await observed(metrics, 'early')).count, 0, 'no ban yet, nothing timed');
  daemon.onBatch({ events: [failure(guesser)], injections: [] });
  const early = await until('the early ban timed', async () => {
    const o = await observed(metrics, 'early');
    return o.count > 0 ? o : undefined;
  });
  assert.equal(early.count, 1);
  assert.ok(early.sum > 0 && early.sum < 5, `a duration in seconds (${early.sum})`);
  assert.ok((await firewall.list()).some((e) => e.address === guesser));
  await daemon.idle();
  assert.equal((await observed(metrics, 'store')).count, 0, "the store's confirmation is not timed again");

  // five failures in one read: nothing on the brink, the store's verdict bans
  const burst = '203.0.113.5';
  daemon.onBatch({ events: Array.from({ length: 5 }, () => failure(burst)), injections: [] });
  const verdict = await until('the verdict ban timed', async () => {
    const o = await observed(metrics, 'store');
    return o.count > 0 ? o : undefined;
  });
  assert.equal(verdict.count, 1);
  assert.ok((await firewall.list()).some((e) => e.address === burst));
  assert.equal((await observed(metrics, 'early')).count, 1);
  await daemon.stop();
});

/** A MemoryStore whose answers wait: each call is counted when released, in the order made, as Redis would run them. */
class HeldStore extends MemoryStore {
  private readonly held: Array<() => void> = [];
  override recordActivity(batch: readonly TargetActivity[], now: number): Promise<ActivityVerdict[]> {
    return new Promise((resolve, reject) => this.held.push(() => super.recordActivity(batch, now).then(resolve, reject)));
  }
  get waiting(): number {
    return this.held.length;
  }
  release(): void {
    this.held.shift()!();
  }
}

test('an early ban is timed once though a verdict already under way makes the same ban', async () => {
  const policy = new Policy(loadConfig({ env: {} }).policy);
  const store = new HeldStore({ nodeId: 'test', policy: policy.params });
  const { daemon, firewall, metrics } = await memoryDaemon(policy, store);
  const guesser = '198.51.100.78';
  const read = (): void => daemon.onBatch({ events: [failure(guesser)], injections: [] });
  for (let i = 1; i <= 3; i++) {
    read();
    store.release();
    await daemon.idle();
  }
  // the fourth and the fifth leave before either is answered
  read();
  read();
  assert.equal(store.waiting, 2);
  // the fourth's verdict: on the brink; the sixth, read now, places the ban early
  store.release();
  await new Promise((r) => setImmediate(r));
  read();
  await until('the early ban timed', async () => ((await observed(metrics, 'early')).count > 0 ? true : undefined));
  assert.ok((await firewall.list()).some((e) => e.address === guesser));
  // the fifth's verdict makes the ban the kernel already holds; the sixth's finds it made
  store.release();
  await until("the sixth's call", () => (store.waiting > 0 ? true : undefined));
  store.release();
  await daemon.idle();
  assert.equal((await observed(metrics, 'early')).count, 1);
  assert.equal((await observed(metrics, 'store')).count, 0, 'a ban in the kernel before its verdict is timed once');
  await daemon.stop();
});
