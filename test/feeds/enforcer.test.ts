// Feed entries and the daemon's own bans sharing the kernel sets, against real nft in a throwaway namespace: neither
// source cuts the other's timeout short or takes its element away.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { createLogger } from '../../src/log.js';
import { EntriesBuilder, type FeedEntries } from '../../src/feeds/entries.js';
import { FeedEnforcer, type FeedView } from '../../src/feeds/enforcer.js';
import { createNetns } from '../support/netns.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function entries(items: readonly string[], seen = 0): FeedEntries {
  const b = new EntriesBuilder(seen > 0);
  for (const x of items) b.add(t(x), seen);
  return b.build().entries;
}

/** APIBAN-like: held a week from when seen (now) */
function apiban(items: readonly string[]): FeedView {
  return { entries: entries(items, Math.floor(Date.now() / 1000)), untilOf: (seen) => seen * 1000 + 7 * DAY };
}

/** a plain list: held two hours from now */
function plain(items: readonly string[]): FeedView {
  return { entries: entries(items), untilOf: (_seen, now) => now + 2 * HOUR };
}

async function setup(tc: TestContext): Promise<{ fw: NftFirewall; enforcer: FeedEnforcer; kernel: () => Promise<Map<string, number>> }> {
  const ns = await createNetns((fn) => tc.after(fn));
  const fw = new NftFirewall({ netns: ns.name });
  const enforcer = new FeedEnforcer(fw, { logger: createLogger('silent') });
  await enforcer.init();
  const kernel = async () => new Map((await fw.list()).map((e) => [e.address, e.expiresMs ?? -1]));
  return { fw, enforcer, kernel };
}

/** within the minute the test may take; a second over, since ends are kept in whole seconds (rounded up, as the kernel's) */
function near(ms: number | undefined, want: number, what: string): void {
  assert.ok(ms !== undefined && ms <= want + 1000 && ms > want - 60_000, `${what}: ${ms} ms, want ≈${want}`);
}

test("a feed entry outlives the daemon's shorter ban of the same address, and its unban", async (tc) => {
  const { enforcer, kernel } = await setup(tc);
  await enforcer.reconcile([]);
  await enforcer.setView('apiban', apiban(['198.51.100.10', '198.51.100.11']), true);
  near((await kernel()).get('198.51.100.10'), 7 * DAY, 'feed entry');
  // the daemon bans it for an hour: the element keeps the feed's week
  await enforcer.add([
    { target: t('198.51.100.10'), timeoutMs: HOUR },
    { target: t('198.51.100.12'), timeoutMs: HOUR },
  ]);
  near((await kernel()).get('198.51.100.10'), 7 * DAY, 'after an own 1 h ban');
  near((await kernel()).get('198.51.100.12'), HOUR, 'own ban');
  // an operator lifts the daemon's ban: the feed's entry stays
  await enforcer.delete([t('198.51.100.10'), t('198.51.100.12')]);
  const k = await kernel();
  near(k.get('198.51.100.10'), 7 * DAY, 'after the unban');
  assert.ok(!k.has('198.51.100.12'));
});

test("an entry a list drops stays while the daemon's own ban of it lasts, with the ban's time", async (tc) => {
  const { enforcer, kernel } = await setup(tc);
  await enforcer.setView('voipbl', plain(['198.51.100.20', '198.51.100.21']), true);
  await enforcer.add([{ target: t('198.51.100.20'), timeoutMs: 5 * HOUR }]);
  near((await kernel()).get('198.51.100.20'), 5 * HOUR, 'the longer of the two');
  await enforcer.setView('voipbl', plain(['198.51.100.21']), true);
  near((await kernel()).get('198.51.100.20'), 5 * HOUR, 'kept for the own ban');
  await enforcer.setView('voipbl', plain([]), true);
  const k = await kernel();
  assert.ok(!k.has('198.51.100.21'), 'dropped and held by nobody: gone');
  assert.ok(k.has('198.51.100.20'));
});

test('two feeds listing nested networks: dropping the wider one brings the narrower back', async (tc) => {
  const { enforcer, kernel } = await setup(tc);
  await enforcer.setView('wide', plain(['198.51.100.0/24']), true);
  await enforcer.setView('narrow', plain(['198.51.100.0/26', '203.0.113.5']), true);
  // the interval set holds the wider network for both
  let k = await kernel();
  assert.ok(k.has('198.51.100.0/24') && !k.has('198.51.100.0/26'), [...k.keys()].join(' '));
  await enforcer.setView('wide', plain([]), true);
  k = await kernel();
  assert.ok(!k.has('198.51.100.0/24') && k.has('198.51.100.0/26') && k.has('203.0.113.5'), [...k.keys()].join(' '));
});

test("a reconciliation writes the daemon's bans and every feed's entries together, the longest end for each", async (tc) => {
  const { enforcer, kernel, fw } = await setup(tc);
  await enforcer.setView('apiban', apiban(['198.51.100.10']), false);
  await enforcer.setView('voipbl', plain(['198.51.100.20', '198.51.100.10']), false);
  await fw.add([{ target: t('192.0.2.99'), timeoutMs: HOUR }]);
  const r = await enforcer.reconcile([
    { target: t('198.51.100.30'), timeoutMs: HOUR },
    { target: t('198.51.100.20'), timeoutMs: 9 * HOUR },
  ]);
  assert.equal(r.total, 3);
  const k = await kernel();
  assert.deepEqual([...k.keys()].sort(), ['198.51.100.10', '198.51.100.20', '198.51.100.30']);
  near(k.get('198.51.100.10'), 7 * DAY, 'APIBAN beats the list');
  near(k.get('198.51.100.20'), 9 * HOUR, 'the own ban beats the list');
  assert.ok(enforcer.reconciled);
  assert.deepEqual(enforcer.feedsHolding(t('198.51.100.10')), ['apiban', 'voipbl']);
  // after a restore that could not reconcile, reassert() writes the feeds' entries back
  await fw.init();
  await fw.reconcile([]);
  await enforcer.reassert();
  assert.deepEqual([...(await kernel()).keys()].sort(), ['198.51.100.10', '198.51.100.20']);
});
