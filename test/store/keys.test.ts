import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeySpace } from '../../src/store/keys.js';

describe('KeySpace', () => {
  const keys = new KeySpace('ami-guard:');

  it('builds hash-tagged keys from canonical addresses and networks', () => {
    assert.deepEqual(keys.target('198.51.100.7'), {
      fail: 'ami-guard:{198.51.100.7}:fail', ban: 'ami-guard:{198.51.100.7}:ban', hist: 'ami-guard:{198.51.100.7}:hist',
      chal: 'ami-guard:{198.51.100.7}:chal', trust: 'ami-guard:{198.51.100.7}:trust',
    });
    assert.equal(keys.target('2001:db8::/32').ban, 'ami-guard:{2001:db8::/32}:ban');
    assert.equal(keys.banIndex, 'ami-guard:bans');
  });

  it('refuses anything that is not canonical parser output', () => {
    for (const bad of [
      '', '1.2.3.4}:x', '1.2.3.4 ', '010.1.1.1', '2001:DB8::1', '::ffff:1.2.3.4', '10.0.0.5/24', '1.2.3.4/32',
      '6001"; flush ruleset; "{x}*\r\n', '{1.2.3.4}', 'fe80::1%eth0',
    ]) {
      assert.throws(() => keys.target(bad), RangeError, JSON.stringify(bad));
    }
  });

  it('refuses a prefix that would move the hash tag or garble keys', () => {
    for (const bad of ['a{b}:', 'x}', 'sp ace:', 'nl\n', 'x'.repeat(65)]) {
      assert.throws(() => new KeySpace(bad), RangeError, JSON.stringify(bad));
    }
    assert.equal(new KeySpace('').banIndex, 'bans');
  });
});
