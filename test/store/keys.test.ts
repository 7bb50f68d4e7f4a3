import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { BUCKETS, KeySpace, bucketOf, slotOf, tagOf } from '../../src/store/keys.js';

const calculateSlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

function t(text: string): IpTarget {
  const parsed = parseTarget(text);
  assert.ok(parsed, text);
  return parsed;
}

describe('KeySpace', () => {
  const keys = new KeySpace('ami-guard:');

  it("builds keys hash-tagged by the target's bucket from parsed addresses and networks", () => {
    const a = t('198.51.100.7');
    const tag = tagOf(bucketOf(a));
    assert.match(tag, /^[0-9a-f]{3}$/);
    assert.equal(keys.record(a), `ami-guard:{${tag}}198.51.100.7`);
    assert.equal(keys.index(bucketOf(a)), `ami-guard:{${tag}}bans`);
    assert.equal(keys.window(bucketOf(a), 2_833_333), `ami-guard:{${tag}}w2833333`);
    assert.equal(keys.identity, 'ami-guard:id');
    const net = t('2001:db8::/32');
    assert.equal(keys.record(net), `ami-guard:{${tagOf(bucketOf(net))}}2001:db8::/32`);
    // a network is a target of its own, not the address it starts with
    assert.notEqual(keys.record(t('10.0.0.0')), keys.record(t('10.0.0.0/31')));
  });

  it('refuses anything that did not come from the IP parser, whatever its text says', () => {
    for (const text of ['1.2.3.4}:x', '198.51.100.7', '{1.2.3.4}', '6001"; flush ruleset; "{x}*\r\n']) {
      const forged = { kind: 'address', family: 4, text, bits: 32, words: [1] } as unknown as IpTarget;
      assert.throws(() => keys.record(forged), RangeError, JSON.stringify(text));
    }
  });

  it('refuses a prefix that would move the hash tag or garble keys', () => {
    for (const bad of ['a{b}:', 'x}', 'sp ace:', 'nl\n', 'x'.repeat(65)]) {
      assert.throws(() => new KeySpace(bad), RangeError, JSON.stringify(bad));
    }
    assert.equal(new KeySpace('').identity, 'id');
  });

  it('spreads a scan of consecutive addresses evenly over the buckets', () => {
    const counts = new Array<number>(BUCKETS).fill(0);
    const n = 100_000;
    for (let i = 0; i < n; i++) counts[bucketOf(t(`198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`))]!++;
    const mean = n / BUCKETS;
    // Poisson around ~24: a listpack (≤ 128 entries) holds every bucket with room to spare
    assert.ok(Math.max(...counts) < 3 * mean, `fullest bucket ${Math.max(...counts)}`);
    assert.ok(Math.min(...counts) > mean / 4, `emptiest bucket ${Math.min(...counts)}`);
    const v6 = new Set<number>();
    for (let i = 0; i < 1_000; i++) v6.add(bucketOf(t(`2001:db8::${i.toString(16)}`)));
    assert.ok(v6.size > 800, `${v6.size} buckets for 1,000 IPv6 addresses`);
  });

  it("knows each bucket's Cluster slot as ioredis computes it", () => {
    for (const b of [0, 1, 0xa3f, BUCKETS - 1]) assert.equal(slotOf(b), calculateSlot(`ami-guard:{${tagOf(b)}}bans`));
  });
});
