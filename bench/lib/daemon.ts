// Runs the real `ami-guard run` (dist/src/cli/main.js) as a child process, like test/support/daemon-process.ts, but
// light enough to sit beside a blast of 100k ban lines: ban lines are recognised by a substring and only their
// address is taken out (with the time they were read); other lines are parsed and kept (the last 2,000).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { now } from './util.js';
import { freePort } from '../../test/support/ports.js';
import { CLI, type LogLine } from '../../test/support/daemon-process.js';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
export { CLI, freePort, type LogLine };

export interface DaemonOptions {
  readonly config: unknown;
  /** node flags before the script, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/x'] */
  readonly nodeArgs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

export interface Daemon {
  readonly child: ChildProcess;
  readonly pid: number;
  /** performance.now() at spawn */
  readonly spawnedAt: number;
  readonly logs: LogLine[];
  /** ban log lines seen so far */
  bans: number;
  /** called for every ban log line with the address and the time it was read */
  onBan: ((address: string, at: number) => void) | null;
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs: number): Promise<{ line: LogLine; at: number }>;
  /** last bytes of output, for error messages */
  tail(): string;
  stop(): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/** where a kept log line records when it was read (performance.now()) */
const AT = '__readAt';
const BAN_MARK = '"event":"ban"';
const ADDRESS = /"address":"([^"]+)"/;

export function startDaemon(o: DaemonOptions): Daemon {
  const dir = mkdtempSync(join(tmpdir(), 'agbench-cfg-'));
  const file = join(dir, 'config.json');
  // a control socket and a state directory of its own (never the host's /run/ami-guard or /var/lib/ami-guard: two
  // daemons of a bench (fleet) must not meet there), unless the benchmark names them
  const config = o.config as { store?: { stateDir?: string }; control?: unknown };
  writeFileSync(
    file,
    JSON.stringify(
      { control: { socket: join(dir, 'control.sock') }, ...config, store: { stateDir: join(dir, 'state'), ...config.store } },
      null,
      2,
    ),
  );
  // the heap limits the daemon runs with in production (its shebang, the Dockerfile), so RSS is measured as deployed
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...(o.nodeArgs ?? []), CLI, 'run', '--config', file], {
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const spawnedAt = now();
  // never leave a daemon behind, whatever happens to the bench
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const logs: LogLine[] = [];
  let tail = '';
  let partial = '';
  const waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (v: { line: LogLine; at: number }) => void }> = [];
  const d: Daemon = {
    child,
    pid: child.pid!,
    spawnedAt,
    logs,
    bans: 0,
    onBan: null,
    exited: new Promise((resolve) =>
      child.once('exit', (code) => {
        process.removeListener('exit', killOnExit);
        resolve(code);
      }),
    ),
    tail: () => tail,
    waitForLog(pred, timeoutMs) {
      const seen = logs.find(pred);
      if (seen) return Promise.resolve({ line: seen, at: (seen[AT] as number | undefined) ?? spawnedAt });
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms waiting for a daemon log line; output:\n${tail}`)),
          timeoutMs,
        );
        const w = {
          pred,
          resolve: (v: { line: LogLine; at: number }) => {
            clearTimeout(timer);
            resolve(v);
          },
        };
        waiters.push(w);
        void d.exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`daemon exited (${String(code)}) while waiting for a log line; output:\n${tail}`));
        });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await d.exited;
      clearTimeout(killer);
      return code;
    },
  };
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    tail = (tail + s).slice(-4000);
  });
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (s: string) => {
    const at = now();
    tail = (tail + s).slice(-4000);
    partial += s;
    let nl: number;
    let start = 0;
    while ((nl = partial.indexOf('\n', start)) !== -1) {
      const line = partial.slice(start, nl);
      start = nl + 1;
      if (line.includes(BAN_MARK)) {
        d.bans++;
        const address = ADDRESS.exec(line)?.[1];
        if (address && d.onBan) d.onBan(address, at);
        continue;
      }
      if (!line.trim()) continue;
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        continue;
      }
      parsed[AT] = at;
      logs.push(parsed);
      if (logs.length > 2000) logs.splice(0, logs.length - 2000);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(parsed)) {
          waiters[i]!.resolve({ line: parsed, at });
          waiters.splice(i, 1);
        }
      }
    }
    partial = partial.slice(start);
  });
  return d;
}

/**
 * The daemon configuration every benchmark uses: the defaults of config/example.json except where the bench must
 * point it (AMI, Redis, namespace) and a node id. Fields only some versions of the schema know are set through
 * AMI_GUARD_* variables instead (see daemonEnv), which a version without them ignores.
 */
export function daemonConfig(o: { amiPort: number; redisUrl: string; netns: string; logLevel?: string }): unknown {
  return {
    ami: { host: '127.0.0.1', port: o.amiPort, username: 'ami-guard', secret: 'bench-secret-5e1d' },
    redis: { url: o.redisUrl, keyPrefix: 'ami-guard:' },
    node: { id: 'bench-node' },
    nft: { table: 'ami_guard', netns: o.netns },
    log: { level: o.logLevel ?? 'info' },
  };
}

export async function daemonEnv(): Promise<NodeJS.ProcessEnv> {
  return { AMI_GUARD_HTTP_PORT: String(await freePort()), AMI_GUARD_HTTP_HOST: '127.0.0.1' };
}

/** GET /metrics of the daemon if this version has an HTTP listener; null otherwise. */
export async function scrapeMetrics(port: string | undefined): Promise<Map<string, number> | null> {
  if (!port) return null;
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return null;
    const out = new Map<string, number>();
    for (const line of (await res.text()).split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const i = line.lastIndexOf(' ');
      const v = Number(line.slice(i + 1));
      if (Number.isFinite(v)) out.set(line.slice(0, i), v);
    }
    return out;
  } catch {
    return null;
  }
}

/** Sum of every series of a metric (all label sets). */
export function metricSum(m: Map<string, number> | null, name: string): number | null {
  if (!m) return null;
  let sum = 0;
  let found = false;
  for (const [k, v] of m) {
    if (k === name || k.startsWith(`${name}{`)) {
      sum += v;
      found = true;
    }
  }
  return found ? sum : null;
}
