import type { Cleanups } from './util.js';

/** measured: a figure; skipped: could not run here (says why); not-measured: nothing to measure yet; failed: error */
export type RowStatus = 'measured' | 'skipped' | 'not-measured' | 'failed';

export interface Row {
  readonly figure: string;
  readonly value: string;
  readonly goal?: string;
  /** whether the goal is met; undefined when the row has no goal */
  readonly met?: boolean;
  readonly status: RowStatus;
  readonly note?: string;
}

export interface BenchResult {
  readonly rows: Row[];
  /** every figure behind the rows, written to the JSON */
  readonly data: Record<string, unknown>;
}

export interface Options {
  /** events in the throughput stream */
  readonly events: number;
  /** distinct source addresses in it */
  readonly addresses: number;
  /** bans timed by the latency benchmark */
  readonly bans: number;
  /** active bans loaded before the start-up reconciliation */
  readonly reconcileBans: number;
  /** lines fed to fail2ban-regex */
  readonly f2bLines: number;
  /** bans timed by the fleet benchmark */
  readonly fleetBans: number;
  /** flood: the AMI endpoint (HOST:PORT), its account, the namespace it lives in, a load command, the observation time */
  readonly ami?: string;
  readonly amiUser?: string;
  readonly amiSecret?: string;
  readonly netns?: string;
  readonly load?: string;
  readonly seconds: number;
}

export interface BenchContext {
  readonly opts: Options;
  readonly cleanups: Cleanups;
  /** aborted when the benchmark's hard time limit is reached */
  readonly signal: AbortSignal;
  log(message: string): void;
  /** results of the benchmarks that ran before this one in the same invocation */
  readonly earlier: Readonly<Record<string, BenchResult>>;
}

export interface Benchmark {
  readonly name: string;
  readonly title: string;
  /** hard limit: the benchmark is abandoned and cleaned up after this */
  readonly timeoutMs: number;
  run(ctx: BenchContext): Promise<BenchResult>;
}

export function measured(figure: string, value: string, extra: Partial<Row> = {}): Row {
  return { figure, value, status: 'measured', ...extra };
}
