// Puts our table back when something else removes it. The nftables service runs `nft flush ruleset` whenever it
// restarts or reloads (fail2ban #2480), firewall managers reload whole rulesets, and an operator may `nft flush set`
// by hand: each leaves the PBX unprotected, silently, until ami-guard restarts. A check goes through the persistent
// nft writer, no process is started for it: a terse listing of the inet ruleset (~0.3 ms) and one small transaction
// per sample ban that asks the kernel whether it is there without changing anything (~0.5 ms each), never a listing
// of the sets, which takes over half a second at 100k bans.
import type { IpTarget } from '../net/ip.js';
import type { Logger } from '../log.js';

export interface WatchedFirewall {
  /** what is missing or misshapen in our table; empty when it is complete */
  gaps(): Promise<string[]>;
  /** the sets lacking one of these targets, looked up after every write asked for before the call */
  missingFrom(targets: readonly IpTarget[]): Promise<string[]>;
}

export interface FirewallWatchdogOptions {
  readonly firewall: WatchedFirewall;
  /**
   * A few bans that must be in the kernel now, with time to spare; the same ones on every call until they end or
   * are lifted. Empty when none are known: an emptied set then has nothing to lose.
   */
  readonly expected: () => readonly IpTarget[];
  /** recreates the table and puts the bans back; called with what was found missing */
  readonly restore: (missing: readonly string[]) => Promise<void>;
  readonly intervalMs: number;
  readonly logger: Logger;
}

export class FirewallWatchdog {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  /** a check that fails (nft unusable) is logged once until one succeeds again */
  private failing = false;
  private readonly log: Logger;

  constructor(private readonly o: FirewallWatchdogOptions) {
    this.log = o.logger.child({ component: 'nft-watchdog' });
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Stops checking; resolves once a check or restore under way has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One check now, and the restore it calls for; resolves with what was missing (empty when all was in place). */
  async check(): Promise<string[]> {
    const missing = await this.findMissing();
    if (missing.length === 0) return missing;
    this.log.warn({ missing }, 'nft table changed by someone else (flushed, deleted or emptied): restoring it and the bans');
    const started = Date.now();
    await this.o.restore(missing);
    this.log.info({ missing, ms: Date.now() - started }, 'nft table and bans restored');
    return missing;
  }

  // a timeout chain rather than an interval: a slow restore (a reconcile of 100k bans) never overlaps the next check
  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.o.intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.check();
      if (this.failing) this.log.info('nft table check works again');
      this.failing = false;
    } catch (err) {
      if (!this.failing)
        this.log.error({ err: (err as Error).message }, 'nft table check or restore failed; trying again at the next check');
      this.failing = true;
    }
  }

  private async findMissing(): Promise<string[]> {
    const gaps = await this.o.firewall.gaps();
    if (gaps.length > 0) return gaps;
    const sample = this.o.expected();
    if (sample.length === 0) return [];
    const emptied = await this.o.firewall.missingFrom(sample);
    // a ban lifted or lapsed while we looked is not a loss; the next check looks at the next ones
    if (emptied.length === 0 || !sameTargets(sample, this.o.expected())) return [];
    return emptied.map((set) => `elements of set ${set}`);
  }
}

function sameTargets(a: readonly IpTarget[], b: readonly IpTarget[]): boolean {
  return a.length === b.length && a.every((t, i) => t.text === b[i]!.text);
}
