// `npm run bench [-- NAME… --events=N --addresses=N --bans=N --reconcile-bans=N --f2b-lines=N]`
//
// Runs the benchmarks against a real redis-server (started per benchmark on a free port) and real nft inside
// throwaway network namespaces, prints a table and merges the figures into bench/results/latest.json. Each
// benchmark has a hard time limit, after which it is abandoned and cleaned up (daemon, redis-server, namespaces),
// so a run cannot hang. Needs root (namespaces, nft), redis-server, nftables, iproute2; fail2ban is optional.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { requireNetnsTools } from '../test/support/netns.js';
import { fail2ban } from './benchmarks/fail2ban.js';
import { feeds } from './benchmarks/feeds.js';
import { fleet } from './benchmarks/fleet.js';
import { flood } from './benchmarks/flood.js';
import { latency } from './benchmarks/latency.js';
import { parse } from './benchmarks/parse.js';
import { profile } from './benchmarks/profile.js';
import { reconcile } from './benchmarks/reconcile.js';
import { rotation } from './benchmarks/rotation.js';
import { state } from './benchmarks/state.js';
import { store } from './benchmarks/store.js';
import { throughput } from './benchmarks/throughput.js';
import { loadavg, machine, systemCpu } from './lib/proc.js';
import type { BenchResult, Benchmark, Options, Row } from './lib/types.js';
import { Cleanups, MAX_ATTACKERS, round, sleep } from './lib/util.js';

/** in the order they run by default: parse and throughput before fail2ban, which quotes them */
const ALL: readonly Benchmark[] = [parse, latency, throughput, reconcile, state, store, fail2ban, fleet, feeds, profile];
/** run only when named: they need something outside the machine's own (a live AMI endpoint) */
const ON_REQUEST: readonly Benchmark[] = [flood, rotation];
/** benchmarks that need root, nft and namespaces */
const NEEDS_NETNS = new Set(['latency', 'throughput', 'reconcile', 'state', 'fleet', 'feeds', 'profile', 'rotation']);
/** AGBENCH_RESULTS: write somewhere else (experiments that must not replace the figures of record) */
const RESULTS = process.env['AGBENCH_RESULTS'] ?? join(process.cwd(), 'bench/results/latest.json');

const DEFAULTS: Options = {
  events: 1_000_000,
  addresses: 100_000,
  bans: 1000,
  reconcileBans: 100_000,
  f2bLines: 200_000,
  fleetBans: 500,
  seconds: 60,
};
/** options that take text */
const TEXT_OPTIONS: Record<string, 'ami' | 'amiUser' | 'amiSecret' | 'netns' | 'load'> = {
  ami: 'ami',
  'ami-user': 'amiUser',
  'ami-secret': 'amiSecret',
  netns: 'netns',
  load: 'load',
};
/** a machine using more than this many cores before a benchmark starts is busy with something else */
const QUIET_CORES = 0.3;
let quietWaitS = 180;

function usage(): string {
  return (
    `usage: npm run bench [-- [${ALL.map((b) => b.name).join('|')}]... [--events=N] [--addresses=N] [--bans=N] ` +
    `[--reconcile-bans=N] [--f2b-lines=N] [--fleet-bans=N] [--quiet-wait=SECONDS]]\n` +
    `       npm run bench -- flood --ami=HOST:PORT [--ami-user=U] [--ami-secret=S] [--netns=NS] [--load=CMD | --seconds=N]\n` +
    [...ALL, ...ON_REQUEST].map((b) => `  ${b.name.padEnd(11)} ${b.title} (limit ${b.timeoutMs / 1000} s)`).join('\n')
  );
}

function parseArgs(argv: string[]): { names: string[]; opts: Options } {
  const names: string[] = [];
  const o: Record<string, number> = { ...(DEFAULTS as unknown as Record<string, number>) };
  const keys: Record<string, keyof Options> = {
    events: 'events',
    addresses: 'addresses',
    bans: 'bans',
    'reconcile-bans': 'reconcileBans',
    'f2b-lines': 'f2bLines',
    'fleet-bans': 'fleetBans',
    seconds: 'seconds',
  };
  const text: Record<string, string> = {};
  for (const a of argv) {
    if (a === '--help' || a === '-h') {
      process.stdout.write(`${usage()}\n`);
      process.exit(0);
    }
    const t = /^--([a-z0-9-]+)=(.+)$/.exec(a);
    if (t && TEXT_OPTIONS[t[1]!]) {
      text[TEXT_OPTIONS[t[1]!]!] = t[2]!;
      continue;
    }
    const m = /^--([a-z0-9-]+)=(\d+)$/.exec(a);
    if (m && m[1] === 'quiet-wait') {
      quietWaitS = Number(m[2]);
      continue;
    }
    if (m) {
      const k = keys[m[1]!];
      if (!k) throw new Error(`unknown option ${a}\n${usage()}`);
      o[k] = Number(m[2]);
      continue;
    }
    if (a.startsWith('-')) throw new Error(`unknown option ${a}\n${usage()}`);
    if (![...ALL, ...ON_REQUEST].some((b) => b.name === a)) throw new Error(`unknown benchmark ${a}\n${usage()}`);
    names.push(a);
  }
  const opts = { ...o, ...text } as unknown as Options;
  if (opts.addresses < 1 || opts.addresses > MAX_ATTACKERS) throw new Error(`--addresses must be 1..${MAX_ATTACKERS}`);
  if (opts.reconcileBans > MAX_ATTACKERS) throw new Error(`--reconcile-bans must be ≤ ${MAX_ATTACKERS}`);
  if (opts.bans > MAX_ATTACKERS || opts.fleetBans > MAX_ATTACKERS) throw new Error(`--bans and --fleet-bans must be ≤ ${MAX_ATTACKERS}`);
  return { names, opts };
}

interface Entry {
  readonly title: string;
  readonly ranAt: string;
  readonly seconds: number;
  readonly loadavg: string;
  /** cores the rest of the machine was using just before the start (other sessions, CI…); figures are depressed when high */
  readonly backgroundCores: number;
  readonly options: Options;
  readonly status: 'ok' | 'failed';
  readonly error?: string;
  readonly rows: Row[];
  readonly data: Record<string, unknown>;
}

let current: Cleanups | null = null;

async function runOne(b: Benchmark, opts: Options, earlier: Record<string, BenchResult>): Promise<Entry> {
  const cleanups = new Cleanups();
  current = cleanups;
  const controller = new AbortController();
  const started = Date.now();
  const log = (m: string): void => {
    process.stderr.write(`[${b.name} ${round((Date.now() - started) / 1000, 1)}s] ${m}\n`);
  };
  const background = await waitForQuiet(log);
  const la = loadavg();
  const entry = () => ({
    title: b.title,
    ranAt: new Date(started).toISOString(),
    seconds: round((Date.now() - started) / 1000, 1),
    loadavg: la,
    backgroundCores: background,
    options: opts,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    if (NEEDS_NETNS.has(b.name)) requireNetnsTools();
    const run = b.run({ opts, cleanups, signal: controller.signal, log, earlier });
    run.catch(() => undefined); // after a timeout its late rejection is expected
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new Error(`hard time limit of ${b.timeoutMs / 1000} s reached; abandoned and cleaned up`));
      }, b.timeoutMs);
    });
    const r = await Promise.race([run, limit]);
    earlier[b.name] = r;
    return {
      ...entry(),
      status: 'ok',
      rows: r.rows,
      data: r.data,
    };
  } catch (err) {
    const message = (err as Error).message;
    log(`FAILED: ${message}`);
    return {
      ...entry(),
      status: 'failed',
      error: message,
      data: {},
      rows: [{ figure: b.title, value: 'failed', status: 'failed', note: message.split('\n')[0]!.slice(0, 200) }],
    };
  } finally {
    clearTimeout(timer);
    controller.abort();
    await cleanups.run(log);
    current = null;
  }
}

/**
 * The machine may be shared (other sessions' test runs): waits up to --quiet-wait seconds for the rest of it to use
 * less than QUIET_CORES, measured over 2 s, and returns what it was using when the benchmark starts.
 */
async function waitForQuiet(log: (m: string) => void): Promise<number> {
  const deadline = Date.now() + quietWaitS * 1000;
  let said = false;
  for (;;) {
    const a = systemCpu();
    await sleep(2000);
    const b = systemCpu();
    const cores = round(((b.busy - a.busy) / (b.total - a.total)) * cpus().length, 2);
    if (cores <= QUIET_CORES || Date.now() >= deadline) {
      if (cores > QUIET_CORES) log(`machine still busy (${cores} cores in use by other processes): starting anyway, figures will be low`);
      return cores;
    }
    if (!said) log(`machine busy (${cores} cores in use by other processes); waiting up to ${quietWaitS} s for it to quiet down`);
    said = true;
  }
}

function table(entries: Array<[string, Entry]>): string {
  const rows: string[][] = [['figure', 'value', 'goal', 'verdict', 'note']];
  for (const [, e] of entries) {
    for (const r of e.rows) {
      const verdict = r.status !== 'measured' ? r.status.toUpperCase() : r.met === undefined ? '' : r.met ? 'met' : 'MISSED';
      rows.push([r.figure, r.value, r.goal ?? '', verdict, r.note ?? '']);
    }
  }
  const widths = [0, 1, 2, 3].map((i) => Math.min(60, Math.max(...rows.map((r) => r[i]!.length))));
  return rows
    .map((r, n) => {
      const line =
        r
          .slice(0, 4)
          .map((c, i) => c.padEnd(widths[i]!))
          .join(' | ') + (r[4] ? ` | ${r[4]}` : '');
      return n === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('-|-')}-|-----` : line;
    })
    .join('\n');
}

async function main(): Promise<number> {
  const { names, opts } = parseArgs(process.argv.slice(2));
  const selected = names.length ? [...ALL, ...ON_REQUEST].filter((b) => names.includes(b.name)) : ALL;
  const m = machine();
  process.stderr.write(
    `machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, kernel ${m.kernel}, node ${m.node}, ` +
      `redis ${m.redis}, ${m.nft}; load ${m.loadavgAtStart}; commit ${m.commit}${m.srcDirty ? ' + uncommitted changes' : ''}\n`,
  );
  const earlier: Record<string, BenchResult> = {};
  const entries: Array<[string, Entry]> = [];
  for (const b of selected) {
    process.stderr.write(`\n== ${b.name}: ${b.title}\n`);
    entries.push([b.name, await runOne(b, opts, earlier)]);
  }

  process.stdout.write(`\n${table(entries)}\n`);
  let previous: { benchmarks?: Record<string, Entry> } = {};
  if (existsSync(RESULTS)) {
    try {
      previous = JSON.parse(readFileSync(RESULTS, 'utf8')) as typeof previous;
    } catch {
      previous = {};
    }
  }
  const out = {
    updatedAt: new Date().toISOString(),
    machine: m,
    // a subset run replaces its own benchmarks and keeps the others' latest figures (each says when it ran)
    benchmarks: { ...(previous.benchmarks ?? {}), ...Object.fromEntries(entries) },
  };
  mkdirSync(join(process.cwd(), 'bench/results'), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(out, null, 2)}\n`);
  process.stderr.write(`\nfigures written to ${RESULTS}\n`);
  return entries.some(([, e]) => e.status === 'failed') ? 1 : 0;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`\n${sig}: cleaning up\n`);
    const c = current;
    void (c ? c.run((msg) => process.stderr.write(`${msg}\n`)) : Promise.resolve()).finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(2);
  },
);
