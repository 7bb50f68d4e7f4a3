// Reconnect delays for the AMI supervisor. Pure: time and randomness come in as arguments so tests can pin them.
//
// The first retry after a healthy connection is drawn from [0, initialMs]: an Asterisk restart closes the socket and
// the port answers again ~0.25 s later, and every second without the connection is a second of unseen attacks.
// Repeated failures grow exponentially with jitter so that a PBX that stays down is not hammered.

export type Jitter = 'full' | 'decorrelated';

export interface BackoffOptions {
  /** upper bound of the first delay */
  initialMs: number;
  /** no delay exceeds this */
  maxMs: number;
  /** full: uniform in [0, min(max, initial·2^n)]; decorrelated: uniform in [initial, 3·previous], capped */
  jitter?: Jitter;
  /** a connection that stayed up this long resets the sequence */
  resetAfterMs?: number;
  /** uniform in [0, 1) */
  random?: () => number;
}

export const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 10_000, resetAfterMs: 30_000 } as const;

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  private readonly jitter: Jitter;
  private readonly resetAfterMs: number;
  private readonly random: () => number;
  private failures = 0;
  private previous = 0;
  private connectedAt: number | null = null;

  constructor(options: Partial<BackoffOptions> = {}) {
    const initialMs = options.initialMs ?? DEFAULT_BACKOFF.initialMs;
    const maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
    if (!(initialMs >= 0 && Number.isFinite(initialMs))) throw new RangeError(`backoff initialMs must be >= 0, got ${initialMs}`);
    if (!(maxMs >= initialMs && Number.isFinite(maxMs))) throw new RangeError(`backoff maxMs must be >= initialMs, got ${maxMs}`);
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.jitter = options.jitter ?? 'full';
    this.resetAfterMs = options.resetAfterMs ?? DEFAULT_BACKOFF.resetAfterMs;
    this.random = options.random ?? Math.random;
  }

  /** Delays handed out since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  /** Call when a connection is established; `next()` resets if it stays up resetAfterMs. */
  connected(nowMs: number): void {
    this.connectedAt = nowMs;
  }

  /** The delay before the next attempt. */
  next(nowMs: number): number {
    if (this.connectedAt !== null && nowMs - this.connectedAt >= this.resetAfterMs) this.reset();
    this.connectedAt = null;
    const n = this.failures++;
    if (n === 0) return (this.previous = this.uniform(0, this.initialMs));
    if (this.jitter === 'decorrelated') {
      const low = Math.max(this.initialMs, 1);
      return (this.previous = Math.min(this.maxMs, this.uniform(low, Math.max(low, this.previous * 3))));
    }
    // 2^n overflows to Infinity long after the cap is reached; min() keeps the ceiling finite.
    return (this.previous = this.uniform(0, Math.min(this.maxMs, this.initialMs * 2 ** n)));
  }

  reset(): void {
    this.failures = 0;
    this.previous = 0;
    this.connectedAt = null;
  }

  private uniform(low: number, high: number): number {
    return Math.round(low + this.random() * (high - low));
  }
}
