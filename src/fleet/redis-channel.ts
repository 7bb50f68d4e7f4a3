import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { compareIds, type BanChannel, type BanMessage, type ChannelHandlers, type ReceivedBanMessage } from './channel.js';

export interface RedisChannelOptions {
  readonly client: Redis | Cluster;
  readonly keyPrefix: string;
  /** entries kept (approximately: MAXLEN ~), so the stream cannot grow without bound */
  readonly maxlen: number;
  readonly logger?: Logger;
  /** how long one XREAD blocks; below the client's command timeout */
  readonly blockMs?: number;
}

const READ_COUNT = 1000;
const ID = /^\d{1,20}-\d{1,20}$/;

export class RedisChannel implements BanChannel {
  readonly key: string;
  private reader: Redis | Cluster | undefined;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: RedisChannelOptions) {
    this.key = `${o.keyPrefix}stream`;
  }

  async publish(m: BanMessage): Promise<void> {
    await this.o.client.xadd(
      this.key, 'MAXLEN', '~', this.o.maxlen, '*',
      't', m.type, 'a', m.address, 'u', String(m.until), 'r', m.reason, 'n', m.node, 'o', m.origin,
    );
  }

  async tail(): Promise<string> {
    const last = await this.o.client.xrevrange(this.key, '+', '-', 'COUNT', 1);
    return last[0]?.[0] ?? '0-0';
  }

  subscribe(fromId: string, handlers: ChannelHandlers): void {
    if (this.running) throw new Error('already subscribed');
    this.running = true;
    // a blocking XREAD holds its connection: it gets one of its own, never the shared, pipelined client
    this.reader = this.o.client.duplicate();
    // a copy does not inherit listeners: without one, ioredis prints every failed reconnect to stderr, unstructured.
    // The outage itself is reported by the read loop below (once) and by the shared client.
    this.reader.on('error', () => undefined);
    this.loop = this.run(this.reader, fromId, handlers);
  }

  private async run(reader: Redis | Cluster, fromId: string, handlers: ChannelHandlers): Promise<void> {
    let last = fromId;
    let failing = false;
    while (this.running) {
      try {
        const reply = (await reader.xread('COUNT', READ_COUNT, 'BLOCK', this.o.blockMs ?? 2000, 'STREAMS', this.key, last)) as
          | Array<[string, Array<[string, string[]]>]>
          | null;
        if (failing) {
          // whatever was published while we could not read may have been trimmed: start again from the records
          failing = false;
          this.o.logger?.info('fleet channel reachable again; resynchronising');
          handlers.resync('reconnected');
        }
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length >= READ_COUNT && (await this.trimmedSince(last))) handlers.resync('trimmed');
        for (const [id, fields] of entries) {
          last = id;
          const m = parseEntry(id, fields);
          if (m) handlers.message(m);
          else this.o.logger?.warn({ id }, 'malformed fleet message ignored');
        }
      } catch (err) {
        if (!this.running) return;
        if (!failing) this.o.logger?.warn({ error: (err as Error).message }, 'fleet channel read failed; retrying');
        failing = true;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** Whether entries after `id` have been trimmed away (Redis 7 reports the highest deleted id). */
  private async trimmedSince(id: string): Promise<boolean> {
    const info = (await this.o.client.call('XINFO', 'STREAM', this.key)) as unknown[];
    for (let i = 0; i + 1 < info.length; i += 2) {
      if (info[i] === 'max-deleted-entry-id' && typeof info[i + 1] === 'string') {
        return compareIds(info[i + 1] as string, id) > 0;
      }
    }
    return false;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.reader?.disconnect();
    await this.loop?.catch(() => undefined);
  }
}

function parseEntry(id: string, fields: string[]): ReceivedBanMessage | null {
  if (!ID.test(id)) return null;
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const type = f.t;
  if ((type !== 'ban' && type !== 'unban') || !f.a) return null;
  const until = Number(f.u ?? '0');
  if (!Number.isSafeInteger(until)) return null;
  return { id, type, address: f.a, until, reason: f.r ?? '', node: f.n ?? '', origin: f.o ?? '' };
}
