// The daemon's ban cache answers `show` through the control socket: which bans in force cover an address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BanCache } from '../../src/daemon/ban-cache.js';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';

const t = (text: string): IpTarget => parseTarget(text)!;

test("covering: the address's own ban and every banned network containing it, none lapsed, deleted or swept", () => {
  const cache = new BanCache();
  const now = 1_000_000_000_000;
  cache.set(t('203.0.113.0/24'), now + 60_000);
  cache.set(t('203.0.0.0/16'), now + 5_000);
  cache.set(t('203.0.113.5'), now + 30_000);
  cache.set(t('2001:db8::/32'), now + 60_000);
  const names = (target: string, at = now) =>
    cache
      .covering(t(target), at)
      .map((c) => c.target.text)
      .sort();
  assert.deepEqual(names('203.0.113.5'), ['203.0.0.0/16', '203.0.113.0/24', '203.0.113.5']);
  assert.deepEqual(names('203.0.113.6'), ['203.0.0.0/16', '203.0.113.0/24']);
  assert.deepEqual(names('198.51.100.1'), []);
  assert.deepEqual(names('2001:db8::1'), ['2001:db8::/32']);
  // the /16 ends first: not a cover after its end, though not swept yet
  assert.deepEqual(names('203.0.113.6', now + 10_000), ['203.0.113.0/24']);
  cache.delete(t('203.0.113.0/24'));
  assert.deepEqual(names('203.0.113.6'), ['203.0.0.0/16']);
  cache.sweep(now + 10_000);
  assert.deepEqual(names('203.0.113.6'), []);
  assert.equal(cache.isBanned(t('203.0.113.5'), now + 10_000), true);
});
