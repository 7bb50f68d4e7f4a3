// "did you mean policy.maxretry?": the known name closest to a misspelled one, as git and cargo suggest commands.

/** Edit distance counting a swap of two neighbours as one edit (optimal string alignment), case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const d: number[][] = Array.from({ length: s.length + 1 }, (_, i) => [i, ...new Array<number>(t.length).fill(0)]);
  for (let j = 1; j <= t.length; j++) d[0]![j] = j;
  for (let i = 1; i <= s.length; i++) {
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[s.length]![t.length]!;
}

/**
 * The candidate nearest to `wrong`, or undefined when none is near enough to be a likely typo: at most a third of
 * the name's length, and never more than 4 edits. `sep` splits dotted paths, so a field put in the wrong section
 * (`maxretry` at the top level, `policy.scanner.bantime`) is found by its last part.
 */
export function nearest(wrong: string, candidates: Iterable<string>, sep?: string): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const leaf = (p: string): string => (sep ? p.slice(p.lastIndexOf(sep) + 1) : p);
  for (const c of candidates) {
    let score = editDistance(wrong, c);
    // the right name in the wrong place: one edit away, whatever the section
    if (sep && leaf(c).toLowerCase() === leaf(wrong).toLowerCase()) score = Math.min(score, 1);
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  if (best === undefined) return undefined;
  return bestScore <= Math.min(4, Math.max(1, Math.floor(best.length / 3))) ? best : undefined;
}

/** `(did you mean X?)` or nothing. */
export function didYouMean(wrong: string, candidates: Iterable<string>, sep?: string): string {
  const n = nearest(wrong, candidates, sep);
  return n === undefined ? '' : ` (did you mean ${n}?)`;
}
