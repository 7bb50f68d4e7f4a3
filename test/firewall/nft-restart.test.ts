// A restart into sets a previous run filled, against the real kernel in throwaway namespaces: the persistent writer
// reads them by netlink with each element's end, and one small transaction changes only what differs; when anyone
// else commits meanwhile, or the sets hold what we cannot read, they are replaced whole. Either way the sets end up
// holding exactly the store's bans with their timeouts, and what went is reported.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import type { FirewallBan, FirewallElement, ReconcileResult } from '../../src/firewall/firewall.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import type { NftOutput, NftRunner } from '../../src/firewall/nft-runner.js';
import { NftWriter } from '../../src/firewall/nft-writer.js';
import { createNetns, type Netns } from '../support/netns.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const HOUR = 3_600_000;

/** The persistent writer, recording the scripts it applies, with a hook before each generation it reads. */
class RecordingRunner implements NftRunner {
  readonly scripts: string[] = [];
  /** netlink batches applied (hosts loaded into sets known empty) */
  batches = 0;
  generations = 0;
  beforeGeneration: ((n: number) => Promise<void>) | undefined;
  private readonly inner: NftWriter;

  constructor(netns: string, tc: TestContext) {
    this.inner = new NftWriter({ netns });
    tc.after(() => this.inner.close());
  }

  apply(script: string): Promise<void> {
    this.scripts.push(script);
    return this.inner.apply(script);
  }

  list(command: readonly string[], output?: NftOutput): Promise<string> {
    return this.inner.list(command, output);
  }

  applyBatch(batch: Buffer): Promise<void> {
    this.batches++;
    return this.inner.applyBatch(batch);
  }

  dumpSet(table: string, set: string): Promise<Buffer> {
    return this.inner.dumpSet(table, set);
  }

  async generation(): Promise<number> {
    const n = ++this.generations;
    await this.beforeGeneration?.(n);
    return this.inner.generation();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * What a previous run left (and someone else added): kept as it is, one to remove, one with a shorter timeout, one
 * without a timeout, one with a comment, IPv6 kept and stale, a network. Returns when it was written.
 */
async function previousRun(ns: Netns): Promise<number> {
  await new NftFirewall({ netns: ns.name }).init();
  const at = Date.now();
  await ns.nft(`add element inet ami_guard banned_v4 { 198.51.100.1 timeout 3600s, 198.51.100.2 timeout 3600s, 198.51.100.3 timeout 600s, 198.51.100.4, 198.51.100.5 timeout 3600s comment "not ours" }
add element inet ami_guard banned_v6 { 2001:db8::1 timeout 3600s, 2001:db8::2 timeout 3600s }
add element inet ami_guard banned_v4_net { 203.0.113.0/24 timeout 3600s }
`);
  return at;
}

/** the store's bans, their timeouts counted from `at` (when the previous run wrote, as a restart's store read sees them) */
function storeBans(): FirewallBan[] {
  return [
    { target: t('198.51.100.1'), timeoutMs: HOUR - 500 },
    { target: t('198.51.100.3'), timeoutMs: HOUR - 500 },
    { target: t('198.51.100.4'), timeoutMs: HOUR - 500 },
    { target: t('198.51.100.9'), timeoutMs: HOUR / 2 },
    { target: t('2001:db8::1'), timeoutMs: HOUR - 500 },
    { target: t('203.0.113.0/24'), timeoutMs: HOUR - 500 },
  ];
}

function summary(r: ReconcileResult): Omit<ReconcileResult, 'removedTargets'> & { removedTargets: string[] } {
  return { ...r, removedTargets: r.removedTargets.map((x) => x.text).sort() };
}

async function listed(ns: Netns): Promise<Map<string, FirewallElement>> {
  return new Map((await new NftFirewall({ netns: ns.name }).list()).map((e) => [e.address, e]));
}

/** the element ends between `from` and `to` ms from now, as the kernel lists it */
function endsBetween(el: FirewallElement | undefined, from: number, to: number): void {
  assert.ok(el, 'element present');
  assert.ok(el.expiresMs !== null, `${el.address} has a timeout`);
  assert.ok(el.expiresMs >= from && el.expiresMs <= to, `${el.address} expires in ${el.expiresMs} ms, want ${from}..${to}`);
}

/** the store's bans are exactly what the sets hold, each with a timeout near the store's */
async function assertExactly(ns: Netns, writtenAt: number): Promise<Map<string, FirewallElement>> {
  const els = await listed(ns);
  assert.deepEqual([...els.keys()].sort(), [
    '198.51.100.1',
    '198.51.100.3',
    '198.51.100.4',
    '198.51.100.9',
    '2001:db8::1',
    '203.0.113.0/24',
  ]);
  const since = Date.now() - writtenAt;
  for (const a of ['198.51.100.1', '198.51.100.3', '198.51.100.4', '2001:db8::1', '203.0.113.0/24']) {
    endsBetween(els.get(a), HOUR - 500 - since - 50, HOUR + 7_000 - since);
  }
  endsBetween(els.get('198.51.100.9'), HOUR / 2 - since - 50, HOUR / 2 + 7_000 - since);
  return els;
}

const EXPECTED = { added: 1, removed: 3, total: 6, removedTargets: ['198.51.100.2', '198.51.100.5', '2001:db8::2'] };

for (const timeoutUpdate of [undefined, false]) {
  test(`a restart changes only what differs, in one small transaction (timeoutUpdate: ${String(timeoutUpdate)})`, async (tc) => {
    const ns = await createNetns((fn) => tc.after(fn));
    const writtenAt = await previousRun(ns);
    const runner = new RecordingRunner(ns.name, tc);
    const fw = new NftFirewall({ runner, timeoutUpdate });
    tc.after(() => fw.shutdown());
    await fw.init();
    const applied = runner.scripts.length;
    const r = await fw.reconcile(storeBans(), writtenAt);
    assert.deepEqual(summary(r), EXPECTED);
    const changes = runner.scripts.slice(applied);
    assert.equal(changes.length, 1, 'one transaction');
    const script = changes[0]!;
    assert.doesNotMatch(script, /flush/, 'no set flushed');
    // in time: left alone; a shorter timeout and none at all: added again; the network set: unchanged
    assert.doesNotMatch(script, /198\.51\.100\.1\b|2001:db8::1\b|203\.0\.113\.0/);
    assert.match(script, /198\.51\.100\.3 timeout 3600s/);
    assert.match(script, /198\.51\.100\.4 timeout 3600s/);
    assert.match(script, /198\.51\.100\.9 timeout 1800s/);
    await assertExactly(ns, writtenAt);
    // the next (periodic) reconciliation reads the sets again and changes only what differs
    const next = await fw.reconcile(storeBans().slice(1));
    assert.deepEqual(summary(next).removedTargets, ['198.51.100.1']);
  });
}

test('a periodic reconciliation reads the sets and changes only what differs: what someone removed is back, what someone added goes', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const bans = storeBans();
  // each ban's end stays where it is, as the store's does: the timeouts are counted from one time
  const at = Date.now();
  await fw.reconcile(bans, at);
  await ns.nft(`delete element inet ami_guard banned_v4 { 198.51.100.3 }
add element inet ami_guard banned_v4 { 198.51.100.77 timeout 3600s }
delete element inet ami_guard banned_v6 { 2001:db8::1 }
`);
  const applied = runner.scripts.length;
  const r = await fw.reconcile(bans, at);
  assert.deepEqual(summary(r), { added: 2, removed: 1, total: 6, removedTargets: ['198.51.100.77'] });
  const changes = runner.scripts.slice(applied);
  assert.equal(changes.length, 1, 'one transaction');
  assert.doesNotMatch(changes[0]!, /flush|198\.51\.100\.1\b|198\.51\.100\.4\b|203\.0\.113\.0/, 'only what differs');
  // what was put back has the store's end, as has everything else
  await assertExactly(ns, at);
  // and when nothing differs, nothing is written
  const again = runner.scripts.length;
  assert.deepEqual(summary(await fw.reconcile(bans, at)), { added: 0, removed: 0, total: 6, removedTargets: [] });
  assert.equal(runner.scripts.length, again, 'no transaction at all');
});

test('a restart into sets that already hold exactly the store bans changes nothing', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  await new NftFirewall({ netns: ns.name }).init();
  const writtenAt = Date.now();
  await ns.nft(`add element inet ami_guard banned_v4 { 198.51.100.1 timeout 3600s }\n`);
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const applied = runner.scripts.length;
  const r = await fw.reconcile([{ target: t('198.51.100.1'), timeoutMs: HOUR - 500 }], writtenAt);
  assert.deepEqual(summary(r), { added: 0, removed: 0, total: 1, removedTargets: [] });
  assert.equal(runner.scripts.length, applied, 'no transaction at all');
  endsBetween((await listed(ns)).get('198.51.100.1'), HOUR - 60_000, HOUR);
});

for (const when of ['while the sets are read', 'between the reading and the change'] as const) {
  test(`someone committing ${when}: the sets are replaced whole, and hold exactly the store's bans`, async (tc) => {
    const ns = await createNetns((fn) => tc.after(fn));
    const writtenAt = await previousRun(ns);
    const runner = new RecordingRunner(ns.name, tc);
    const fw = new NftFirewall({ runner });
    tc.after(() => fw.shutdown());
    await fw.init();
    // generations read: 1 before the reading, 2 after it, 3 after the change
    const at = when === 'while the sets are read' ? 2 : 3;
    runner.beforeGeneration = async (n) => {
      if (n === at) await ns.nft('add element inet ami_guard banned_v4 { 192.0.2.55 timeout 3600s }\n');
    };
    const applied = runner.scripts.length;
    const r = await fw.reconcile(storeBans(), writtenAt);
    assert.deepEqual(summary(r), EXPECTED);
    assert.match(runner.scripts.at(-1)!, /^flush set inet ami_guard banned_v4$/m, 'flushed and loaded in one transaction');
    assert.equal(runner.scripts.length - applied, at === 2 ? 1 : 2);
    await assertExactly(ns, writtenAt);
  });
}

test('a network set holding a range we cannot read is replaced whole; the rest as the store says', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const writtenAt = await previousRun(ns);
  await ns.nft('add element inet ami_guard banned_v4_net { 10.9.0.1-10.9.0.7 timeout 3600s }\n');
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const r = await fw.reconcile(storeBans(), writtenAt);
  assert.deepEqual(summary(r), EXPECTED);
  assert.match(runner.scripts.at(-1)!, /^flush set inet ami_guard banned_v4_net$/m);
  await assertExactly(ns, writtenAt);
  const raw = await ns.execOk('nft', ['list', 'set', 'inet', 'ami_guard', 'banned_v4_net']);
  assert.doesNotMatch(raw, /10\.9\.0/);
});

test('a network that differs is replaced by flushing and loading its set only', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const writtenAt = await previousRun(ns);
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const bans = storeBans().filter((b) => b.target.kind !== 'prefix');
  bans.push({ target: t('203.0.113.0/25'), timeoutMs: HOUR });
  const r = await fw.reconcile(bans, writtenAt);
  assert.deepEqual(summary(r), {
    added: 2,
    removed: 4,
    total: 6,
    removedTargets: ['198.51.100.2', '198.51.100.5', '2001:db8::2', '203.0.113.0/24'],
  });
  const script = runner.scripts.at(-1)!;
  assert.match(script, /^flush set inet ami_guard banned_v4_net$/m);
  assert.doesNotMatch(script, /^flush set inet ami_guard banned_v4$/m);
  const els = await listed(ns);
  assert.ok(els.has('203.0.113.0/25') && !els.has('203.0.113.0/24'));
});

test('into a table just created, bans preloaded as the store is read are there; the reconciliation settles the rest', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const first = [
    { target: t('198.51.100.1'), timeoutMs: HOUR },
    { target: t('198.51.100.2'), timeoutMs: HOUR },
  ];
  const second = [
    { target: t('2001:db8::1'), timeoutMs: HOUR },
    { target: t('203.0.113.0/24'), timeoutMs: HOUR },
  ];
  const applied = runner.scripts.length;
  fw.preload(first);
  fw.preload(second);
  // the hosts went at once, one netlink batch per call; the network waits for the reconciliation
  assert.equal(runner.batches, 2);
  assert.equal(runner.scripts.length, applied);
  // the store read again (it lost its data meanwhile): 198.51.100.2 is no longer among the bans, .1 has a new end
  const bans = [{ target: t('198.51.100.1'), timeoutMs: HOUR / 2 }, second[0]!, second[1]!, { target: t('198.51.100.3'), timeoutMs: HOUR }];
  const r = await fw.reconcile(bans);
  assert.deepEqual(summary(r), { added: 4, removed: 1, total: 4, removedTargets: ['198.51.100.2'] });
  const els = await listed(ns);
  assert.deepEqual([...els.keys()].sort(), ['198.51.100.1', '198.51.100.3', '2001:db8::1', '203.0.113.0/24']);
  endsBetween(els.get('198.51.100.1'), HOUR / 2 - 10_000, HOUR / 2 + 1_000);
  endsBetween(els.get('198.51.100.3'), HOUR - 10_000, HOUR + 1_000);
});

test('preloading into a table that was already there does nothing before the reconciliation', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  await previousRun(ns);
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const applied = runner.scripts.length;
  fw.preload(storeBans());
  assert.equal(runner.scripts.length, applied);
});

test('a fresh load of 20,000 hosts and networks by netlink batch holds exactly them, each with its timeout', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  const bans: FirewallBan[] = [];
  for (let i = 0; i < 15_000; i++) bans.push({ target: t(`100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`), timeoutMs: HOUR + i });
  for (let i = 0; i < 5_000; i++) bans.push({ target: t(`2001:db8::${i.toString(16)}`), timeoutMs: HOUR / 2 });
  bans.push({ target: t('203.0.113.0/24'), timeoutMs: HOUR }, { target: t('2001:db8:1::/48'), timeoutMs: HOUR });
  fw.preload(bans.slice(0, 6_000));
  const r = await fw.reconcile(bans);
  assert.deepEqual(summary(r), { added: 20_002, removed: 0, total: 20_002, removedTargets: [] });
  assert.ok(runner.batches >= 3, `${runner.batches} batches`);
  assert.ok(!runner.scripts.some((s) => /100\.64\./.test(s)), 'no host went as script text');
  const els = await listed(ns);
  assert.equal(els.size, 20_002);
  endsBetween(els.get('100.64.0.0'), HOUR - 10_000, HOUR + 1_000);
  endsBetween(els.get('100.64.58.151'), HOUR + 14_999 - 10_000, HOUR + 14_999 + 1_000);
  endsBetween(els.get('2001:db8::1387'), HOUR / 2 - 10_000, HOUR / 2 + 1_000);
  endsBetween(els.get('2001:db8:1::/48'), HOUR - 10_000, HOUR + 1_000);
});

test('a netlink batch the kernel refuses fails the reconciliation with its reason and loads nothing of it', async (tc) => {
  const ns = await createNetns((fn) => tc.after(fn));
  const runner = new RecordingRunner(ns.name, tc);
  const fw = new NftFirewall({ runner });
  tc.after(() => fw.shutdown());
  await fw.init();
  // gone under it (its drop rule with it): the kernel refuses an element for it
  await ns.nft('flush chain inet ami_guard prerouting\ndelete set inet ami_guard banned_v6\n');
  const bans = [
    { target: t('198.51.100.1'), timeoutMs: HOUR },
    { target: t('2001:db8::1'), timeoutMs: HOUR },
  ];
  await assert.rejects(fw.reconcile(bans), /No such file or directory/);
  assert.equal((await listed(ns)).size, 0, 'the batch was one transaction: the IPv4 host is not there either');
});
