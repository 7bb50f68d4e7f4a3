// Each daemon writes a small status record to Redis every few seconds, so `ami-guard status`, run on any host that
// reaches Redis, can say which PBXs are up, connected to AMI and banning.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { printable } from '../store/codec.js';

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

/** What `status` needs to know of a record it could not use; never its raw text. */
export type SkippedStatus = (why: string, node: string) => void;

const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * The status records of the nodes that reported. Records are input like anything read from Redis: a member of the
 * index that is not a node id, or a record that is not the JSON a daemon writes, is skipped (and reported to
 * `skipped`, with the name made printable).
 */
export async function readNodeStatuses(
  client: Redis | Cluster,
  keyPrefix: string,
  now = Date.now(),
  skipped: SkippedStatus = () => undefined,
): Promise<NodeStatus[]> {
  const index = `${keyPrefix}nodes`;
  await client.zremrangebyscore(index, '-inf', now - FORGET_AFTER_MS);
  const nodes = await client.zrange(index, 0, -1);
  const out: NodeStatus[] = [];
  for (const node of nodes) {
    if (!NODE_ID.test(node)) {
      skipped('not a node id', printable(node, 64));
      continue;
    }
    const raw = await client.get(keys(keyPrefix, node).record);
    if (!raw) continue;
    const status = parseStatus(raw);
    if (status) out.push(status);
    else skipped('unreadable status record', node);
  }
  return out;
}

function parseStatus(raw: string): NodeStatus | null {
  if (raw.length > 16_384) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const num = (x: unknown): number | null => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : null);
  const ami = o.ami as Record<string, unknown> | null | undefined;
  const firewall = o.firewall as Record<string, unknown> | null | undefined;
  const fields = {
    startedAt: num(o.startedAt),
    updatedAt: num(o.updatedAt),
    pid: num(o.pid),
    events: num(o.events),
    failures: num(o.failures),
    invalid: num(o.invalid),
    bans: num(o.bans),
    reconnects: num(ami?.reconnects),
  };
  if (typeof o.node !== 'string' || !NODE_ID.test(o.node) || Object.values(fields).some((x) => x === null)) return null;
  if (typeof o.stopped !== 'boolean' || typeof ami?.connected !== 'boolean' || typeof firewall?.present !== 'boolean') return null;
  return {
    node: o.node,
    version: typeof o.version === 'string' ? o.version.slice(0, 64) : '?',
    pid: fields.pid!,
    startedAt: fields.startedAt!,
    updatedAt: fields.updatedAt!,
    stopped: o.stopped,
    ami: { connected: ami.connected, reconnects: fields.reconnects! },
    firewall: { present: firewall.present },
    events: fields.events!,
    failures: fields.failures!,
    invalid: fields.invalid!,
    bans: fields.bans!,
  };
}
