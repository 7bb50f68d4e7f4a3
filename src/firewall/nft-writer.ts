// The persistent nft writer: one long-lived child (nft-writer.py, libnftables through ctypes) applies each batch as
// one transaction, so a ban costs ~0.2 ms of netlink work instead of an ~8 ms process start. Chosen over a long-lived
// `nft -i`, which runs each line as its own transaction, reports success only by printing nothing and keeps every
// line in an unbounded history (libedit) and in $HOME/.nft.history; libnftables gives a return code and the error
// text per batch, and whole multi-line scripts as one transaction.
//
// Requests go one at a time, in order. If the child dies, it is started again and the request it held is sent
// again: a batch is one netlink transaction, which the kernel commits whole or not at all, and every script we send
// is idempotent (adds, add-then-delete, flush-and-load), so repeating it loses nothing and doubles nothing.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import {
  checkCommand,
  childEnv,
  inNetns,
  netnsPath,
  NftError,
  nftRefusal,
  nsenterError,
  nsenterMissing,
  type NftOutput,
  type NftRunner,
} from './nft-runner.js';

const HELPER = fileURLToPath(new URL('./nft-writer.py', import.meta.url));

/** libnftables' output flags (nftables.h: NFT_CTX_OUTPUT_*) */
const OUTPUT_STATELESS = 1 << 2;
const OUTPUT_JSON = 1 << 4;
const OUTPUT_TERSE = 1 << 11;
/** requests the helper answers by netlink itself (nft-writer.py) */
const DUMP_ELEMENTS = 1 << 24;
const GENERATION = 1 << 25;
const RAW_BATCH = 1 << 26;

/** a child that lived less than this before dying makes the next start wait (a crash loop must not spin) */
const EARLY_DEATH_MS = 1_000;
const MAX_RESTART_DELAY_MS = 5_000;
/** the child's stderr kept for the log when it dies (a Python traceback, a library message) */
const STDERR_KEPT = 2_048;

export interface NftWriterOptions {
  /** a name under /run/netns or an absolute namespace path; default: our own namespace */
  readonly netns?: string;
  /** the Python that runs the helper; default /usr/bin/python3 (Debian's, whatever PATH says) */
  readonly python?: string;
  /** a request unanswered this long kills the child and fails; default 60 s (100k elements take ~1 s) */
  readonly timeoutMs?: number;
  /** tries of one request across deaths of the child, the first included; default 3 */
  readonly attempts?: number;
  readonly logger?: Logger;
  /** called each time a child is started to replace one that died or was killed */
  readonly onRestart?: () => void;
}

interface Request {
  readonly payload: Buffer;
  readonly flags: number;
  readonly resolve: (output: Buffer) => void;
  readonly reject: (e: Error) => void;
  tries: number;
}

interface Reply {
  readonly rc: number;
  readonly output: Buffer;
  readonly error: string;
}

/** The child died, or was killed, with a request unanswered. */
class Died extends Error {}

export class NftWriter implements NftRunner {
  private readonly netns: string | undefined;
  private readonly python: string;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly queue: Request[] = [];
  private busy = false;
  private closed = false;
  private child: WriterProcess | undefined;
  /** a child has run before: the next one is a restart */
  private started = false;
  private earlyDeaths = 0;
  private drained: Array<() => void> = [];

  constructor(private readonly o: NftWriterOptions = {}) {
    this.netns = o.netns === undefined ? undefined : netnsPath(o.netns);
    this.python = o.python ?? '/usr/bin/python3';
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.attempts = o.attempts ?? 3;
  }

  /** the running child's pid, if one runs (tests kill it) */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  async apply(script: string): Promise<void> {
    await this.request(Buffer.from(script, 'utf8'), 0);
  }

  list(command: readonly string[], output: NftOutput = {}): Promise<string> {
    checkCommand(command);
    const flags = (output.json ? OUTPUT_JSON : 0) | (output.terse ? OUTPUT_TERSE : 0) | (output.stateless ? OUTPUT_STATELESS : 0);
    return this.request(Buffer.from(`${command.join(' ')}\n`, 'utf8'), flags).then((b) => b.toString('utf8'));
  }

  dumpSet(table: string, set: string): Promise<Buffer> {
    checkCommand([table, set]);
    return this.request(Buffer.from(`${table}\n${set}`, 'utf8'), DUMP_ELEMENTS);
  }

  async applyBatch(batch: Buffer): Promise<void> {
    await this.request(batch, RAW_BATCH);
  }

  async generation(): Promise<number> {
    const text = (await this.request(Buffer.alloc(0), GENERATION)).toString('latin1');
    if (!/^\d{1,10}$/.test(text))
      throw new NftError(`nft writer answered a generation of ${JSON.stringify(text.slice(0, 20))}`, 'crash', '');
    return Number(text);
  }

  /** Answers what is queued, then ends the child (it exits when its stdin closes). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.busy) await new Promise<void>((resolve) => this.drained.push(resolve));
    const child = this.child;
    this.child = undefined;
    await child?.end();
  }

  private request(payload: Buffer, flags: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('nft writer is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ payload, flags, resolve, reject, tries: 0 });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0) await this.serve(this.queue[0]!);
    } finally {
      this.busy = false;
      const waiting = this.drained;
      this.drained = [];
      for (const w of waiting) w();
    }
  }

  /** Answers the request at the head of the queue, or leaves it there to be sent again to a new child. */
  private async serve(req: Request): Promise<void> {
    const settle = (fn: () => void): void => {
      this.queue.shift();
      fn();
    };
    let child: WriterProcess;
    try {
      // a running child is used at once: a ban's batch then reaches it in the same turn as the read that decided it
      child = this.child?.alive ? this.child : await this.running();
    } catch (e) {
      settle(() => req.reject(e as Error));
      return;
    }
    req.tries++;
    let reply: Reply;
    try {
      reply = await child.send(req.payload, req.flags, this.timeoutMs);
    } catch (e) {
      this.noteDeath(child);
      this.child = undefined;
      if (e instanceof NftError) {
        // timed out: the child was killed; sending the same batch again would most likely hang again
        this.o.logger?.error({ err: e.message, pid: child.pid }, 'nft writer did not answer; killed it, the batch failed');
        settle(() => req.reject(e));
        return;
      }
      const died = e as Died;
      if (req.tries >= this.attempts) {
        this.o.logger?.error({ err: died.message, tries: req.tries }, 'nft writer died on every try of this batch; giving it up');
        settle(() =>
          req.reject(new NftError(`nft writer died ${req.tries} times on this batch: ${died.message}`, 'crash', child.stderr())),
        );
        return;
      }
      this.o.logger?.warn(
        { err: died.message, pid: child.pid, stderr: child.stderr() || undefined },
        'nft writer died with a batch unanswered; restarting it and sending the batch again',
      );
      return; // stays at the head of the queue
    }
    if (req.tries > 1) this.o.logger?.info({ tries: req.tries }, 'nft batch applied by the restarted writer');
    settle(() => (reply.rc === 0 ? req.resolve(reply.output) : req.reject(nftRefusal(`rc ${reply.rc}`, reply.error))));
  }

  /** The running child, or a new one once it is ready; a restart after an early death waits a little first. */
  private async running(): Promise<WriterProcess> {
    if (this.child?.alive) return this.child;
    if (this.child) {
      // it died between batches: nothing was lost, but say so
      this.o.logger?.warn(
        { err: this.child.exitReason, stderr: this.child.stderr() || undefined },
        'nft writer had exited; starting a new one',
      );
      this.noteDeath(this.child);
    }
    this.child = undefined;
    if (this.started) {
      const delay = this.earlyDeaths === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (this.earlyDeaths - 1));
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      this.o.onRestart?.();
      this.o.logger?.warn({ afterMs: delay }, 'nft writer restarted');
    }
    const [file, argv] = inNetns(this.netns, this.python, ['-I', '-S', '-B', HELPER]);
    const child = new WriterProcess(file, argv);
    this.child = child;
    try {
      await child.ready(this.python, this.netns);
    } catch (e) {
      this.child = undefined;
      // nothing ran: the next request tries a fresh start, with no restart counted unless one had run before
      throw e;
    }
    this.started = true;
    return child;
  }

  private noteDeath(child: WriterProcess): void {
    this.earlyDeaths = child.livedMs() < EARLY_DEATH_MS ? this.earlyDeaths + 1 : 0;
  }
}

/** One child: its start, its framed replies, its death. */
class WriterProcess {
  readonly pid: number | undefined;
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly born = performance.now();
  private diedAt: number | undefined;
  private exitText = '';
  private chunks: Buffer[] = [];
  private length = 0;
  /** bytes the frame being received needs in all, once its header is known */
  private need: number | undefined;
  private errText = '';
  private waiting: ((reply: Reply) => void) | undefined;
  private onDeath: Array<(why: string) => void> = [];
  private readyLine: (() => void) | undefined;
  private spawnError: NodeJS.ErrnoException | undefined;

  constructor(file: string, argv: string[]) {
    this.proc = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv() });
    this.pid = this.proc.pid;
    this.proc.stdout.on('data', (b: Buffer) => this.onData(b));
    this.proc.stderr.setEncoding('utf8').on('data', (s: string) => {
      this.errText = (this.errText + s).slice(-STDERR_KEPT);
    });
    // a write into a dead child's pipe: its exit says what happened
    this.proc.stdin.on('error', () => undefined);
    this.proc.on('error', (e: NodeJS.ErrnoException) => {
      this.spawnError = e;
      this.died(`cannot start: ${e.message}`);
    });
    // 'close', not 'exit': every byte it wrote (a reply, its last words on stderr) has been read by then
    this.proc.on('close', (code, signal) => this.died(signal ? `killed by ${signal}` : `exited with code ${String(code)}`));
  }

  get alive(): boolean {
    return this.diedAt === undefined;
  }

  /** how it ended, e.g. `killed by SIGKILL`; empty while it runs */
  get exitReason(): string {
    return this.exitText;
  }

  livedMs(): number {
    return (this.diedAt ?? performance.now()) - this.born;
  }

  stderr(): string {
    return this.errText.trim();
  }

  /** Resolves once the helper printed `ready`; rejects with an NftError naming what to install or fix. */
  ready(python: string, netns: string | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(new NftError('nft writer did not start within 10 s', 'timeout', this.stderr()));
      }, 10_000);
      this.readyLine = () => {
        clearTimeout(timer);
        resolve();
      };
      this.onDeath.push(() => {
        clearTimeout(timer);
        reject(this.startError(python, netns));
      });
    });
  }

  send(payload: Buffer, flags: number, timeoutMs: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (!this.alive) {
        reject(new Died(this.exitText));
        return;
      }
      const timer = setTimeout(() => {
        this.waiting = undefined;
        this.kill();
        reject(new NftError(`nft writer did not answer within ${timeoutMs} ms and was killed`, 'timeout', this.stderr()));
      }, timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        resolve(reply);
      };
      this.onDeath.push((why) => {
        clearTimeout(timer);
        reject(new Died(why));
      });
      // one writev: written apart, the header alone would wake the child, which would then sleep again on the payload
      this.proc.stdin.cork();
      this.proc.stdin.write(`${flags} ${payload.length}\n`);
      this.proc.stdin.write(payload);
      this.proc.stdin.uncork();
    });
  }

  /** Closes stdin (the helper exits at end of input) and waits; kills it if it lingers. */
  async end(): Promise<void> {
    if (!this.alive) return;
    const gone = new Promise<void>((resolve) => this.onDeath.push(() => resolve()));
    this.proc.stdin.end();
    const timer = setTimeout(() => this.kill(), 2_000);
    await gone;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.alive) this.proc.kill('SIGKILL');
  }

  private died(why: string): void {
    if (this.diedAt !== undefined) return;
    this.diedAt = performance.now();
    this.exitText = why;
    this.waiting = undefined;
    const hooks = this.onDeath;
    this.onDeath = [];
    for (const h of hooks) h(why);
  }

  private startError(python: string, netns: string | undefined): NftError {
    const stderr = this.stderr();
    const fallback = 'or set nft.writer to spawn';
    if (this.spawnError?.code === 'ENOENT') {
      if (netns !== undefined) return nsenterMissing();
      return new NftError(
        `python3 not found at ${python}: the nft writer needs it (apt-get install -y python3), ${fallback}`,
        'missing',
        '',
      );
    }
    if (/nsenter: failed to execute .*No such file or directory/.test(stderr)) {
      return new NftError(
        `python3 not found at ${python}: the nft writer needs it (apt-get install -y python3), ${fallback}`,
        'missing',
        stderr,
      );
    }
    const ns = nsenterError(stderr, netns);
    if (ns) return ns;
    if (/libnftables/.test(stderr)) return new NftError(`nft writer: ${stderr.split('\n')[0]}`, 'missing', stderr);
    return new NftError(`nft writer ${this.exitText} before it was ready: ${stderr.slice(-300) || 'no message'}`, 'missing', stderr);
  }

  private onData(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
    // a listing of 100k elements arrives in many chunks: join them once the frame is whole, not at every chunk
    while (this.length > 0 && (this.need === undefined || this.length >= this.need)) {
      const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.length);
      this.chunks = [buf];
      if (!this.frame(buf)) return;
    }
  }

  /** Handles the frame at the start of `buf` if it is whole; false when more bytes are needed first. */
  private frame(buf: Buffer): boolean {
    const nl = buf.indexOf(10);
    if (nl < 0) {
      this.need = buf.length + 1;
      return false;
    }
    const header = buf.toString('latin1', 0, nl);
    if (header === 'ready') {
      this.consume(buf, nl + 1);
      const r = this.readyLine;
      this.readyLine = undefined;
      this.onDeath = [];
      r?.();
      return true;
    }
    const m = /^(-?\d+) (\d+) (\d+)$/.exec(header);
    if (!m) {
      // never from our helper; a child printing anything else cannot be trusted with the next batch
      this.chunks = [];
      this.length = 0;
      this.kill();
      return false;
    }
    const outLen = Number(m[2]);
    const end = nl + 1 + outLen + Number(m[3]);
    if (buf.length < end) {
      this.need = end;
      return false;
    }
    const reply = {
      rc: Number(m[1]),
      // a copy: the frame's bytes may share memory with the next frames
      output: Buffer.from(buf.subarray(nl + 1, nl + 1 + outLen)),
      error: buf.toString('utf8', nl + 1 + outLen, end),
    };
    this.consume(buf, end);
    const w = this.waiting;
    this.waiting = undefined;
    this.onDeath = [];
    w?.(reply);
    return true;
  }

  private consume(buf: Buffer, upTo: number): void {
    const rest = buf.subarray(upTo);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    this.need = undefined;
  }
}
