// The fleet channel on a Redis Stream. The bans of one batch go out as one entry (fields `t bans`, `n` node, `o`
// origin, `b` one line per ban: `<address> <until ms> <reason>`), an unban as one entry of its own (`t unban`, `a`).
// Entries are input from whoever can write to Redis: each is checked and bounded, and a bad one (or a bad line in
// one) is skipped with a warning, never applied and never fatal to the reader.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { parseTarget } from '../net/ip.js';
import { decodeText, encodeText, nodeName } from '../store/codec.js';
import {
  MAX_BANS_PER_MESSAGE,
  compareIds,
  type BanChannel,
  type BanMessage,
  type BanNotice,
  type ChannelHandlers,
  type ReceivedBanMessage,
} from './channel.js';

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
/**
 * The stream expires a week after its last message, as every other key does in time (MAXLEN bounds it while the
 * fleet talks); a reader further behind than that reconciles from the records anyway.
 */
const STREAM_TTL_MS = 7 * 86_400_000;
const ID = /^\d{1,20}-\d{1,20}$/;
/** a `b` field longer than this is not one of ours (500 lines of at most ~100 characters) */
const MAX_PAYLOAD = 64 * 1024;
const LINE = /^(\S{1,64}) (\d{1,15}) ([A-Za-z0-9%._-]{1,200})$/;

export class RedisChannel implements BanChannel {
  readonly key: string;
  private reader: Redis | Cluster | undefined;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: RedisChannelOptions) {
    this.key = `${o.keyPrefix}stream`;
  }

  async publish(m: BanMessage): Promise<void> {
    if (m.type === 'ban') {
      await this.publishBans([m], m);
      return;
    }
    await Promise.all([
      this.o.client.xadd(this.key, 'MAXLEN', '~', this.o.maxlen, '*', 't', 'unban', 'a', m.address, 'n', m.node, 'o', m.origin),
      this.o.client.pexpire(this.key, STREAM_TTL_MS),
    ]);
  }

  async publishBans(bans: readonly BanNotice[], from: { readonly node: string; readonly origin: string }): Promise<void> {
    for (let i = 0; i < bans.length; i += MAX_BANS_PER_MESSAGE) {
      const lines = bans.slice(i, i + MAX_BANS_PER_MESSAGE).map((b) => `${b.address} ${b.until} ${encodeText(b.reason)}`);
      await Promise.all([
        this.o.client.xadd(
          this.key,
          'MAXLEN',
          '~',
          this.o.maxlen,
          '*',
          't',
          'bans',
          'n',
          from.node,
          'o',
          from.origin,
          'b',
          lines.join('\n'),
        ),
        this.o.client.pexpire(this.key, STREAM_TTL_MS),
      ]);
    }
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
        const reply = (await reader.xread('COUNT', READ_COUNT, 'BLOCK', this.o.blockMs ?? 2000, 'STREAMS', this.key, last)) as Array<
          [string, Array<[string, string[]]>]
        > | null;
        if (failing) {
          // whatever was published while we could not read may have been trimmed: start again from the records
          failing = false;
          this.o.logger?.info('fleet channel reachable again; resynchronising');
          handlers.resync('reconnected');
        }
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length >= READ_COUNT && (await this.trimmedSince(last))) handlers.resync('trimmed');
        for (const [id, fields] of entries) {
          if (!ID.test(id)) continue;
          last = id;
          const { messages, bad } = parseEntry(id, fields);
          if (bad > 0) this.o.logger?.warn({ id, bad }, 'malformed fleet message ignored');
          for (const m of messages) handlers.message(m);
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

/** The messages of one stream entry, and how many of its parts were unusable (a whole entry counts as one). */
export function parseEntry(id: string, fields: unknown): { messages: ReceivedBanMessage[]; bad: number } {
  const none = { messages: [], bad: 1 };
  if (!Array.isArray(fields) || fields.length > 32) return none;
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (typeof fields[i] === 'string' && typeof fields[i + 1] === 'string') f.set(fields[i] as string, fields[i + 1] as string);
  }
  const node = nodeName(f.get('n')?.slice(0, 200));
  const origin = (f.get('o') ?? '').slice(0, 200);
  if (f.get('t') === 'unban') {
    const target = canonical(f.get('a'));
    if (!target) return none;
    return { messages: [{ id, type: 'unban', address: target.text, target, until: 0, reason: '', node, origin }], bad: 0 };
  }
  const payload = f.get('b');
  if (f.get('t') !== 'bans' || payload === undefined || payload.length > MAX_PAYLOAD) return none;
  const messages: ReceivedBanMessage[] = [];
  let bad = 0;
  for (const line of payload.split('\n')) {
    const m = LINE.exec(line);
    const target = m ? canonical(m[1]) : null;
    const until = m ? Number(m[2]) : NaN;
    if (!m || !target || !Number.isSafeInteger(until) || messages.length >= MAX_BANS_PER_MESSAGE) {
      bad++;
      continue;
    }
    messages.push({ id, type: 'ban', address: target.text, target, until, reason: decodeText(m[3]!, 64), node, origin });
  }
  return { messages, bad };
}

/** an address or network in the canonical text the parser gives, or null */
function canonical(text: string | undefined) {
  if (text === undefined || text.length > 64) return null;
  const t = parseTarget(text);
  return t && t.text === text ? t : null;
}
