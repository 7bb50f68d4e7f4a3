// Runs nft. NftRunner is the seam between the firewall and the nft it drives: NftWriter (nft-writer.ts) keeps one
// long-lived libnftables child for the daemon; SpawnNftRunner starts one `nft` process per call, which suits the
// one-shot CLI verbs and is the fallback setting (`nft.writer: spawn`). Scripts go over stdin and argument vectors
// are fixed, so no shell and no script text ever becomes an argument. Children get a minimal environment: the
// daemon's holds AMI_GUARD_* secrets.
import { spawn } from 'node:child_process';
import { isAbsolute } from 'node:path';

/**
 * missing: binary or library absent; permission: not root; netns: namespace absent; timeout: killed;
 * script: nft refused it; crash: the writer died on this request however often it was restarted
 */
export type NftFailure = 'missing' | 'permission' | 'netns' | 'timeout' | 'script' | 'crash';

export class NftError extends Error {
  override readonly name = 'NftError';

  constructor(
    message: string,
    readonly kind: NftFailure,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** nft's output flags for a read command */
export interface NftOutput {
  /** JSON (`-j`) */
  readonly json?: boolean;
  /** without set elements (`-t`) */
  readonly terse?: boolean;
  /** without counters and element expiry (`-s`) */
  readonly stateless?: boolean;
}

export interface NftRunner {
  /** applies a script as one transaction; rejects with NftError */
  apply(script: string): Promise<void>;
  /** runs one read command, e.g. `list set inet t s`, and resolves with what nft printed */
  list(command: readonly string[], output?: NftOutput): Promise<string>;
  /** ends what the runner keeps running; a no-op for runners that keep nothing */
  close(): Promise<void>;
  /**
   * One set's elements as the kernel's netlink dump sends them, each datagram stamped (set-dump.ts reads it): only a
   * runner that speaks netlink itself has this (the persistent writer). Rejects with NftError, `No such file or
   * directory` when the set is not there.
   */
  dumpSet?(table: string, set: string): Promise<Buffer>;
  /** the ruleset generation, which every committed transaction moves on by one */
  generation?(): Promise<number>;
  /** one nf_tables netlink batch as encoded by netlink-batch.ts, committed whole or not at all */
  applyBatch?(batch: Buffer): Promise<void>;
}

export interface SpawnNftRunnerOptions {
  /** default 'nft' (looked up in PATH) */
  nftPath?: string;
  /** a name under /run/netns, or an absolute path such as /proc/<pid>/ns/net */
  netns?: string;
  /** a run that takes longer is killed; default 60 s (loading or listing 100k elements takes 1–2 s) */
  timeoutMs?: number;
}

const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
// Command words come from NftScript; nft joins its argv into one command line and parses it, so refuse anything
// that could be more than a word.
const COMMAND_WORD = /^[A-Za-z0-9_]+$/;

/** `/run/netns/<name>` for a name made by `ip netns add`, or the absolute path itself. */
export function netnsPath(netns: string): string {
  if (isAbsolute(netns) && !netns.includes('\0')) return netns;
  if (NETNS_NAME.test(netns)) return `/run/netns/${netns}`;
  throw new Error(`invalid network namespace ${JSON.stringify(netns)}: a name under /run/netns or an absolute path`);
}

/** Throws unless every word of a read command is a plain word. */
export function checkCommand(command: readonly string[]): void {
  const bad = command.find((w) => !COMMAND_WORD.test(w));
  if (bad !== undefined) throw new Error(`refusing nft command word ${JSON.stringify(bad)}`);
}

/**
 * The whole environment of a child: what finds programs and keeps messages parseable. Never the daemon's own,
 * which holds AMI_GUARD_* secrets (the AMI secret, the Redis password).
 */
export function childEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'] || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
}

/** `[file, argv]` running `program args` in our namespace, or in another through nsenter. */
export function inNetns(netns: string | undefined, program: string, args: readonly string[]): [string, string[]] {
  return netns === undefined ? [program, [...args]] : ['nsenter', [`--net=${netns}`, '--', program, ...args]];
}

export class SpawnNftRunner implements NftRunner {
  private readonly nftPath: string;
  private readonly netns: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: SpawnNftRunnerOptions = {}) {
    this.nftPath = options.nftPath ?? 'nft';
    this.netns = options.netns === undefined ? undefined : netnsPath(options.netns);
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  async apply(script: string): Promise<void> {
    await this.exec(['-f', '-'], script);
  }

  list(command: readonly string[], output: NftOutput = {}): Promise<string> {
    checkCommand(command);
    return this.exec([...(output.json ? ['-j'] : []), ...(output.terse ? ['-t'] : []), ...(output.stateless ? ['-s'] : []), ...command]);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private exec(args: readonly string[], stdin?: string): Promise<string> {
    const [file, argv] = inNetns(this.netns, this.nftPath, args);
    return new Promise((resolve, reject) => {
      const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv() });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, this.timeoutMs);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      // nft may exit before reading all of stdin (e.g. it cannot open netlink); its exit status says why
      child.stdin.on('error', () => undefined);
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(this.spawnError(file, e));
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString('utf8');
        if (code === 0 && !timedOut) resolve(Buffer.concat(out).toString('utf8'));
        else reject(timedOut ? this.timeoutError(stderr) : this.exitError(code, stderr));
      });
      child.stdin.end(stdin ?? '');
    });
  }

  private spawnError(file: string, e: NodeJS.ErrnoException): NftError {
    if (e.code === 'ENOENT' && file === 'nsenter') return nsenterMissing();
    if (e.code === 'ENOENT') return this.missing('');
    if (e.code === 'EACCES') return new NftError(`nft at ${this.nftPath} is not executable`, 'missing', '');
    return new NftError(`cannot run ${file}: ${e.message}`, 'missing', '');
  }

  private missing(stderr: string): NftError {
    const message = `nft not found at ${this.nftPath}: install the nftables package (apt-get install -y nftables)`;
    return new NftError(message, 'missing', stderr);
  }

  private timeoutError(stderr: string): NftError {
    return new NftError(`nft did not finish within ${this.timeoutMs} ms and was killed`, 'timeout', stderr);
  }

  private exitError(code: number | null, stderr: string): NftError {
    if (/nsenter: failed to execute .*No such file or directory/.test(stderr)) return this.missing(stderr);
    return nsenterError(stderr, this.netns) ?? nftRefusal(`exit ${String(code)}`, stderr);
  }
}

export function nsenterMissing(): NftError {
  return new NftError('nsenter not found in PATH: install the util-linux package', 'missing', '');
}

/** What nsenter's own complaint means, or undefined when it did not complain. */
export function nsenterError(stderr: string, netns: string | undefined): NftError | undefined {
  if (/nsenter: cannot open .*No such file or directory/.test(stderr)) {
    return new NftError(`network namespace ${netns ?? ''} does not exist`, 'netns', stderr);
  }
  if (/nsenter: reassociate .*Operation not permitted/.test(stderr)) {
    return new NftError(`entering network namespace ${netns ?? ''} needs root`, 'permission', stderr);
  }
  return undefined;
}

/** nft's error text as an NftError: a missing privilege, or a refused script. */
export function nftRefusal(status: string, stderr: string): NftError {
  if (/Operation not permitted|you must be root/.test(stderr)) {
    const message = 'nft needs CAP_NET_ADMIN: run ami-guard as root or grant it CAP_NET_ADMIN';
    return new NftError(`${message} (${errorSummary(stderr)})`, 'permission', stderr);
  }
  return new NftError(`nft failed (${status}): ${errorSummary(stderr)}`, 'script', stderr);
}

// nft echoes the whole offending statement (a 5000-element line) under each error; keep the messages for the log
function errorSummary(stderr: string): string {
  const errors = stderr.split('\n').filter((l) => /Error|not permitted|root/.test(l));
  const text = (errors.length > 0 ? errors : [stderr.trim()]).join('; ');
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
