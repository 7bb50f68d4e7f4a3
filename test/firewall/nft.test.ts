// NftFirewall against the real kernel, each test inside throwaway network namespaces (never the host's ruleset).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import type { FirewallBan, FirewallElement, ReconcileResult } from '../../src/firewall/firewall.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { NftError, type NftOutput, type NftRunner } from '../../src/firewall/nft-runner.js';
import { NftWriter } from '../../src/firewall/nft-writer.js';
import { createNetns, waitFor, type Netns } from '../support/netns.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const ban = (text: string, timeoutMs = 3_600_000): FirewallBan => ({ target: t(text), timeoutMs });

/**
 * The daemon's persistent writer, counting what it is asked to do, and able to fail scripts mentioning an address.
 * Shut down when the test ends.
 */
class CountingRunner implements NftRunner {
  applies = 0;
  queries = 0;
  readonly scripts: string[] = [];
  readonly listed: Array<{ command: readonly string[]; stateless: boolean }> = [];
  poison: string | null = null;
  private readonly inner: NftRunner;

  constructor(netns: string, tc: TestContext) {
    this.inner = new NftWriter({ netns });
    tc.after(() => this.inner.close());
  }

  async apply(script: string): Promise<void> {
    this.applies++;
    this.scripts.push(script);
    if (this.poison !== null && script.includes(` ${this.poison} `)) {
      throw new NftError('nft failed (exit 1): simulated', 'script', 'Error: simulated refusal');
    }
    await this.inner.apply(script);
  }

  list(command: readonly string[], output?: NftOutput): Promise<string> {
    this.queries++;
    this.listed.push({ command, stateless: output?.stateless === true });
    return this.inner.list(command, output);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** our table in a fresh namespace, written by the persistent writer as the daemon does */
async function setup(tc: TestContext): Promise<{ ns: Netns; fw: NftFirewall }> {
  const ns = await createNetns((fn) => tc.after(fn));
  const fw = new NftFirewall({ netns: ns.name, persistent: true });
  tc.after(() => fw.shutdown());
  await fw.init();
  return { ns, fw };
}

/** a reconciliation's result with its removed targets as sorted texts */
function summary(r: ReconcileResult): Omit<ReconcileResult, 'removedTargets'> & { removedTargets: string[] } {
  return { ...r, removedTargets: r.removedTargets.map((x) => x.text).sort() };
}

function byAddress(elements: readonly FirewallElement[]): Map<string, FirewallElement> {
  return new Map(elements.map((e) => [e.address, e]));
}

function assertExpiresWithin(el: FirewallElement | undefined, timeoutMs: number): void {
  assert.ok(el, 'element present');
  assert.ok(el.expiresMs !== null, `${el.address} has a timeout`);
  const ok = el.expiresMs <= timeoutMs && el.expiresMs > timeoutMs - 10_000;
  assert.ok(ok, `${el.address} expires in ${el.expiresMs} ms, want ≈${timeoutMs}`);
}

test('init is idempotent and never touches an unrelated table', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  await ns.nft(`table inet operator {
    set allow { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }
    chain input {
      type filter hook input priority 0; policy accept;
      ip saddr @allow counter accept
      tcp dport 22 accept
    }
  }
  table ip legacy { chain c { counter; }; }\n`);
  const snapshot = async () =>
    (await ns.execOk('nft', ['-a', 'list', 'table', 'inet', 'operator'])) +
    (await ns.execOk('nft', ['-a', 'list', 'table', 'ip', 'legacy']));
  const before = await snapshot();

  const fw = new NftFirewall({ netns: ns.path }); // the absolute-path form, as for /proc/<pid>/ns/net
  assert.equal(await fw.present(), false);
  await fw.init();
  await fw.init();
  assert.equal(await fw.present(), true);
  const chain = await ns.execOk('nft', ['list', 'chain', 'inet', 'ami_guard', 'prerouting']);
  assert.equal(chain.match(/counter packets \d+ bytes \d+ drop/g)?.length, 4, chain);
  assert.match(chain, /hook prerouting priority raw; policy accept;/);
  assert.doesNotMatch(await ns.execOk('nft', ['list', 'table', 'inet', 'ami_guard']), /probe/, 'the probe set is gone');

  await fw.add([ban('198.51.100.1'), ban('2001:db8::1'), ban('203.0.113.0/24')]);
  await fw.reconcile([ban('198.51.100.2')]);
  await fw.delete([t('198.51.100.2')]);
  await fw.shutdown();
  assert.equal(await snapshot(), before);
});

test('present() notices a table whose drop rules are gone, and init() repairs it', async (tc) => {
  const { ns, fw } = await setup(tc);
  await ns.nft('flush chain inet ami_guard prerouting\n');
  assert.equal(await fw.present(), false);
  await fw.init();
  assert.equal(await fw.present(), true);
  await ns.nft('delete table inet ami_guard\n');
  assert.equal(await fw.present(), false);
});

test('add puts v4, v6 and CIDR elements in the kernel with their timeouts', async (tc) => {
  const { fw } = await setup(tc);
  await fw.add([ban('198.51.100.7', 3_600_000), ban('2001:db8::7', 7_200_000)]);
  await fw.add([ban('203.0.113.0/24', 1_800_000), ban('2001:db8:1::/48', 600_000)]);
  const els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()].sort(), ['198.51.100.7', '2001:db8:1::/48', '2001:db8::7', '203.0.113.0/24']);
  assertExpiresWithin(els.get('198.51.100.7'), 3_600_000);
  assertExpiresWithin(els.get('2001:db8::7'), 7_200_000);
  assertExpiresWithin(els.get('203.0.113.0/24'), 1_800_000);
  assertExpiresWithin(els.get('2001:db8:1::/48'), 600_000);
  assert.equal(els.get('2001:db8::7')?.family, 6);
});

for (const timeoutUpdate of [undefined, false]) {
  test(`re-adding an element replaces its timeout either way (timeoutUpdate: ${String(timeoutUpdate)})`, async (tc) => {
    const ns = await createNetns((fn) => tc.after(fn));
    const runner = new CountingRunner(ns.name, tc);
    const fw = new NftFirewall({ runner, timeoutUpdate });
    await fw.init();
    await fw.add([ban('198.51.100.9', 60_000), ban('2001:db8::9', 60_000), ban('203.0.113.0/24', 60_000)]);
    await fw.add([ban('198.51.100.9', 3_600_000), ban('2001:db8::9', 3_600_000), ban('203.0.113.0/24', 3_600_000)]);
    let els = byAddress(await fw.list());
    for (const a of ['198.51.100.9', '2001:db8::9', '203.0.113.0/24']) assertExpiresWithin(els.get(a), 3_600_000);
    await fw.add([ban('198.51.100.9', 30_000)]);
    els = byAddress(await fw.list());
    assertExpiresWithin(els.get('198.51.100.9'), 30_000);
    if (timeoutUpdate === false) {
      assert.match(runner.scripts.at(-1) ?? '', /^delete element inet ami_guard banned_v4 \{ 198\.51\.100\.9 \}$/m);
    }
  });
}

test('on a kernel that replaces timeouts, host bans go as a netlink batch and a re-add replaces the timeout', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const writer = new NftWriter({ netns: ns.name });
  tc.after(() => writer.close());
  const sent = { batches: 0, scripts: [] as string[] };
  const runner: NftRunner = {
    apply: (script) => {
      sent.scripts.push(script);
      return writer.apply(script);
    },
    list: (command, output) => writer.list(command, output),
    close: () => writer.close(),
    applyBatch: (batch) => {
      sent.batches++;
      return writer.applyBatch(batch);
    },
  };
  const fw = new NftFirewall({ runner, timeoutUpdate: true });
  await fw.init();
  const scriptsAtStart = sent.scripts.length;
  await fw.add([ban('198.51.100.9', 60_000), ban('2001:db8::9', 60_000)]);
  await fw.add([ban('198.51.100.9', 3_600_000), ban('2001:db8::9', 3_600_000)]);
  let els = byAddress(await fw.list());
  for (const a of ['198.51.100.9', '2001:db8::9']) assertExpiresWithin(els.get(a), 3_600_000);
  await fw.add([ban('198.51.100.9', 30_000)]);
  els = byAddress(await fw.list());
  assertExpiresWithin(els.get('198.51.100.9'), 30_000);
  assert.equal(sent.batches, 3);
  assert.ok(!sent.scripts.slice(scriptsAtStart).some((s) => s.includes('add element')), 'no host ban went as a script');
  // a network goes to its interval set as a script, where nft checks overlaps
  await fw.add([ban('203.0.113.0/24', 60_000)]);
  assert.equal(sent.batches, 3);
  assert.ok(sent.scripts.at(-1)?.includes('203.0.113.0/24'));
  assertExpiresWithin(byAddress(await fw.list()).get('203.0.113.0/24'), 60_000);
});

test('delete removes hosts and networks; absent ones and networks inside a banned one are not an error', async (tc) => {
  const { fw } = await setup(tc);
  await fw.add([
    ban('198.51.100.1'),
    ban('198.51.100.2'),
    ban('2001:db8::1'),
    ban('10.0.0.0/8'),
    ban('192.0.2.0/24'),
    ban('2001:db8:1::/48'),
  ]);
  await fw.delete([t('198.51.100.1'), t('2001:db8::1'), t('198.51.100.77'), t('2001:db8::77'), t('192.0.2.0/24'), t('2001:db8:1::/48')]);
  assert.deepEqual((await fw.list()).map((e) => e.address).sort(), ['10.0.0.0/8', '198.51.100.2']);
  await fw.delete([t('198.51.100.1')]);
  await fw.delete([t('10.1.2.3'), t('10.1.0.0/16'), t('198.51.100.0/24')]); // none of them is an element
  assert.deepEqual((await fw.list()).map((e) => e.address).sort(), ['10.0.0.0/8', '198.51.100.2']);
});

test('a network ban and a host inside it are both elements, both listed, each removable alone', async (tc) => {
  const { fw } = await setup(tc);
  await fw.add([ban('203.0.113.0/24', 600_000)]);
  await fw.add([ban('203.0.113.7', 3_600_000)]);
  await fw.add([ban('2001:db8:7::7', 3_600_000), ban('2001:db8:7::/48', 600_000)]); // one batch, host first
  let els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()].sort(), ['2001:db8:7::/48', '2001:db8:7::7', '203.0.113.0/24', '203.0.113.7']);
  assertExpiresWithin(els.get('203.0.113.0/24'), 600_000);
  assertExpiresWithin(els.get('203.0.113.7'), 3_600_000);
  assertExpiresWithin(els.get('2001:db8:7::/48'), 600_000);
  assertExpiresWithin(els.get('2001:db8:7::7'), 3_600_000);
  await fw.delete([t('203.0.113.0/24'), t('2001:db8:7::7')]);
  els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()].sort(), ['2001:db8:7::/48', '203.0.113.7']);
});

test('nested networks fold into the widest, which keeps the longest timeout among them', async (tc) => {
  const { fw } = await setup(tc);
  await fw.add([ban('172.16.0.0/24', 7_200_000)]);
  await fw.add([ban('172.16.0.0/16', 600_000)]); // replaces the /24 it covers and keeps its 2 h
  let els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()], ['172.16.0.0/16']);
  assertExpiresWithin(els.get('172.16.0.0/16'), 7_200_000);
  await fw.add([ban('172.16.5.0/24', 10_800_000)]); // inside: the /16 now lasts its 3 h
  await fw.add([ban('172.16.6.0/24', 60_000)]); // inside and shorter: nothing changes
  els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()], ['172.16.0.0/16']);
  assertExpiresWithin(els.get('172.16.0.0/16'), 10_800_000);
  await fw.add([ban('2001:db8:1:2::/64', 7_200_000), ban('2001:db8:1::/48', 3_600_000)]); // nested in one batch
  els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()].sort(), ['172.16.0.0/16', '2001:db8:1::/48']);
  assertExpiresWithin(els.get('2001:db8:1::/48'), 7_200_000);
});

test('a failing element is isolated and reported; the rest of its batch is applied', async (tc) => {
  const { ns, fw } = await setup(tc);
  // a real kernel refusal: without banned_v6 every IPv6 ban fails, IPv4 ones still work
  await ns.nft('flush chain inet ami_guard prerouting\ndelete set inet ami_guard banned_v6\n');
  const net = fw.add([ban('2001:db8:66::/48')]);
  const v4 = fw.add([ban('198.51.100.1')]);
  const v6 = fw.add([ban('2001:db8::66')]);
  const v4b = fw.add([ban('198.51.100.2')]);
  await v4;
  await assert.rejects(v6, (e: Error) => /could not ban 2001:db8::66: .*No such file/.test(e.message));
  await v4b;
  await net;
  await fw.init();
  const listed = (await fw.list()).map((e) => e.address).sort();
  assert.deepEqual(listed, ['198.51.100.1', '198.51.100.2', '2001:db8:66::/48']);
});

test('isolating one bad element out of 64 takes O(log n) runs', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new CountingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  await fw.init();
  runner.applies = 0;
  runner.poison = '198.51.100.40';
  const occupant = fw.add([ban('192.0.2.1')]); // runs at once, so the next 64 adds queue up as one batch
  const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => fw.add([ban(`198.51.100.${i}`)])));
  await occupant;
  const rejected = results.flatMap((r, i) => (r.status === 'rejected' ? [i] : []));
  assert.deepEqual(rejected, [40]);
  // the occupant, the whole batch, then a good and a bad half at each of 6 levels
  assert.ok(runner.applies <= 2 + 2 * Math.log2(64), `${runner.applies} runs`);
  assert.equal((await fw.list()).length, 64);
});

test('an element with a 2 s timeout leaves the kernel set by itself', async (tc) => {
  const { fw } = await setup(tc);
  const addedAt = Date.now(); // the kernel starts the timeout at commit, after this
  await fw.add([ban('198.51.100.2', 2000), ban('198.51.100.3', 3_600_000)]);
  const el = byAddress(await fw.list()).get('198.51.100.2');
  assert.ok(el?.expiresMs !== null && el?.expiresMs !== undefined && el.expiresMs <= 2000, JSON.stringify(el));
  await waitFor(
    '198.51.100.2 to expire',
    async () => ((await fw.list()).some((e) => e.address === '198.51.100.2') ? undefined : true),
    10_000,
  );
  assert.ok(Date.now() - addedAt >= 1900, `expired after ${Date.now() - addedAt} ms, before its 2 s`);
  assert.deepEqual(
    (await fw.list()).map((e) => e.address),
    ['198.51.100.3'],
  );
});

test('reconcile makes the sets exactly the given bans, with fresh timeouts', async (tc) => {
  const { fw } = await setup(tc);
  await fw.add([ban('198.51.100.1', 60_000), ban('198.51.100.2', 60_000), ban('2001:db8::2', 60_000), ban('10.0.0.0/8')]);
  const result = await fw.reconcile([
    ban('198.51.100.1', 3_600_000),
    ban('198.51.100.5', 1_800_000),
    ban('2001:db8:5::/48', 900_000),
    ban('10.0.0.0/8', 7_200_000),
    ban('10.9.0.0/16', 9_000_000),
    ban('10.9.9.9', 60_000),
  ]);
  assert.deepEqual(summary(result), { added: 3, removed: 2, total: 5, removedTargets: ['198.51.100.2', '2001:db8::2'] });
  const els = byAddress(await fw.list());
  assert.deepEqual([...els.keys()].sort(), ['10.0.0.0/8', '10.9.9.9', '198.51.100.1', '198.51.100.5', '2001:db8:5::/48']);
  assertExpiresWithin(els.get('198.51.100.1'), 3_600_000);
  assertExpiresWithin(els.get('198.51.100.5'), 1_800_000);
  assertExpiresWithin(els.get('2001:db8:5::/48'), 900_000);
  assertExpiresWithin(els.get('10.0.0.0/8'), 9_000_000); // the /16 folded into it
  assertExpiresWithin(els.get('10.9.9.9'), 60_000);
  assert.deepEqual(summary(await fw.reconcile([])), {
    added: 0,
    removed: 5,
    total: 0,
    removedTargets: ['10.0.0.0/8', '10.9.9.9', '198.51.100.1', '198.51.100.5', '2001:db8:5::/48'],
  });
  assert.deepEqual(await fw.list(), []);
});

test('100k hosts: reconcile, list, single adds, a burst, deletes (timings printed, not asserted)', async (tc) => {
  const { fw } = await setup(tc);
  await fw.add([ban('192.0.2.1')]);
  // 100.64.0.0/10 holds 4M addresses; none is loopback, multicast or otherwise unbannable
  const host = (i: number) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  const bans = Array.from({ length: 100_000 }, (_, i) => ban(host(i)));
  const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const started = performance.now();
    const value = await fn();
    return [value, performance.now() - started];
  };
  const [result, loadMs] = await timed(() => fw.reconcile(bans));
  assert.deepEqual(summary(result), { added: 100_000, removed: 1, total: 100_000, removedTargets: ['192.0.2.1'] });
  const [listed, listMs] = await timed(() => fw.list());
  assert.equal(listed.length, 100_000);
  assert.equal(new Set(listed.map((e) => e.address)).size, 100_000);
  const [, reloadMs] = await timed(() => fw.reconcile(bans));

  const [, firstAddMs] = await timed(() => fw.add([ban('192.0.2.2')]));
  const [, twentyMs] = await timed(async () => {
    for (let i = 0; i < 20; i++) await fw.add([ban(`198.51.100.${i}`)]);
  });
  const [, networkMs] = await timed(() => fw.add([ban('203.0.113.0/24')]));
  const [, burstMs] = await timed(() => Promise.all(Array.from({ length: 2000 }, (_, i) => fw.add([ban(`100.127.${i >> 8}.${i & 255}`)]))));
  const [, deleteMs] = await timed(() => fw.delete(Array.from({ length: 1000 }, (_, i) => t(host(i * 7)))));
  assert.equal((await fw.list()).length, 100_000 + 1 + 20 + 1 + 2000 - 1000);
  tc.diagnostic(
    `100k: reconcile into near-empty ${loadMs.toFixed(0)} ms; list ${listMs.toFixed(0)} ms; ` +
      `reconcile over 100k ${reloadMs.toFixed(0)} ms; one add ${firstAddMs.toFixed(1)} ms, then ` +
      `${(twentyMs / 20).toFixed(1)} ms each; one network ${networkMs.toFixed(1)} ms; 2000 concurrent adds ` +
      `${burstMs.toFixed(0)} ms; delete 1000 in one call ${deleteMs.toFixed(0)} ms`,
  );
});

for (const timeoutUpdate of [undefined, false]) {
  test(`adds apply at once when idle, batched under load (timeoutUpdate: ${String(timeoutUpdate)})`, async (tc) => {
    const ns = await createNetns((fn) => tc.after(fn));
    const runner = new CountingRunner(ns.name, tc);
    const fw = new NftFirewall({ runner, timeoutUpdate });
    await fw.init();
    const n = 20;
    let started = performance.now();
    for (let i = 0; i < n; i++) await fw.add([ban(`198.51.100.${i}`)]);
    const idleMs = (performance.now() - started) / n;

    runner.applies = 0;
    started = performance.now();
    await Promise.all(Array.from({ length: 2000 }, (_, i) => fw.add([ban(`100.64.${i >> 8}.${i & 255}`)])));
    const burstMs = performance.now() - started;
    assert.ok(runner.applies <= 3, `2000 queued adds took ${runner.applies} nft runs`);
    assert.equal((await fw.list()).length, n + 2000);
    tc.diagnostic(
      `idle add: ${idleMs.toFixed(1)} ms each; 2000 concurrent adds: ${burstMs.toFixed(0)} ms in ` +
        `${runner.applies} runs (${(2000 / (burstMs / 1000)).toFixed(0)} bans/s)`,
    );
  });
}

/** the table exactly as the first layout made it: hosts and networks together in two interval sets */
const OLD_LAYOUT = `table inet ami_guard {
  set banned_v4 { type ipv4_addr; flags interval, timeout; }
  set banned_v6 { type ipv6_addr; flags interval, timeout; }
  chain prerouting { type filter hook prerouting priority raw; policy accept;
    ip saddr @banned_v4 counter drop
    ip6 saddr @banned_v6 counter drop
  }
}
`;

test('init migrates a table of the first layout atomically and keeps every element with its time', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  await ns.nft('table inet operator { set allow { type ipv4_addr; elements = { 192.0.2.1 }; }; }\n');
  await ns.nft(OLD_LAYOUT);
  const hosts = Array.from({ length: 6000 }, (_, i) => `100.64.${i >> 8}.${i & 255} timeout 3600s`);
  await ns.nft(`add element inet ami_guard banned_v4 { ${hosts.join(', ')} }
add element inet ami_guard banned_v4 { 198.51.100.7 timeout 7200s, 10.0.0.0/8 timeout 600s, 203.0.113.0/24 }
add element inet ami_guard banned_v6 { 2001:db8::7 timeout 1800s, 2001:db8:1::/48 timeout 900s }
`);
  const operator = await ns.execOk('nft', ['list', 'table', 'inet', 'operator']);
  const fw = new NftFirewall({ netns: ns.name });
  assert.equal(await fw.present(), false, 'sets of another shape are not our layout');
  await fw.init();
  assert.equal(await fw.present(), true);
  const els = byAddress(await fw.list());
  assert.equal(els.size, 6000 + 5);
  assertExpiresWithin(els.get('100.64.23.111'), 3_600_000);
  assertExpiresWithin(els.get('198.51.100.7'), 7_200_000);
  assertExpiresWithin(els.get('10.0.0.0/8'), 600_000);
  assertExpiresWithin(els.get('2001:db8::7'), 1_800_000);
  assertExpiresWithin(els.get('2001:db8:1::/48'), 900_000);
  // it had no timeout: the longest nft takes, not one that makes it lapse
  assert.ok((els.get('203.0.113.0/24')?.expiresMs ?? 0) > 3 * 365 * 86_400_000);
  const sets = await ns.execOk('nft', ['-t', 'list', 'table', 'inet', 'ami_guard']);
  assert.match(sets, /set banned_v4 \{\s+type ipv4_addr\s+flags timeout\s/);
  assert.match(sets, /set banned_v4_net \{\s+type ipv4_addr\s+flags interval,timeout\s/);
  assert.equal(await ns.execOk('nft', ['list', 'table', 'inet', 'operator']), operator);
  await fw.add([ban('10.1.2.3')]); // a host inside a migrated network: its own element now
  assert.ok(byAddress(await fw.list()).has('10.1.2.3'));
});

test('init recreates a chain of another priority; a failed migration leaves the old table alone', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  await ns.nft(OLD_LAYOUT.replace('priority raw', 'priority 0'));
  await ns.nft('add element inet ami_guard banned_v4 { 198.51.100.7 timeout 7200s, 198.51.100.8 timeout 7200s }\n');
  const before = await ns.execOk('nft', ['-s', 'list', 'table', 'inet', 'ami_guard']);
  const runner = new CountingRunner(ns.name, tc);
  runner.poison = '198.51.100.8';
  await assert.rejects(new NftFirewall({ runner }).init(), (e: Error) =>
    e.message.includes(
      'older layout (set banned_v4, set banned_v6, chain prerouting) and could not be recreated; remove it with ' +
        "'nft delete table inet ami_guard' and restart",
    ),
  );
  assert.equal(await ns.execOk('nft', ['-s', 'list', 'table', 'inet', 'ami_guard']), before);
  runner.poison = null;
  const fw = new NftFirewall({ runner });
  await fw.init();
  assert.equal(await fw.present(), true);
  assert.match(await ns.execOk('nft', ['list', 'chain', 'inet', 'ami_guard', 'prerouting']), /priority raw;/);
  assert.deepEqual((await fw.list()).map((e) => e.address).sort(), ['198.51.100.7', '198.51.100.8']);
});

test('commit waits for queued work and shutdown refuses new work', async (tc) => {
  const { ns, fw } = await setup(tc);
  const pending = [fw.add([ban('198.51.100.1')]), fw.add([ban('198.51.100.2')]), fw.delete([t('198.51.100.1')])];
  await fw.commit();
  assert.deepEqual(
    (await fw.list()).map((e) => e.address),
    ['198.51.100.2'],
  );
  await Promise.all(pending);
  await fw.shutdown();
  await assert.rejects(fw.add([ban('198.51.100.3')]), /shut down/);
  // the writer is gone; the table and its element stay
  assert.deepEqual(
    (await new NftFirewall({ netns: ns.name }).list()).map((e) => e.address),
    ['198.51.100.2'],
  );
});

test('non-canonical targets are refused before any nft process runs', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new CountingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  await fw.init();
  await fw.add([ban('198.51.100.1')]);
  const ruleset = () => ns.execOk('nft', ['-s', 'list', 'ruleset']); // -s: without the ticking expiry times
  const before = await ruleset();
  runner.applies = 0;
  runner.queries = 0;
  const forged = { kind: 'address', family: 4, text: '1.2.3.4 } ; flush ruleset ; add table x {' } as IpTarget;
  const refused = /non-canonical/;
  await assert.rejects(fw.add([ban('198.51.100.2'), { target: forged, timeoutMs: 60_000 }]), refused);
  await assert.rejects(fw.delete([forged]), refused);
  await assert.rejects(fw.reconcile([{ target: forged, timeoutMs: 60_000 }]), refused);
  const mislabelled = t('2001:db8::1');
  (mislabelled as unknown as { family: number }).family = 4;
  await assert.rejects(fw.add([{ target: mislabelled, timeoutMs: 1000 }]), /not IPv4/);
  await assert.rejects(fw.add([ban('127.0.0.1')]), /refusing to ban 127\.0\.0\.1: loopback/);
  await fw.commit();
  assert.equal(runner.applies + runner.queries, 0);
  assert.equal(await ruleset(), before);
});

test('a missing nft binary gives a clear error', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const message = /nft not found at \/nonexistent\/nft: install the nftables package/;
  await assert.rejects(new NftFirewall({ nftPath: '/nonexistent/nft' }).init(), message);
  await assert.rejects(new NftFirewall({ nftPath: '/nonexistent/nft', netns: ns.name }).init(), message);
  await assert.rejects(new NftFirewall({ netns: 'agtest-absent' }).init(), /network namespace \/run\/netns\/agtest-absent does not exist/);
  assert.throws(() => new NftFirewall({ netns: '../etc' }), /invalid network namespace/);
  assert.throws(() => new NftFirewall({ table: 'x; flush ruleset' }), /invalid nft table name/);
});

test('running without CAP_NET_ADMIN says so', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const dir = await mkdtemp(join(tmpdir(), 'agtest-'));
  tc.after(() => rm(dir, { recursive: true, force: true }));
  const unprivileged = join(dir, 'nft-as-nobody');
  await writeFile(unprivileged, '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups nft "$@"\n');
  await chmod(unprivileged, 0o755);
  await assert.rejects(new NftFirewall({ nftPath: unprivileged, netns: ns.name }).init(), /needs CAP_NET_ADMIN/);
  assert.equal((await ns.execOk('nft', ['list', 'ruleset'])).trim(), '');
});

test('into a table it has just created, a reconciliation loads in slices, one transaction each', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new CountingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  await fw.init();
  runner.applies = 0;
  const bans = Array.from({ length: 25_000 }, (_, i) => ban(`100.64.${i >> 8}.${i & 255}`));
  assert.deepEqual(summary(await fw.reconcile(bans)), { added: 25_000, removed: 0, total: 25_000, removedTargets: [] });
  assert.equal(runner.applies, 3, 'slices of 10,000');
  assert.ok(runner.scripts.slice(-3).every((s) => !s.includes('flush')));
  assert.equal((await fw.list()).length, 25_000);
  // the next one replaces the sets atomically: one transaction that flushes them first
  runner.applies = 0;
  assert.deepEqual(summary(await fw.reconcile(bans.slice(0, 2))), {
    added: 0,
    removed: 24_998,
    total: 2,
    removedTargets: bans
      .slice(2)
      .map((b) => b.target.text)
      .sort(),
  });
  assert.equal(runner.applies, 1);
  assert.match(runner.scripts.at(-1)!, /^flush set inet ami_guard banned_v4$/m);
});

for (const timeoutUpdate of [undefined, false]) {
  test(`a restart into a table already there lists it once, addresses only, and reports what it removed (timeoutUpdate: ${String(timeoutUpdate)})`, async (tc) => {
    const ns = await createNetns((fn) => tc.after(fn));
    const before = new NftFirewall({ netns: ns.name });
    await before.init();
    await before.add([ban('198.51.100.1', 60_000), ban('198.51.100.2'), ban('2001:db8::2'), ban('203.0.113.0/24')]);
    const runner = new CountingRunner(ns.name, tc);
    const fw = new NftFirewall({ runner, timeoutUpdate });
    await fw.init(); // starts the listing, as the daemon reads the store meanwhile
    const first = await fw.reconcile([ban('198.51.100.1'), ban('198.51.100.3')]);
    assert.deepEqual(summary(first), { added: 1, removed: 3, total: 2, removedTargets: ['198.51.100.2', '2001:db8::2', '203.0.113.0/24'] });
    let els = byAddress(await fw.list());
    assert.deepEqual([...els.keys()].sort(), ['198.51.100.1', '198.51.100.3']);
    assertExpiresWithin(els.get('198.51.100.1'), 3_600_000); // its timeout replaced by the store's
    const listings = runner.queries;
    assert.ok(runner.listed.some((c) => c.stateless && c.command.join(' ') === 'list set inet ami_guard banned_v4'));
    assert.match(runner.scripts.at(-1)!, /^flush set inet ami_guard banned_v4$/m, 'flushed and loaded in one transaction');
    await fw.add([ban('198.51.100.4')]);
    const second = await fw.reconcile([ban('198.51.100.3')]);
    assert.deepEqual(summary(second), { added: 0, removed: 2, total: 1, removedTargets: ['198.51.100.1', '198.51.100.4'] });
    assert.equal(runner.queries, listings, 'known from our own writes: no listing');
    els = byAddress(await fw.list());
    assert.deepEqual([...els.keys()], ['198.51.100.3']);
  });
}
