// The bookkeeping of bans placed on the store's brink: when a failure makes one, and which verdict settles it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EarlyBans } from '../../src/daemon/early-bans.js';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';

const T0 = 1_700_000_000_000;
const t = (text: string): IpTarget => parseTarget(text)!;
const a = t('198.51.100.1');

test('a failure that makes up what the brink said bans; lighter ones count down; the brink is spent by it', () => {
  const e = new EarlyBans();
  assert.equal(e.failure(a, 1, T0), false, 'nothing known: no early ban');
  e.counted(a, { remaining: 3, until: T0 + 600_000 }, 1);
  assert.equal(e.failure(a, 1, T0), false);
  assert.equal(e.failure(a, 1, T0), false);
  assert.equal(e.failure(a, 1, T0), true);
  assert.equal(e.failure(a, 1, T0), false, 'spent');
  e.counted(a, { remaining: 2, until: T0 + 600_000 }, 2);
  assert.equal(e.failure(a, 5, T0), true, 'a heavier failure makes up more');
  assert.equal(e.failure(t('198.51.100.2'), 5, T0), false, 'another target');
});

test('a brink is not relied on near the end of its findtime, nor after it', () => {
  const e = new EarlyBans();
  e.counted(a, { remaining: 1, until: T0 + 10_000 }, 1);
  assert.equal(e.failure(a, 1, T0 + 9_500), false);
  e.counted(a, { remaining: 1, until: T0 + 10_000 }, 2);
  assert.equal(e.failure(a, 1, T0 + 20_000), false);
  assert.equal(e.size.brinks, 0, 'dropped once out of date');
});

test("a verdict without a brink ends it; one from an earlier batch than the brink's is ignored", () => {
  const e = new EarlyBans();
  e.counted(a, { remaining: 1, until: T0 + 600_000 }, 5);
  e.counted(a, undefined, 4);
  assert.equal(e.size.brinks, 1, 'batch 4 knew less than batch 5');
  e.counted(a, undefined, 6);
  assert.equal(e.failure(a, 1, T0), false);
});

test('a login drops the brink, an unban everything; a reload drops every brink but not the bans placed', () => {
  const e = new EarlyBans();
  e.counted(a, { remaining: 1, until: T0 + 600_000 }, 1);
  e.place(t('198.51.100.8'), T0 + 3_601_000, 1);
  e.dropBrink(a);
  e.dropBrink(t('198.51.100.8'));
  assert.equal(e.failure(a, 1, T0), false);
  assert.ok(e.isPlaced(t('198.51.100.8')), 'a login does not unplace a ban');
  e.forget(t('198.51.100.8'));
  assert.ok(!e.isPlaced(t('198.51.100.8')));
  e.counted(a, { remaining: 1, until: T0 + 600_000 }, 1);
  e.forget(a);
  assert.equal(e.failure(a, 1, T0), false);
  const b = t('2001:db8::/64');
  e.counted(a, { remaining: 1, until: T0 + 600_000 }, 2);
  e.counted(b, { remaining: 1, until: T0 + 600_000 }, 2);
  e.place(t('198.51.100.9'), T0 + 3_601_000, 2);
  e.clearBrinks();
  assert.equal(e.failure(a, 1, T0) || e.failure(b, 1, T0), false);
  assert.equal(e.size.placed, 1);
});

test('an early ban is settled by the verdict of a batch taken after it was placed, once', () => {
  const e = new EarlyBans();
  e.place(a, T0 + 3_601_000, 7);
  assert.ok(e.isPlaced(a));
  assert.equal(e.settle(a, 7), undefined, 'batch 7 left the fold before the failure that placed it');
  assert.equal(e.settle(a, 8), T0 + 3_601_000);
  assert.equal(e.settle(a, 9), undefined, 'settled already');
  assert.ok(!e.isPlaced(a));
});

test('the brinks kept are bounded, the older half going when full', () => {
  const e = new EarlyBans(4);
  const targets = ['198.51.100.11', '198.51.100.12', '198.51.100.13', '198.51.100.14', '198.51.100.15'].map(t);
  for (const x of targets) e.counted(x, { remaining: 1, until: T0 + 600_000 }, 1);
  assert.equal(e.size.brinks, 3);
  assert.equal(e.failure(targets[0]!, 1, T0), false, 'the oldest were let go');
  assert.equal(e.failure(targets[1]!, 1, T0), false);
  for (const x of targets.slice(2)) assert.equal(e.failure(x, 1, T0), true);
});
