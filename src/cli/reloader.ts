// SIGHUP: read the configuration again (the same file, the same environment, the secret files again) and take on
// what may change while running (src/config/reload.ts). An invalid file changes nothing: the running configuration
// stays, the log says why, and `ami-guard status` shows the failed reload until the next one succeeds. Reloads run one
// at a time; a signal during one is served by one more reload after it.
import type { Logger } from '../log.js';
import type { AppConfig } from '../config/schema.js';
import { planReload } from '../config/reload.js';

export interface ReloadState {
  /** ms since the epoch */
  readonly at: number;
  readonly ok: boolean;
  /** why the configuration read was refused (no secret in it: see ConfigError) */
  readonly error?: string;
  readonly applied?: readonly string[];
  readonly restartNeeded?: readonly string[];
}

export interface ReloaderOptions {
  readonly running: AppConfig;
  /** where the configuration comes from, for the log */
  readonly file: string | undefined;
  /** reads and validates the configuration again; throws ConfigError naming what is wrong */
  readonly load: () => AppConfig;
  /** takes on the changed reloadable fields; throws to keep the running configuration */
  readonly apply: (next: AppConfig, applied: readonly string[]) => Promise<void>;
  readonly logger: Logger;
  readonly now?: () => number;
}

export class Reloader {
  private running: AppConfig;
  private busy: Promise<void> | undefined;
  private again = false;
  private last: ReloadState | null = null;

  constructor(private readonly o: ReloaderOptions) {
    this.running = o.running;
  }

  /** the configuration in force */
  get config(): AppConfig {
    return this.running;
  }

  /** the last reload, for `status`; null before the first */
  get state(): ReloadState | null {
    return this.last;
  }

  /** Reloads now, or once more after the reload under way. Never rejects. */
  reload(): Promise<void> {
    if (this.busy) {
      this.again = true;
      return this.busy;
    }
    this.busy = (async () => {
      do {
        this.again = false;
        await this.once();
      } while (this.again);
    })().finally(() => {
      this.busy = undefined;
    });
    return this.busy;
  }

  private async once(): Promise<void> {
    const at = (this.o.now ?? Date.now)();
    const file = this.o.file ?? null;
    let loaded: AppConfig;
    try {
      loaded = this.o.load();
    } catch (err) {
      const error = (err as Error).message;
      this.last = { at, ok: false, error };
      this.o.logger.error({ file, err: error }, 'configuration reload failed: the running configuration stays');
      return;
    }
    const { next, applied, restartNeeded } = planReload(this.running, loaded);
    if (restartNeeded.length > 0) {
      this.o.logger.warn(
        { fields: restartNeeded },
        `configuration reload: ${restartNeeded.join(', ')} can only change with a restart; the running values stay`,
      );
    }
    try {
      if (applied.length > 0) await this.o.apply(next, applied);
    } catch (err) {
      const error = (err as Error).message;
      this.last = { at, ok: false, error };
      this.o.logger.error({ file, err: error }, 'configuration reload failed: the running configuration stays');
      return;
    }
    this.running = next;
    this.last = { at, ok: true, applied, restartNeeded };
    this.o.logger.info({ file, applied }, applied.length > 0 ? 'configuration reloaded' : 'configuration reloaded: nothing to change');
  }
}
