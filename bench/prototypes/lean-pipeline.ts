// PROTOTYPE (bench only): the daemon's pipeline with three changes, to put a measured number on them.
//   1. AMI bytes are framed and parsed by src/ami/frame-reader.ts (AmiFrameReader) instead of asterisk-manager;
//   2. the failures of one socket read go to Redis as one RedisStore.recordActivity (≤ BATCH events folded per
//      address, one EVALSHA, ban index written in the script) instead of one EVALSHA + ZADD + 2 PEXPIRE per event;
//   3. the per-ban log line goes to an asynchronous (buffered) destination instead of a synchronous pipe write;
//   4. with `fast`, a fast path for the common case (an IPv4 RemoteAddress): the address is matched and its octets
//      turned into one 32-bit number once, and the ignore list and the unbannable ranges are checked on that number
//      instead of building a node SocketAddress (BlockList.check) and re-parsing with ipaddr.js; EventTV is not
//      parsed (nothing on this path uses it). Whether a kind counts is what Policy.decide said about the first event
//      of that kind. Anything else falls back to normalise() + Policy.decide().
// Everything else is the daemon's own code: normalise(), Policy.decide(), the ban cache rule, the same metric
// increments (prom-client counters with the same labels), the same ban log fields, and NftFirewall for the kernel.
import { Counter, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { sanitizeText } from '../../src/events/normalise.js';
import type { RawMessage } from '../../src/events/types.js';
import { parseTarget } from '../../src/net/ip.js';
import { normaliseEvent, type BenchEvent, type BenchFirewall, type BenchPolicy, type BenchStore } from '../lib/src-api.js';

export const BATCH = 200;
const MAX_IN_FLIGHT = 64;

export interface LeanOptions {
  readonly store: BenchStore;
  readonly policy: BenchPolicy;
  readonly firewall: BenchFirewall;
  readonly logger: Logger;
  readonly nodeId: string;
  /** called to pause / resume the source when too many batches are in flight */
  readonly pause: () => void;
  readonly resume: () => void;
  /** the IPv4 fast path (change 4) */
  readonly fast?: boolean;
}

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const FAST_REMOTE = new RegExp(`^IPV4/[A-Za-z]*/${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}/\\d+$`);
const KIND = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const SECURITY = /(?:^|,)\s*security\s*(?:,|$)/i;

/** [first, last] of each IPv4 network, as unsigned 32-bit numbers */
type Ranges = Array<[number, number]>;

function v4Ranges(entries: readonly string[]): Ranges {
  const out: Ranges = [];
  for (const e of entries) {
    const t = parseTarget(e);
    if (!t || t.family !== 4) continue;
    const [a, b, c, d] = (t.kind === 'address' ? t.text : t.network).split('.').map(Number) as [number, number, number, number];
    const base = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
    const bits = t.kind === 'address' ? 32 : t.bits;
    const size = 2 ** (32 - bits);
    out.push([base, base + size - 1]);
  }
  return out;
}

/** ipaddr.js's IPv4 ranges that unbannableReason refuses: unspecified, loopback, multicast, broadcast */
const UNBANNABLE: Ranges = [
  [0x00000000, 0x00ffffff], [0x7f000000, 0x7fffffff], [0xe0000000, 0xefffffff], [0xffffffff, 0xffffffff],
];

function inRanges(n: number, r: Ranges): boolean {
  for (const [a, b] of r) if (n >= a && n <= b) return true;
  return false;
}

function first(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : v?.[0];
}

export class LeanPipeline {
  private readonly reader = new AmiFrameReader();
  private readonly cache = new Map<string, number>();
  private readonly registry = new Registry();
  private readonly events = new Counter({ name: 'e', help: 'e', labelNames: ['kind', 'service'] as const, registers: [this.registry] });
  private readonly failures = new Counter({ name: 'f', help: 'f', labelNames: ['kind'] as const, registers: [this.registry] });
  private readonly skipped = new Counter({ name: 's', help: 's', labelNames: ['why'] as const, registers: [this.registry] });
  private readonly ignoreV4: Ranges;
  /** per kind, what Policy.decide said for it on the general path: counts (with weight) or not a failure */
  private readonly kindDecision = new Map<string, number | 0>();
  fastHits = 0;
  private inFlight = 0;
  private paused = false;
  private idleWaiters: Array<() => void> = [];
  private readonly firewallAdds: Promise<void>[] = [];
  /** security events seen */
  seen = 0;
  bans = 0;
  redisCalls = 0;

  constructor(private readonly o: LeanOptions) {
    this.ignoreV4 = v4Ranges(o.policy.ignoreEntries);
  }

  /** Change 4: the event and whether it counts, for an IPv4 security event; undefined to take the general path. */
  private fastPath(h: RawMessage, now: number): { event: BenchEvent; count: boolean; why?: 'ignored' | 'unbannable' | 'not-a-failure' } | undefined {
    const remote = first(h['remoteaddress']);
    const kind = first(h['event']);
    const privilege = first(h['privilege']);
    if (remote === undefined || kind === undefined || privilege === undefined) return undefined;
    const m = FAST_REMOTE.exec(remote);
    if (!m || !KIND.test(kind) || !SECURITY.test(privilege)) return undefined;
    // the first event of each kind takes the general path, which records what the policy says about the kind
    const weight = this.kindDecision.get(kind);
    if (weight === undefined) return undefined;
    const n = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
    const event: BenchEvent = {
      kind,
      service: first(h['service'])?.trim() ?? '',
      address: { kind: 'address', family: 4, text: `${m[1]}.${m[2]}.${m[3]}.${m[4]}` },
      accountId: sanitizeText(first(h['accountid'])),
      receivedAt: now,
    };
    this.fastHits++;
    if (weight === 0) return { event, count: false, why: 'not-a-failure' };
    if (inRanges(n, this.ignoreV4)) return { event, count: false, why: 'ignored' };
    if (inRanges(n, UNBANNABLE)) return { event, count: false, why: 'unbannable' };
    return { event, count: true };
  }

  push(chunk: Buffer): void {
    const now = Date.now();
    let batch: BenchEvent[] = [];
    for (const f of this.reader.push(chunk)) {
      if (f.banner) continue;
      let e: BenchEvent;
      const fast = this.o.fast ? this.fastPath(f.headers, now) : undefined;
      if (fast) {
        e = fast.event;
        this.seen++;
        this.events.inc({ kind: e.kind, service: e.service });
        if (!fast.count) {
          if (fast.why !== 'not-a-failure') this.skipped.inc({ why: fast.why! });
          continue;
        }
      } else {
        const n = normaliseEvent(f.headers, now);
        if (!n) continue;
        e = n;
        this.seen++;
        this.events.inc({ kind: e.kind, service: e.service });
        const d = this.o.policy.decide(e);
        if (d.action === 'count') this.kindDecision.set(e.kind, d.weight ?? 1);
        else if (d.why === 'not-a-failure') this.kindDecision.set(e.kind, 0);
        if (d.action === 'skip') {
          if (d.why !== 'not-a-failure') this.skipped.inc({ why: d.why ?? 'unknown' });
          continue;
        }
      }
      const until = this.cache.get(e.address.text);
      if (until !== undefined && until > now) {
        this.skipped.inc({ why: 'already-banned' });
        continue;
      }
      this.failures.inc({ kind: e.kind });
      batch.push(e);
      if (batch.length === BATCH) {
        this.send(batch);
        batch = [];
      }
    }
    if (batch.length > 0) this.send(batch);
  }

  /** Resolves once every batch sent so far has been answered and its bans applied. */
  async idle(): Promise<void> {
    if (this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    await Promise.all(this.firewallAdds.splice(0));
    await this.o.firewall.commit();
  }

  private send(events: BenchEvent[]): void {
    this.inFlight++;
    this.redisCalls++;
    if (this.inFlight >= MAX_IN_FLIGHT && !this.paused) {
      this.paused = true;
      this.o.pause();
    }
    const batch = events.map((e) => ({ address: e.address.text, kind: e.kind, account: e.accountId, at: e.receivedAt }));
    this.o.store.recordEvents(batch, Date.now()).then((verdicts) => {
      const now = Date.now();
      for (let i = 0; i < events.length; i++) {
        const v = verdicts[i]!;
        const e = events[i]!;
        if (v.type === 'banned' && v.ban && this.cache.get(e.address.text) !== v.ban.until) {
          const until = v.ban.until;
          this.cache.set(e.address.text, until);
          this.bans++;
          this.o.logger.info({
            event: 'ban', address: e.address.text, reason: v.ban.reason, count: v.ban.count, kinds: v.ban.kinds, duration: '1h',
            until: new Date(until).toISOString(), previousBans: v.ban.previousBans,
          }, `ban ${e.address.text}`);
          this.firewallAdds.push(this.o.firewall.add(e.address, until - now));
          if (this.firewallAdds.length > 10_000) void Promise.all(this.firewallAdds.splice(0));
        } else if (v.type === 'already-banned' && v.until !== undefined) {
          this.cache.set(e.address.text, v.until);
        }
      }
    }).finally(() => {
      this.inFlight--;
      if (this.paused && this.inFlight < MAX_IN_FLIGHT / 2) {
        this.paused = false;
        this.o.resume();
      }
      if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }
}
