// The embedded store across restarts: at start its state file (memory-state.ts) is read back into it, and from then
// on every change is written out again (StateWriter: shortly after, and at stop). A file that cannot be used is set
// aside and the store starts empty; the daemon then takes the bans in the kernel sets in (Daemon.reconcile), so a
// ban never ends early because a file was lost.
import type { Logger } from '../log.js';
import type { MemoryStore } from './memory-store.js';
import { STATE_FILE, parseState, renderState } from './memory-state.js';
import { StateFileError, StateWriter, type StateDir } from './state-file.js';

export interface EmbeddedStateOptions {
  readonly store: MemoryStore;
  readonly dir: StateDir;
  /** node.id, written into the file's first line */
  readonly nodeId: string;
  readonly logger: Logger;
  /** a write failed (a metric) */
  readonly onWriteFailure?: () => void;
}

/** Loads the state file into the store and keeps it written; undefined when the directory cannot be written. */
export async function persistEmbeddedStore(o: EmbeddedStateOptions): Promise<StateWriter | undefined> {
  const log = o.logger.child({ component: 'state', file: STATE_FILE });
  if (!(await o.dir.open())) return undefined;
  let why: string | undefined;
  try {
    const bytes = await o.dir.read(STATE_FILE);
    if (bytes === undefined) {
      log.info({ stateDir: o.dir.path }, 'no state file yet: the embedded store starts empty and takes in the bans in the kernel sets');
    } else {
      const state = parseState(bytes);
      o.store.load(state.snapshot);
      const { bans, histories, trusted } = state.snapshot;
      log.info(
        { stateDir: o.dir.path, bans: bans.length, histories: histories.length, trusted: trusted.length, writtenBy: state.node },
        'embedded store state read',
      );
      if (state.skipped > 0) {
        log.warn({ skipped: state.skipped, sample: state.sample }, 'state file lines that are not a valid entry were skipped');
      }
    }
  } catch (err) {
    why = err instanceof StateFileError ? err.message : `it could not be read (${(err as Error).message})`;
  }
  if (why !== undefined) {
    const aside = await o.dir.setAside(STATE_FILE, why);
    log.error(
      { why, setAsideAs: aside ?? null },
      'state file unusable, set aside: the embedded store starts empty and takes in the bans in the kernel sets',
    );
  }
  const writer = new StateWriter({
    dir: o.dir,
    name: STATE_FILE,
    render: () => renderState(o.store.snapshot(), o.nodeId, Date.now()),
    logger: o.logger,
    ...(o.onWriteFailure ? { onFailure: o.onWriteFailure } : {}),
  });
  o.store.observe(() => writer.changed());
  return writer;
}
