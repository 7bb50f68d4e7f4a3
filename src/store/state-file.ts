// Files in the state directory (store.stateDir, /var/lib/ami-guard by default; systemd's StateDirectory=, a volume in
// Docker). Each is written whole and atomically: a temp file beside it, fsync, rename over the old one, fsync of the
// directory, so a crash or a power cut leaves the old file or the new one, never a mix. What is read back is input
// like any other (a disk error, an older or newer version, someone's editor): a file that cannot be used is set aside
// under another name, said in the log, and the daemon carries on without it; it never stops a start.
import { constants } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';

/** a state file larger than this is not one of ours (200,000 bans with their history take about 60 MB) */
export const MAX_STATE_BYTES = 256 * 1024 * 1024;

export class StateDir {
  private writable: boolean | undefined;
  private readonly log: Logger;

  constructor(
    readonly path: string,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'state', stateDir: path });
  }

  /**
   * Makes the directory if it is missing (only the last part: its parent must exist, as /var/lib does), mode 0700.
   * Resolves to whether files can be written there; when not, the log says why once, and nothing is kept.
   */
  async open(): Promise<boolean> {
    if (this.writable !== undefined) return this.writable;
    try {
      await mkdir(this.path, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return this.unusable(err);
    }
    // a directory we can read but not write (a read-only mount) fails here rather than at the first ban
    const probe = join(this.path, `.probe.${process.pid}`);
    try {
      const fh = await open(probe, constants.O_CREAT | constants.O_WRONLY | constants.O_TRUNC, 0o600);
      await fh.close();
      await unlink(probe);
    } catch (err) {
      return this.unusable(err);
    }
    this.writable = true;
    return true;
  }

  private unusable(err: unknown): false {
    this.writable = false;
    this.log.error(
      { err: (err as Error).message },
      `state directory ${this.path} cannot be written: what ami-guard remembers there will not survive a restart (set store.stateDir, or give it a writable directory)`,
    );
    return false;
  }

  /** The file's bytes, or undefined when there is none. Throws StateFileError for one that cannot be read whole. */
  async read(name: string): Promise<Buffer | undefined> {
    let fh;
    try {
      fh = await open(join(this.path, name), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      throw new StateFileError(code === 'ELOOP' ? 'it is a symbolic link' : (err as Error).message);
    }
    try {
      const stat = await fh.stat();
      if (!stat.isFile()) throw new StateFileError('it is not a regular file');
      if (stat.size > MAX_STATE_BYTES) throw new StateFileError(`it holds ${stat.size} bytes, more than ${MAX_STATE_BYTES}`);
      return await fh.readFile();
    } catch (err) {
      if (err instanceof StateFileError) throw err;
      throw new StateFileError((err as Error).message);
    } finally {
      await fh.close();
    }
  }

  /**
   * Renames an unusable file out of the way (`<name>.bad-<time>`), so the next write does not replace what an
   * operator may want to look at, and says so. Resolves to the new name, or undefined if even that failed.
   */
  async setAside(name: string, why: string): Promise<string | undefined> {
    const aside = `${name}.bad-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      await rename(join(this.path, name), join(this.path, aside));
      return aside;
    } catch (err) {
      this.log.warn({ file: name, why, err: (err as Error).message }, 'could not set an unusable state file aside');
      return undefined;
    }
  }

  /** Writes the file whole and atomically from its chunks, mode 0600. */
  async write(name: string, chunks: AsyncIterable<string> | Iterable<string>): Promise<void> {
    const tmp = join(this.path, `.${name}.${process.pid}.tmp`);
    const fh = await open(tmp, constants.O_CREAT | constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      try {
        for await (const chunk of chunks) await fh.write(chunk);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, join(this.path, name));
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    // the rename itself reaches the disk only with the directory
    const dir = await open(this.path, constants.O_RDONLY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

/** A state file that exists but cannot be used; the message says why, in words for the log. */
export class StateFileError extends Error {}

export interface StateWriterOptions {
  readonly dir: StateDir;
  readonly name: string;
  /** the file's contents now, in chunks (the render may yield to the event loop between them) */
  readonly render: () => AsyncIterable<string> | Iterable<string>;
  readonly logger: Logger;
  /** how long after a change the file is written (default 1,000 ms): a burst of bans is one write */
  readonly delayMs?: number;
  /** called when a write fails (a metric) */
  readonly onFailure?: () => void;
}

/**
 * Keeps one state file up to date with few writes: a change schedules a write `delayMs` later, and changes meanwhile
 * join it. Writes never overlap, and after one that took `d` ms the next waits at least 20 x d, so however fast bans
 * come the daemon spends at most about 5 % of its time writing (a 60 MB file every few seconds at worst).
 */
export class StateWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private lastWriteMs = 0;
  private lastEnded = 0;
  private failing = false;
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly o: StateWriterOptions) {
    this.log = o.logger.child({ component: 'state', file: o.name });
  }

  changed(): void {
    this.dirty = true;
    if (this.closed || this.timer || this.writing) return;
    const gap = Math.max(this.o.delayMs ?? 1_000, 20 * this.lastWriteMs - (Date.now() - this.lastEnded));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, gap);
    this.timer.unref();
  }

  /** Writes now what changed (waiting for a write in progress first); resolves once it is on disk or has failed. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dirty) await this.write();
  }

  /** The last write (at stop); no more after it. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private write(): Promise<void> {
    this.dirty = false;
    const started = Date.now();
    this.writing = this.o.dir
      .write(this.o.name, this.o.render())
      .then(
        () => {
          if (this.failing) this.log.info('state file written again');
          this.failing = false;
        },
        (err: unknown) => {
          this.o.onFailure?.();
          // said once per run of failures (a full disk fails every write), with the cause
          if (!this.failing) this.log.error({ err: (err as Error).message }, 'could not write the state file; retrying');
          this.failing = true;
          this.dirty = true;
        },
      )
      .finally(() => {
        this.lastEnded = Date.now();
        this.lastWriteMs = this.lastEnded - started;
        this.writing = undefined;
        // what changed during the write, or a failed write, goes in the next one
        if (this.dirty && !this.closed) this.changed();
      });
    return this.writing;
  }
}
