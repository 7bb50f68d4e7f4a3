// Keeps this node in step with the fleet: applies other nodes' (and the CLI's) bans and unbans as they are
// published, resynchronises from the ban records when the channel cannot vouch for what was missed, and
// reconciles periodically so kernel timeouts are re-asserted from the records (CrowdSec's bouncer never does,
// and lost enforcement for hours: cs-firewall-bouncer #509).
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import { parseTarget } from '../net/ip.js';
import type { BanRecord } from '../store/store.js';
import type { FleetLink, FleetTarget } from '../daemon/daemon.js';
import type { BanChannel, ReceivedBanMessage } from './channel.js';

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

export class FleetSync extends EventEmitter<FleetSyncEvents> implements FleetLink {
  private timer: NodeJS.Timeout | undefined;
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

  /** Tells the fleet about a ban this node has already enforced. */
  async publishBan(ban: BanRecord): Promise<void> {
    await this.o.channel.publish({
      type: 'ban', address: ban.address, until: ban.until, reason: ban.reason, node: this.o.nodeId, origin: this.o.origin,
    });
  }

  /** Tells the fleet about an unban this node has already applied (an operator's, through the control socket). */
  async publishUnban(address: string): Promise<void> {
    await this.o.channel.publish({ type: 'unban', address, until: 0, reason: 'manual', node: this.o.nodeId, origin: this.o.origin });
  }

  private apply(m: ReceivedBanMessage): void {
    if (m.origin === this.o.origin || !this.target) return;
    // the channel is shared: whatever is in it is re-parsed like any other outside input
    const target = parseTarget(m.address);
    if (!target || target.text !== m.address) {
      this.o.logger.warn({ id: m.id }, 'fleet message with an invalid address ignored');
      return;
    }
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
