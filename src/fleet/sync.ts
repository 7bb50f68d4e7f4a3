// Keeps this node in step with the fleet: applies other nodes' (and the CLI's) bans and unbans as they are
// published, resynchronises from the ban records when the channel cannot vouch for what was missed, and
// reconciles periodically so kernel timeouts are re-asserted from the records (CrowdSec's bouncer never does,
// and lost enforcement for hours: cs-firewall-bouncer #509).
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { BanRecord } from '../store/store.js';
import type { FleetLink, FleetTarget } from '../daemon/daemon.js';
import type { BanChannel, BanNotice, ReceivedBanMessage } from './channel.js';

export interface FleetSyncOptions {
  readonly channel: BanChannel;
  /** this process, as written into the messages it publishes */
  readonly origin: string;
  readonly nodeId: string;
  readonly reconcileIntervalMs: number;
  readonly logger: Logger;
}

export interface FleetSyncEvents {
  /** a ban lifted by another process of the fleet (the CLI, usually) and now lifted here too */
  unban: [{ address: string; by: string }];
}

interface PendingBans {
  readonly bans: BanNotice[];
  done: Promise<void>;
}

export class FleetSync extends EventEmitter<FleetSyncEvents> implements FleetLink {
  private timer: NodeJS.Timeout | undefined;
  private pending: PendingBans | undefined;
  private target: FleetTarget | undefined;
  /** messages applied from other nodes, by type */
  readonly applied = { ban: 0, unban: 0 };

  constructor(private readonly o: FleetSyncOptions) {
    super();
  }

  tail(): Promise<string> {
    return this.o.channel.tail();
  }

  start(from: string, target: FleetTarget): void {
    this.target = target;
    this.o.channel.subscribe(from, {
      message: (m) => this.apply(m),
      resync: (why) => {
        void target.reconcile(`fleet channel ${why}`).catch((err: unknown) => {
          this.o.logger.warn({ err: (err as Error).message }, 'resynchronisation failed; the next periodic reconciliation retries');
        });
      },
    });
    this.timer = setInterval(() => {
      void target.reconcile('periodic').catch((err: unknown) => {
        this.o.logger.warn({ err: (err as Error).message }, 'periodic reconciliation failed');
      });
    }, this.o.reconcileIntervalMs);
    this.timer.unref();
  }

  /**
   * Tells the fleet about a ban this node has already enforced. The bans handed over in one turn of the event loop
   * (the verdicts of one store batch resolve together) go out as one message; each caller's promise settles with it.
   */
  publishBan(ban: BanRecord): Promise<void> {
    if (!this.pending) {
      const batch: PendingBans = { bans: [], done: undefined as unknown as Promise<void> };
      batch.done = new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          if (this.pending === batch) this.pending = undefined;
          this.o.channel.publishBans(batch.bans, { node: this.o.nodeId, origin: this.o.origin }).then(resolve, reject);
        });
      });
      this.pending = batch;
    }
    this.pending.bans.push({ address: ban.address, until: ban.until, reason: ban.reason });
    return this.pending.done;
  }

  /** Tells the fleet about an unban this node has already applied (an operator's, through the control socket). */
  async publishUnban(address: string): Promise<void> {
    await this.o.channel.publish({ type: 'unban', address, until: 0, reason: 'manual', node: this.o.nodeId, origin: this.o.origin });
  }

  private apply(m: ReceivedBanMessage): void {
    if (m.origin === this.o.origin || !this.target) return;
    // the channel reader checked the address and parsed it once
    const target = m.target;
    if (m.type === 'ban') {
      this.applied.ban++;
      this.target.applyBan(target, m.until);
    } else {
      this.applied.unban++;
      this.o.logger.info({ address: target.text, by: m.node }, `unban ${target.text}`);
      this.target.applyUnban(target);
      this.emit('unban', { address: target.text, by: m.node });
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.o.channel.stop();
  }
}
