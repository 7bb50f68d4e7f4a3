/**
 * Deletes a Map's oldest entries (insertion order) until it holds `keep`, in one walk; returns how many went.
 *
 * Evicting one entry per insertion with `map.keys().next()` walks every entry deleted before the first live one,
 * which V8 keeps as holes until it rebuilds the table: past the bound that cost 18–58 µs per insertion at 100k
 * entries. Evicting a slice at a time spreads one such walk over the slice. A live iterator kept between insertions
 * would avoid the walk, but V8 then keeps every table the Map has outgrown or compacted for that iterator's sake:
 * twice the memory for a Map of 200k, more after churn.
 */
export function evictOldest<K>(map: Map<K, unknown>, keep: number): number {
  let evicted = 0;
  for (const key of map.keys()) {
    if (map.size <= keep) break;
    map.delete(key);
    evicted++;
  }
  return evicted;
}

/** What a Map bounded at `max` keeps after overflowing: 1/64 below the bound, so a walk is spent on a slice. */
export function afterEviction(max: number): number {
  return Math.max(0, max - Math.max(1, max >> 6));
}
