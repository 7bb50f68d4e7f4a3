// Store.failing's shared part: which of many counting targets to show. A fleet under a spoofed flood may hold 100k
// windows; the operator sees a handful, so only the best `limit` are kept as they stream past (a sorted insert into
// an array of at most `limit`, which is small), never all of them sorted.
import type { IpTarget } from '../net/ip.js';
import type { WindowFailure } from './codec.js';

/** the most `status` ever asks for; a larger limit is refused rather than make the kept list a sort of everything */
export const FAILING_LIMIT_MAX = 1_000;

export function checkLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 0 || limit > FAILING_LIMIT_MAX) throw new RangeError(`invalid limit ${limit}`);
  return limit;
}

/** A candidate before its threshold is known (the Redis store reads that for the kept ones only). */
export interface Candidate {
  readonly target: IpTarget;
  readonly failures: number;
  readonly last: number;
  readonly account: string;
}

/** more failures first, then the most recent; the target's text last, so equal candidates have one order */
function before(a: Candidate, b: Candidate): boolean {
  if (a.failures !== b.failures) return a.failures > b.failures;
  if (a.last !== b.last) return a.last > b.last;
  return a.target.text < b.target.text;
}

/** The best `limit` candidates seen, in order, and how many were seen. */
export class TopFailing<T extends Candidate = Candidate> {
  total = 0;
  readonly kept: T[] = [];

  constructor(private readonly limit: number) {}

  add(c: T): void {
    this.total++;
    const k = this.kept;
    if (k.length === this.limit && (this.limit === 0 || !before(c, k[k.length - 1]!))) return;
    let i = k.length;
    while (i > 0 && before(c, k[i - 1]!)) i--;
    k.splice(i, 0, c);
    if (k.length > this.limit) k.pop();
  }
}

/**
 * The failures of a window within findtime (at > cutoff), weighted, and the newest; null when none counts. Weights
 * come from Redis, which anyone may have written to: a weight that is not a whole number in range makes the whole
 * window unusable (null), never a count of 1e20.
 */
export function countWithin(failures: readonly WindowFailure[], cutoff: number): { failures: number; last: number } | null {
  let count = 0;
  let last = -1;
  for (const f of failures) {
    if (!Number.isSafeInteger(f.weight) || f.weight < 0 || f.weight > 1_000_000) return null;
    if (f.at <= cutoff || f.weight === 0) continue;
    count += f.weight;
    if (f.at > last) last = f.at;
  }
  return count > 0 ? { failures: count, last } : null;
}

/** The threshold a target's record gives it, as record-activity.lua decides it. */
export function thresholdOf(
  p: { maxretry: number; offenderMaxretry: number; trust: { maxretry: number } },
  trusted: boolean,
  offender: boolean,
): number {
  if (trusted) return p.trust.maxretry;
  return offender ? Math.min(p.maxretry, p.offenderMaxretry) : p.maxretry;
}
