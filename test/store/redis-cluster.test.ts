// The store on a real three-master Redis Cluster: the same contract as on one server, one script call per node for a
// batch whose targets live on every node, and nothing lost or counted twice when the slot map the client holds is
// out of date (a resharding or failover the client has not heard of yet).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis, type Cluster } from 'ioredis';
import { createClusterClient } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { parseHostPort } from '../../src/config/formats.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { NODE, POLICY, T0, collect, failures, hostAddress, storeContract } from './contract.js';

let cluster: RedisCluster;
before(async () => {
  cluster = await startRedisCluster();
});
after(async () => {
  await cluster?.stop();
});

function client(): Cluster {
  return createClusterClient(
    cluster.nodes.map((n) => parseHostPort(n)!),
    {},
  );
}

let prefixes = 0;
storeContract('RedisStore on Cluster', () => async (policy) => {
  const c = client();
  try {
    return new RedisStore({ client: c, keyPrefix: `cc${++prefixes}:`, nodeId: NODE, policy });
  } catch (err) {
    c.disconnect();
    throw err;
  }
});

async function evalshaCalls(): Promise<number[]> {
  return Promise.all(
    cluster.nodes.map(async (n) => {
      const node = new Redis(`redis://${n}`);
      try {
        // the first call on a connection is an EVAL (ioredis sends the script once), the others EVALSHA
        const stats = await node.info('commandstats');
        const calls = (cmd: string): number => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
        return calls('evalsha') + calls('eval');
      } finally {
        node.disconnect();
      }
    }),
  );
}

describe('RedisStore on a real Redis Cluster', () => {
  it('sends a batch whose targets live on every node as one call per node', async () => {
    const store = new RedisStore({ client: client(), keyPrefix: 'calls:', nodeId: NODE, policy: POLICY });
    try {
      await store.recordActivity([failures('192.0.2.1', T0, 1)], T0);
      const before = await evalshaCalls();
      const batch = Array.from({ length: 600 }, (_, i) => failures(hostAddress(i), T0, i % 3 === 0 ? POLICY.maxretry : 1));
      const verdicts = await store.recordActivity(batch, T0);
      assert.equal(verdicts.filter((v) => v.type === 'banned').length, 200);
      const calls = (await evalshaCalls()).map((n, i) => n - before[i]!);
      assert.deepEqual(calls, [1, 1, 1], 'one script call on each master');
      assert.equal((await collect(store.activeBans(T0 + 1))).flat().length, 200, 'every ban indexed, on its own node');
    } finally {
      await store.close();
    }
  });

  it('counts every entry once when the slot map it grouped by is out of date', async () => {
    const c = client();
    const store = new RedisStore({ client: c, keyPrefix: 'moved:', nodeId: NODE, policy: POLICY });
    try {
      await c.ping();
      const n = 900;
      const batch = (round: number) => Array.from({ length: n }, (_, i) => failures(hostAddress(10_000 + i), T0 + round, 1));
      assert.ok((await store.recordActivity(batch(1), T0 + 1)).every((v) => v.type === 'counted' && v.count === 1));
      // the client's map now sends about two thirds of the slots to the wrong master, interleaved, as after
      // reshardings it missed: each part of the batch holds entries of every master
      const right = c.slots.map((keys) => [...keys]);
      const masters = [...new Set(right.map((keys) => keys[0]!))].sort();
      c.slots = right.map((_, slot) => [masters[slot % masters.length]!]);
      const verdicts = await store.recordActivity(batch(2), T0 + 2);
      assert.deepEqual(
        verdicts.filter((v) => !(v.type === 'counted' && v.count === 2)),
        [],
        'each counted once, none lost',
      );
      assert.deepEqual(c.slots, right, 'the map was read again');
    } finally {
      await store.close();
    }
  });
});
