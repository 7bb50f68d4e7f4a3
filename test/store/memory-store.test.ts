import { recordFailure } from '../../src/store/activity.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { afterEviction } from '../../src/evict-oldest.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { NODE, POLICY, T0, failure, hostAddress, storeContract, target } from './contract.js';

storeContract('MemoryStore', () => async (policy) => new MemoryStore({ nodeId: NODE, policy }));

describe('MemoryStore bounds', () => {
  it('holds at most maxAddresses entries per table, and a failure flood does not evict bans', async () => {
    const store = new MemoryStore({ nodeId: NODE, policy: POLICY, maxAddresses: 1_000 });
    try {
      for (let i = 0; i < 10; i++) {
        await store.ban({ target: target(`198.51.100.${i}`), reason: 'keep', durationMs: 60_000, now: T0 });
      }
      for (let i = 0; i < 5_000; i++) await recordFailure(store, failure(hostAddress(i), T0));
      // never above the bound; once past it, the oldest 1/64 go at once
      const bounded = (n: number): boolean => n <= 1_000 && n >= afterEviction(1_000);
      assert.ok(bounded(store.sizes().windows), `${store.sizes().windows} windows`);
      // the newest windows are the ones kept
      assert.deepEqual(await recordFailure(store, failure(hostAddress(4_999), T0 + 1)), { type: 'counted', count: 2 });
      assert.deepEqual(await recordFailure(store, failure(hostAddress(0), T0 + 1)), { type: 'counted', count: 1 });
      for (let i = 0; i < 10; i++) assert.ok(await store.getBan(target(`198.51.100.${i}`), T0 + 1));

      for (let i = 0; i < 1_500; i++) {
        await store.ban({ target: target(hostAddress(100_000 + i)), reason: 'bulk', durationMs: 60_000, now: T0 });
      }
      const { bans, histories } = store.sizes();
      assert.ok(bounded(bans), `${bans} bans`);
      assert.ok(bounded(histories), `${histories} histories`);
      assert.ok(await store.getBan(target(hostAddress(100_000 + 1_499)), T0 + 1));
      assert.equal(await store.getBan(target(hostAddress(100_000)), T0 + 1), null);
    } finally {
      await store.close();
    }
  });

  it('sweeps expired entries on its timer', async () => {
    let clock = Date.now();
    const store = new MemoryStore({ nodeId: NODE, policy: POLICY, sweepIntervalMs: 10, clock: () => clock });
    try {
      for (let i = 0; i < 100; i++) await recordFailure(store, failure(hostAddress(i), T0));
      await store.ban({ target: target('192.0.2.1'), reason: 'r', durationMs: POLICY.bantimeMs, now: T0 });
      assert.deepEqual(store.sizes(), { windows: 100, bans: 1, histories: 1 });
      clock += POLICY.findtimeMs;
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(store.sizes(), { windows: 0, bans: 1, histories: 1 });
      clock += POLICY.historyTtlMs;
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(store.sizes(), { windows: 0, bans: 0, histories: 0 });
    } finally {
      await store.close();
    }
  });
});
