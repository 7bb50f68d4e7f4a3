import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Backoff, DEFAULT_BACKOFF } from '../../src/ami/backoff.js';

const constant = (x: number) => () => x;

test('the first delay is at most initialMs (250 ms by default), whatever the randomness', () => {
  for (const r of [0, 0.5, 0.999999]) {
    for (const jitter of ['full', 'decorrelated'] as const) {
      const d = new Backoff({ jitter, random: constant(r) }).next(0);
      assert.ok(d >= 0 && d <= DEFAULT_BACKOFF.initialMs, `${jitter} r=${r}: ${d}`);
    }
  }
});

test('full jitter: the ceiling doubles from initialMs up to maxMs', () => {
  const b = new Backoff({ initialMs: 250, maxMs: 10_000, random: constant(1) });
  const delays = Array.from({ length: 10 }, () => b.next(0));
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000]);
});

test('full jitter stays within [0, ceiling] and grows on average', () => {
  const rounds = 2000;
  const sums = new Array<number>(8).fill(0);
  for (let i = 0; i < rounds; i++) {
    const b = new Backoff({ initialMs: 250, maxMs: 10_000 });
    for (let n = 0; n < sums.length; n++) {
      const d = b.next(0);
      assert.ok(d >= 0 && d <= Math.min(10_000, 250 * 2 ** n), `attempt ${n}: ${d}`);
      sums[n]! += d;
    }
  }
  const means = sums.map((s) => s / rounds);
  for (let n = 1; n < means.length; n++) {
    if (250 * 2 ** n <= 10_000) assert.ok(means[n]! > means[n - 1]!, means.join(' '));
  }
  assert.ok(means[7]! > 4000 && means[7]! < 6000, `mean at the cap ${means[7]}`);
});

test('decorrelated jitter: within [initialMs, 3·previous] after the first, capped at maxMs', () => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 0.999999, noNaN: true }), { minLength: 2, maxLength: 30 }), (draws) => {
      let i = 0;
      const b = new Backoff({ initialMs: 100, maxMs: 10_000, jitter: 'decorrelated', random: () => draws[i++ % draws.length]! });
      let previous = b.next(0);
      assert.ok(previous <= 100);
      for (let n = 1; n < draws.length; n++) {
        const d = b.next(0);
        assert.ok(d >= 100 && d <= 10_000, `${d}`);
        assert.ok(d <= Math.max(100, previous * 3) + 1, `${d} after ${previous}`);
        previous = d;
      }
    }),
    { numRuns: 500 },
  );
  const top = new Backoff({ initialMs: 100, maxMs: 10_000, jitter: 'decorrelated', random: constant(0.999999) });
  const delays = Array.from({ length: 8 }, () => top.next(0));
  assert.deepEqual(delays.slice(-2), [10_000, 10_000]);
});

test('a connection that stayed up resetAfterMs resets the sequence; a short one does not', () => {
  const b = new Backoff({ initialMs: 250, maxMs: 10_000, resetAfterMs: 30_000, random: constant(1) });
  b.next(0);
  b.next(0);
  b.next(0);
  b.connected(1_000);
  assert.equal(b.next(5_000), 2000, 'flapping connection keeps growing');
  b.connected(10_000);
  assert.equal(b.next(40_000), 250, 'healthy for 30 s: back to the first delay');
  assert.equal(b.attempts, 1);
});

test('invalid bounds are refused', () => {
  assert.throws(() => new Backoff({ initialMs: -1 }), RangeError);
  assert.throws(() => new Backoff({ initialMs: 500, maxMs: 100 }), RangeError);
  assert.throws(() => new Backoff({ maxMs: Infinity }), RangeError);
});
