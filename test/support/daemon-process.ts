// Runs the real `ami-guard run` as a child process, the way an operator would, and reads its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CLI = join(process.cwd(), 'dist/src/cli/main.js');

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface DaemonProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  /** everything written to stdout and stderr, raw */
  output(): string;
  /** resolves with the first log line (already seen or future) matching the predicate */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM, then the exit code */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

const configDirs: string[] = [];
// the test process removes its config files when it ends
process.once('exit', () => {
  for (const dir of configDirs) rmSync(dir, { recursive: true, force: true });
});

/** A control socket path in a fresh directory (removed when the test process ends), for one daemon. */
export function controlSocketPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ag-ctl-'));
  configDirs.push(dir);
  return join(dir, 'control.sock');
}

/**
 * Writes a configuration file. Unless it says otherwise, its control socket is a path of its own where nothing
 * listens (the host's /run/ami-guard is never used, and a CLI reading the file finds no daemon: it goes to Redis), and
 * its state directory (store.stateDir) one of its own beside it: the host's /var/lib/ami-guard is never used, and
 * daemons of different tests never share one.
 */
export function writeConfig(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'ag-cfg-'));
  configDirs.push(dir);
  const file = join(dir, 'config.json');
  const withSocket =
    typeof config === 'object' && config !== null && !('control' in config)
      ? { ...config, control: { socket: join(dir, 'control.sock') } }
      : config;
  writeFileSync(file, JSON.stringify(withStateDir(withSocket, join(dir, 'state')), null, 2));
  return file;
}

function withStateDir(config: unknown, stateDir: string): unknown {
  if (typeof config !== 'object' || config === null) return config;
  const store = (config as { store?: Record<string, unknown> }).store;
  if (store && 'stateDir' in store) return config;
  return { ...config, store: { ...store, stateDir } };
}

export function startDaemon(configFile: string, env: NodeJS.ProcessEnv = {}, args: string[] = ['run']): DaemonProcess {
  const child = spawn(process.execPath, [CLI, ...args, '--config', configFile], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let raw = '';
  let partial = '';
  const waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    raw += d;
  });
  child.stdout!.on('data', (d: string) => {
    raw += d;
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        continue;
      }
      logs.push(parsed);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(parsed)) {
          waiters[i]!.resolve(parsed);
          waiters.splice(i, 1);
        }
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    logs,
    output: () => raw,
    exited,
    waitForLog(pred, timeoutMs = 15_000) {
      const seen = logs.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise<LogLine>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for a log line; output so far:\n${raw.slice(-4000)}`)),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`daemon exited (${code}) while waiting for a log line; output:\n${raw.slice(-4000)}`));
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}
