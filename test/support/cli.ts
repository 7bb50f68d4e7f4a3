// Runs the real `ami-guard` command line, as an operator would.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './daemon-process.js';

/** where no daemon listens: a CLI run that names no control socket must not reach a daemon running on this machine */
const NO_DAEMON = join(tmpdir(), `ami-guard-test-no-daemon-${process.pid}.sock`);

/** Whether the command names its control socket: in the environment, or in a --config file that sets one. */
function namesSocket(args: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (env['AMI_GUARD_CONTROL_SOCKET'] !== undefined) return true;
  const at = args.indexOf('--config');
  if (at < 0 || at + 1 >= args.length) return false;
  try {
    const cfg = JSON.parse(readFileSync(args[at + 1]!, 'utf8')) as { control?: { socket?: unknown } };
    return cfg.control?.socket !== undefined;
  } catch {
    return false; // not JSON (YAML, or a file a test made unreadable on purpose): the command reports it
  }
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** `input`: what the command reads on stdin (none when absent). */
export function cli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000, input?: string | Buffer): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...(namesSocket(args, env) ? {} : { AMI_GUARD_CONTROL_SOCKET: NO_DAEMON }), ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (input !== undefined) child.stdin!.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ami-guard ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}
