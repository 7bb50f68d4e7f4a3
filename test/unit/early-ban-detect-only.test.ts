// In detect-only mode nothing reached the kernel, so an early ban the store does not answer for is dropped, not
// "lifted": the log line says so, with the same event name operators alert on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/load.js';
import { Policy } from '../../src/policy/policy.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { failure, memoryDaemon, until } from '../support/memory-daemon.js';

for (const detectOnly of [true, false]) {
  test(`an early ban the store could not answer for is ${detectOnly ? 'dropped (detect-only)' : 'lifted'}, and the log says which`, async () => {
    const policy = new Policy(loadConfig({ env: {} }).policy);
    const store = new MemoryStore({ nodeId: 'test', policy: policy.params });
    // the store answers the first four failures (the fourth leaves the address on the brink), then fails
    const record = store.recordActivity.bind(store);
    let calls = 0;
    store.recordActivity = (batch, now) => (++calls <= 4 ? record(batch, now) : Promise.reject(new Error('store unreachable')));
    const { daemon, firewall, lines } = await memoryDaemon(policy, store, { detectOnly });
    const attacker = '198.51.100.77';
    for (let i = 1; i <= 4; i++) {
      daemon.onBatch({ events: [failure(attacker)], injections: [] });
      await until(`store call ${i} answered`, () => (calls >= i ? true : undefined));
      await new Promise((r) => setTimeout(r, 20));
    }
    daemon.onBatch({ events: [failure(attacker)], injections: [] });
    // placed at once, before the store was asked
    assert.ok(
      (await firewall.list()).some((e) => e.address === attacker),
      'the early ban placed',
    );

    const line = await until('the withdrawal logged', () => lines.find((l) => l.event === 'early-ban-withdrawn'));
    assert.equal(line['address'], attacker);
    assert.equal(line['why'], 'the store could not be asked');
    if (detectOnly) assert.match(String(line['msg']), /^dropped the would-be ban of 198\.51\.100\.77 .*\(detect-only\)/);
    else assert.match(String(line['msg']), /^lifted the ban placed on 198\.51\.100\.77/);
    assert.ok(!(await firewall.list()).some((e) => e.address === attacker), 'nothing held for it');
  });
}
