// OldestFirst evicts exactly what `map.delete(map.keys().next().value)` would, whatever was set, deleted or cleared
// in between: checked against that naive eviction on random operation sequences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { OldestFirst } from '../../src/oldest-first.js';

type Op = { op: 'set'; key: number } | { op: 'delete'; key: number } | { op: 'evict' } | { op: 'clear' };

const ops = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 40 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 40 }) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('evict' as const) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
  ),
  { maxLength: 300 },
);

test('evicts the oldest entry in insertion order, as a fresh iterator would', () => {
  fc.assert(
    fc.property(ops, (seq: Op[]) => {
      const map = new Map<number, number>();
      const model = new Map<number, number>();
      const oldest = new OldestFirst(map);
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
        } else if (o.op === 'clear') {
          map.clear();
          model.clear();
        } else {
          const expected = model.size > 0;
          if (expected) model.delete(model.keys().next().value!);
          assert.equal(oldest.evict(), expected);
        }
        assert.deepEqual([...map.keys()], [...model.keys()]);
      }
    }),
    { numRuns: 500 },
  );
});

test('a table of 100k keeps evicting one per insertion, the oldest each time', () => {
  const map = new Map<string, number>();
  const oldest = new OldestFirst(map);
  for (let i = 0; i < 300_000; i++) {
    map.set(`k${i}`, i);
    if (map.size > 100_000) assert.ok(oldest.evict());
  }
  assert.equal(map.size, 100_000);
  assert.equal(map.keys().next().value, 'k200000');
});
