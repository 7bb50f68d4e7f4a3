// What this node last knew its store to be: the store's identity (Store.identity), kept in the state directory so a
// restart still knows it. A different identity at the next look, or none at all, means the store is not the one whose
// bans the kernel enforces (Redis restarted without persistence, FLUSHALL, a failover to an empty replica, a state
// file lost): the daemon then re-seeds the store from the kernel sets instead of emptying them.
import type { Logger } from '../log.js';
import { printable } from './codec.js';
import { StateFileError, type StateDir } from './state-file.js';

export const IDENTITY_FILE = 'store-identity.json';
const ID = /^[\x21-\x7e]{1,200}$/;

export class IdentityFile {
  private id: string | undefined;
  private readonly log: Logger;

  /** `dir` undefined: remembered in memory only (tests, a daemon without a state directory) */
  constructor(
    private readonly dir: StateDir | undefined,
    logger: Logger,
    private readonly store = '',
  ) {
    this.log = logger.child({ component: 'state', file: IDENTITY_FILE });
  }

  /** the identity last remembered, or undefined: never seen (a first start, or the file was lost) */
  get remembered(): string | undefined {
    return this.id;
  }

  /** Reads the file; one that cannot be used is set aside and the identity counts as never seen. */
  async load(): Promise<void> {
    if (!this.dir || !(await this.dir.open())) return;
    let why: string;
    try {
      const bytes = await this.dir.read(IDENTITY_FILE);
      if (bytes === undefined) return;
      const v = JSON.parse(bytes.toString('utf8')) as { id?: unknown } | null;
      if (typeof v?.id === 'string' && ID.test(v.id)) {
        this.id = v.id;
        return;
      }
      why = 'it holds no store identity';
    } catch (err) {
      why = err instanceof StateFileError ? err.message : `it is not JSON (${printable((err as Error).message, 100)})`;
    }
    const aside = await this.dir.setAside(IDENTITY_FILE, why);
    this.log.warn(
      { why, setAsideAs: aside },
      'store identity file unusable, set aside: the store will be checked as if seen for the first time',
    );
  }

  /** Remembers `id` now, and on disk as soon as it is written there (a failure is logged, never thrown). */
  async remember(id: string): Promise<void> {
    this.id = id;
    if (!this.dir || !(await this.dir.open())) return;
    try {
      await this.dir.write(IDENTITY_FILE, [`${JSON.stringify({ id, store: this.store, at: new Date().toISOString() })}\n`]);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'could not write the store identity file; it is remembered until the daemon stops');
    }
  }
}
