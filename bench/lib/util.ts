// Small helpers shared by the benchmarks: percentiles, bounded waits, a cleanup stack, formatting.
import { performance } from 'node:perf_hooks';

export const now = (): number => performance.now();

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Summary {
  readonly n: number;
  readonly min: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentiles of a sample (ms or whatever unit it is in). */
export function summarise(values: readonly number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { n: 0, min: NaN, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const at = (p: number): number => s[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))]!;
  return {
    n,
    min: s[0]!,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    max: s[n - 1]!,
    mean: s.reduce((a, b) => a + b, 0) / n,
  };
}

export function round(v: number, digits = 2): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function roundSummary(s: Summary, digits = 2): Summary {
  return {
    n: s.n,
    min: round(s.min, digits),
    p50: round(s.p50, digits),
    p90: round(s.p90, digits),
    p99: round(s.p99, digits),
    max: round(s.max, digits),
    mean: round(s.mean, digits),
  };
}

/** 1234567 → "1,234,567" */
export function fmtInt(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/** Polls `check` every `intervalMs` until it returns something other than undefined; throws after `timeoutMs`. */
export async function poll<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  intervalMs = 20,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const v = await check();
    if (v !== undefined) return v;
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (intervalMs > 0) await sleep(intervalMs);
    else await new Promise((r) => setImmediate(r));
  }
}

/** Rejects after `ms` unless `p` settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Cleanups registered by a benchmark, run in reverse order when it ends (pass, fail or timeout). */
export class Cleanups {
  private readonly fns: Array<() => Promise<void> | void> = [];

  add(fn: () => Promise<void> | void): void {
    this.fns.push(fn);
  }

  async run(log: (m: string) => void): Promise<void> {
    while (this.fns.length > 0) {
      const fn = this.fns.pop()!;
      try {
        await withTimeout(Promise.resolve().then(fn), 20_000, 'cleanup step');
      } catch (err) {
        log(`cleanup step failed: ${(err as Error).message}`);
      }
    }
  }
}

/** An IPv4 address from a 32-bit number. */
export function ipv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * The i-th synthetic attacker: 198.18.1.0 upwards inside 198.18.0.0/15 (RFC 2544, benchmarking), skipping 198.18.0.x
 * where the recordings put the PBX itself. 130,816 addresses are available.
 */
export const ATTACKER_BASE = (198 << 24) | (18 << 16) | (1 << 8);
export const MAX_ATTACKERS = 2 ** 17 - 256;

export function attacker(i: number): string {
  if (i < 0 || i >= MAX_ATTACKERS) throw new RangeError(`attacker index ${i} out of range`);
  return ipv4((ATTACKER_BASE + i) >>> 0);
}
