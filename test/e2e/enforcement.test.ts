// What a ban does in the kernel, driven end to end by the real daemon.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBed, MARKER } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { createNetns, vethPair, waitFor } from '../support/netns.js';
import { Redis } from 'ioredis';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

test('an ignore-listed attacker is never banned', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'ign:',
    config: { policy: { ignoreip: ['127.0.0.0/8', '::1', '198.18.0.0/28'] } },
  });
  assert.deepEqual(await bed.settle(), []);
  assert.ok(!bed.daemon.logs.some((l) => l.event === 'ban' && l.address === '198.18.0.11'));
});

test('an ignore-listed IPv6 attacker is never banned', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'ipv6-attacker',
    redisUrl: redis.url,
    keyPrefix: 'ign6:',
    env: { AMI_GUARD_POLICY_IGNOREIP: '127.0.0.1,::1,fd00::/64' },
  });
  assert.deepEqual(await bed.settle(), []);
});

test('the start-up rehearsal of a ban leaves nothing in the kernel, the store or the log', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'rehearsal:',
    config: { log: { level: 'debug' } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const rehearsed = bed.daemon.logs.find((l) => l.msg === 'rehearsed a ban on throwaway parts');
  assert.equal(rehearsed?.['banned'], true, 'the rehearsal reached its ban');
  // the address it banned on its throwaway parts (a documentation address the policy would ban)
  const address = String(rehearsed['address']);
  assert.ok(!(await bed.elements()).includes(address));
  assert.ok(!bed.daemon.logs.some((l) => l !== rehearsed && JSON.stringify(l).includes(address)));
  const client = new Redis(redis.url);
  t.after(() => client.quit());
  for (const key of await client.keys('rehearsal:*')) {
    const type = await client.type(key);
    const dump =
      type === 'zset'
        ? (await client.zrange(key, 0, -1)).join(' ')
        : type === 'hash'
          ? JSON.stringify(await client.hgetall(key))
          : type === 'string'
            ? ((await client.get(key)) ?? '')
            : type === 'stream'
              ? JSON.stringify(await client.xrange(key, '-', '+'))
              : '';
    assert.ok(!dump.includes(address), `${key} (${type}) holds the rehearsal's address`);
  }
});

test('an element leaves the kernel set when its bantime is up', async (t) => {
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: redis.url,
    keyPrefix: 'short:',
    config: { policy: { bantime: '3s' } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const el = (await bed.firewall.list()).find((e) => e.address === '198.18.0.11');
  assert.ok(el && el.expiresMs !== null && el.expiresMs <= 3000, `kernel timeout ${el?.expiresMs}`);
  // the kernel expires it by itself: nothing in ami-guard deletes it
  await waitFor('the ban to expire in the kernel', async () => ((await bed.elements()).includes('198.18.0.11') ? undefined : true), 10_000);
});

test('after a restart into a flushed table the bans come back from Redis', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const first = await startBed({ cleanup, recording: 'ipv6-attacker', redisUrl: redis.url, keyPrefix: 'restart:' });
  assert.deepEqual(await first.settle(), ['fd00::66']);
  assert.equal(await first.daemon.stop(), 0);
  // bans stay in the kernel after a clean stop; then someone flushes the ruleset
  assert.ok((await first.elements()).includes('fd00::66'));
  await first.ns.execOk('nft', ['flush', 'ruleset']);
  assert.deepEqual(await first.elements(), []);

  const second = await startBed({ cleanup, recording: 'ipv6-attacker', redisUrl: redis.url, keyPrefix: 'restart:', ns: first.ns });
  await second.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store');
  assert.deepEqual((await second.elements()).filter((a) => a !== MARKER).sort(), ['fd00::66']);
  const el = (await second.firewall.list()).find((e) => e.address === 'fd00::66');
  assert.ok(el && el.expiresMs !== null && el.expiresMs > 3_000_000, 'the remaining ban time comes back as the timeout');
});

test('a packet from a banned address is dropped by our chain', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const pbx = await createNetns(cleanup);
  const attacker = await createNetns(cleanup);
  await vethPair({ ns: pbx, v4: ['198.18.0.1/24'] }, { ns: attacker, v4: ['198.18.0.11/24'] });
  const bed = await startBed({ cleanup, recording: 'register-bruteforce', redisUrl: redis.url, keyPrefix: 'pkt:', ns: pbx });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);

  const dropped = async (): Promise<number> => {
    const out = JSON.parse(await pbx.execOk('nft', ['-j', 'list', 'chain', 'inet', bed.table, 'prerouting'])) as {
      nftables: Array<{ rule?: { expr: Array<Record<string, unknown>> } }>;
    };
    let packets = 0;
    for (const item of out.nftables) {
      const expr = item.rule?.expr ?? [];
      const isV4Hosts = JSON.stringify(expr).includes('"ip"') && JSON.stringify(expr).includes('@banned_v4"');
      const counter = expr.find((e) => 'counter' in e)?.counter as { packets: number } | undefined;
      if (isV4Hosts && counter) packets += counter.packets;
    }
    return packets;
  };
  const before = await dropped();
  const send = `require('dgram').createSocket('udp4').send('REGISTER sip:pbx SIP/2.0\\r\\n\\r\\n', 5060, '198.18.0.1', (e, n) => process.exit(e ? 1 : 0))`;
  for (let i = 0; i < 3; i++) await attacker.execOk(process.execPath, ['-e', send]);
  await waitFor('drop counter to count the datagrams', async () => ((await dropped()) >= before + 3 ? true : undefined), 5_000);
});
