// Each daemon writes a small status record to Redis every few seconds, so `ami-guard status`, run on any host that
// reaches Redis, can say which PBXs are up, connected to AMI and banning.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../log.js';

export interface NodeStatus {
  readonly node: string;
  readonly version: string;
  readonly pid: number;
  readonly startedAt: number;
  readonly updatedAt: number;
  readonly stopped: boolean;
  readonly ami: { readonly connected: boolean; readonly reconnects: number };
  readonly firewall: { readonly present: boolean };
  readonly events: number;
  readonly failures: number;
  readonly invalid: number;
  readonly bans: number;
}

/** records of nodes silent for longer than this are pruned from the index */
const FORGET_AFTER_MS = 7 * 86_400_000;

function keys(prefix: string, node: string): { record: string; index: string } {
  return { record: `${prefix}node:${node}`, index: `${prefix}nodes` };
}

export class NodeStatusReporter {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: {
      client: Redis | Cluster;
      keyPrefix: string;
      nodeId: string;
      intervalMs: number;
      collect: () => Promise<Omit<NodeStatus, 'updatedAt' | 'stopped'>>;
      logger: Logger;
    },
  ) {}

  start(): void {
    const tick = (): void => {
      void this.write(false).catch((err: unknown) => this.o.logger.debug({ err: (err as Error).message }, 'status record not written'));
    };
    tick();
    this.timer = setInterval(tick, this.o.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.write(true).catch(() => undefined);
  }

  private async write(stopped: boolean): Promise<void> {
    const status: NodeStatus = { ...(await this.o.collect()), updatedAt: Date.now(), stopped };
    const k = keys(this.o.keyPrefix, this.o.nodeId);
    await Promise.all([
      this.o.client.set(k.record, JSON.stringify(status), 'PX', FORGET_AFTER_MS),
      this.o.client.zadd(k.index, status.updatedAt, this.o.nodeId),
      this.o.client.pexpire(k.index, FORGET_AFTER_MS),
    ]);
  }
}

export async function readNodeStatuses(client: Redis | Cluster, keyPrefix: string, now = Date.now()): Promise<NodeStatus[]> {
  const index = `${keyPrefix}nodes`;
  await client.zremrangebyscore(index, '-inf', now - FORGET_AFTER_MS);
  const nodes = await client.zrange(index, 0, -1);
  const out: NodeStatus[] = [];
  for (const node of nodes) {
    const raw = await client.get(keys(keyPrefix, node).record);
    if (!raw) continue;
    try {
      out.push(JSON.parse(raw) as NodeStatus);
    } catch {
      // a record we cannot read says nothing about the node: skip it
    }
  }
  return out;
}
