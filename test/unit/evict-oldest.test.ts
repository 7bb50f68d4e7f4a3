// evictOldest deletes exactly what deleting `map.keys().next().value` one at a time would, whatever was set, deleted
// or set again before: checked against that naive eviction on random operation sequences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { afterEviction, evictOldest } from '../../src/evict-oldest.js';

type Op = { op: 'set'; key: number } | { op: 'delete'; key: number } | { op: 'evict'; keep: number };

const ops = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 40 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 40 }) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('evict' as const), keep: fc.integer({ min: 0, max: 30 }) }) },
  ),
  { maxLength: 300 },
);

test('evicts the oldest entries in insertion order down to keep, as one-at-a-time eviction would', () => {
  fc.assert(
    fc.property(ops, (seq: Op[]) => {
      const map = new Map<number, number>();
      const model = new Map<number, number>();
      for (const o of seq) {
        if (o.op === 'set') {
          // set again moves a key to the end, as the daemon's tables do it (delete, then set)
          map.delete(o.key);
          map.set(o.key, o.key);
          model.delete(o.key);
          model.set(o.key, o.key);
        } else if (o.op === 'delete') {
          map.delete(o.key);
          model.delete(o.key);
        } else {
          let expected = 0;
          while (model.size > o.keep) {
            model.delete(model.keys().next().value!);
            expected++;
          }
          assert.equal(evictOldest(map, o.keep), expected);
        }
        assert.deepEqual([...map.keys()], [...model.keys()]);
      }
    }),
    { numRuns: 500 },
  );
});

test('a table bounded at 100k, past the bound on every insertion, keeps the newest', () => {
  const map = new Map<string, number>();
  const max = 100_000;
  for (let i = 0; i < 300_000; i++) {
    map.set(`k${i}`, i);
    if (map.size > max) evictOldest(map, afterEviction(max));
    assert.ok(map.size <= max);
  }
  // the newest afterEviction(max) at least, in order
  const keys = [...map.keys()];
  assert.equal(keys.at(-1), 'k299999');
  assert.ok(keys.length >= afterEviction(max), `${keys.length}`);
  assert.equal(keys[0], `k${300_000 - keys.length}`);
  assert.equal(afterEviction(max), max - 1562);
  assert.equal(afterEviction(10), 9);
});
