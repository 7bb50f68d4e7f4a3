// A reconciliation asked for while one runs: one more runs after it, on what the store holds by then.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/load.js';
import { parseTarget } from '../../src/net/ip.js';
import { Policy } from '../../src/policy/policy.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { memoryDaemon } from '../support/memory-daemon.js';
import type { ActiveBan } from '../../src/store/store.js';

test('a reconciliation asked for while one runs is run after it, once for every request made meanwhile', async () => {
  const policy = new Policy(loadConfig({ env: {} }).policy);
  const store = new MemoryStore({ nodeId: 'test', policy: policy.params });
  // the first read of the store is answered only when released, as a slow Redis would, with what it held when asked
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const read = store.activeBans.bind(store);
  let reads = 0;
  store.activeBans = async function* (now: number): AsyncIterable<ActiveBan[]> {
    const pages: ActiveBan[][] = [];
    for await (const page of read(now)) pages.push(page);
    if (++reads === 1) await gate;
    yield* pages;
  };
  const { daemon, firewall, lines } = await memoryDaemon(policy, store);

  const first = daemon.reconcile('first');
  // while the first is reading, a ban reaches the store (the write-back of an outage's bans) and two more requests come
  await new Promise((r) => setImmediate(r));
  const target = parseTarget('198.51.100.44')!;
  await store.ban({ target, reason: 'manual', durationMs: 3_600_000, now: Date.now() });
  const second = daemon.reconcile('second');
  const third = daemon.reconcile('third');
  release();
  await Promise.all([first, second, third]);

  const done = lines.filter((l) => l.msg === 'reconciled firewall with store').map((l) => l.why);
  // one more after the first, shared by the second and third requests
  assert.deepEqual(done, ['first', 'second']);
  assert.ok(
    (await firewall.list()).some((e) => e.address === '198.51.100.44'),
    'the ban written meanwhile is enforced',
  );
});
