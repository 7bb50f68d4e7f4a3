// Throwaway network namespaces for tests that need a real kernel: each test gets namespaces of its own, so the
// host's ruleset and interfaces are never touched, and everything is torn down through the test's after hook.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** registers cleanup to run when the test (or suite) ends, pass or fail: `after` or `(fn) => t.after(fn)` */
export type RegisterCleanup = (fn: () => Promise<void>) => void;

export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(file: string, args: readonly string[], stdin = ''): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(stdin);
  });
}

async function runOk(file: string, args: readonly string[], stdin = ''): Promise<string> {
  const r = await run(file, args, stdin);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (exit ${String(r.code)}): ${r.stderr.trim()}`);
  return r.stdout;
}

let toolsChecked = false;

/** Throws a message saying exactly what is missing when these tests cannot run here. */
export function requireNetnsTools(): void {
  if (toolsChecked) return;
  if (process.getuid?.() !== 0) throw new Error('network namespace tests need root: run as root (e.g. sudo npm test)');
  for (const tool of ['ip', 'nft', 'nsenter']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) {
      throw new Error(`${tool} not found: apt-get install -y nftables iproute2 util-linux`);
    }
  }
  toolsChecked = true;
}

export class Netns {
  private readonly children = new Set<ChildProcessWithoutNullStreams>();
  private destroyed = false;

  constructor(readonly name: string) {}

  /** for NftFirewall's `netns` option */
  get path(): string {
    return `/run/netns/${this.name}`;
  }

  /** runs a command inside the namespace and resolves with its exit code and output (never rejects on exit code) */
  exec(file: string, args: readonly string[], stdin = ''): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.name, file, ...args], stdin);
  }

  /** like exec, but rejects unless the command exits 0; resolves with stdout */
  execOk(file: string, args: readonly string[], stdin = ''): Promise<string> {
    return runOk('ip', ['netns', 'exec', this.name, file, ...args], stdin);
  }

  /** `nft -f -` with the script on stdin, inside the namespace */
  nft(script: string): Promise<string> {
    return this.execOk('nft', ['-f', '-'], script);
  }

  /** a long-running process inside the namespace; killed by destroy() */
  spawn(file: string, args: readonly string[]): ChildProcessWithoutNullStreams {
    const child = spawn('ip', ['netns', 'exec', this.name, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** kills what runs inside (a live process would keep the namespace alive) and deletes the namespace */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.children].map(killAndWait));
    await runOk('ip', ['netns', 'del', this.name]);
  }
}

function killAndWait(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** A new namespace `agtest-<random>` with `lo` up, deleted when the test ends. */
export async function createNetns(cleanup: RegisterCleanup): Promise<Netns> {
  requireNetnsTools();
  const ns = new Netns(`agtest-${randomBytes(5).toString('hex')}`);
  await runOk('ip', ['netns', 'add', ns.name]);
  cleanup(() => ns.destroy());
  await runOk('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
  return ns;
}

export interface VethEnd {
  readonly ns: Netns;
  /** IPv4 addresses with prefix, e.g. '198.18.0.11/24' */
  readonly v4?: readonly string[];
  /** IPv6 addresses with prefix, e.g. '2001:db8:18::11/64' */
  readonly v6?: readonly string[];
}

/**
 * A veth pair named `veth0` in both namespaces, addressed and up. IPv6 addresses get `nodad` so they are usable at
 * once instead of after duplicate address detection. Deleting either namespace removes the pair.
 */
export async function vethPair(a: VethEnd, b: VethEnd): Promise<void> {
  const ip = (ns: Netns, ...args: string[]) => runOk('ip', ['-n', ns.name, ...args]);
  await ip(a.ns, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', b.ns.name);
  for (const end of [a, b]) {
    for (const addr of end.v4 ?? []) await ip(end.ns, 'addr', 'add', addr, 'dev', 'veth0');
    for (const addr of end.v6 ?? []) await ip(end.ns, '-6', 'addr', 'add', addr, 'dev', 'veth0', 'nodad');
    await ip(end.ns, 'link', 'set', 'veth0', 'up');
  }
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
