// Ban and unban notifications to a webhook (Slack-compatible: the payload has a `text` field). Banning never waits
// for it: notify*() only queues, one worker posts in order with a timeout per request and exponential backoff between
// retries, and a full queue drops its oldest entry. The URL may carry a token (in its path or query) or basic-auth
// credentials, so it is never logged: logs name its origin only.
import { setTimeout as sleep } from 'node:timers/promises';
import Denque from 'denque';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { BanRecord } from '../store/store.js';
import { formatDuration } from '../config/duration.js';

export interface WebhookOptions {
  readonly url: string;
  readonly timeoutMs: number;
  /** retries after the first attempt */
  readonly retries: number;
  /** notifications waiting at most */
  readonly queueSize: number;
  /** node.id, named in unban notifications */
  readonly nodeId: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** delay before the first retry, doubled for each further one up to 30 s; default 1 s */
  readonly backoffMs?: number;
}

type Payload = Record<string, unknown> & { readonly event: 'ban' | 'unban'; readonly text: string };

/** a failed attempt, and whether another could succeed (a 4xx answer will not change by asking again) */
interface Failure {
  readonly retry: boolean;
  readonly why: string;
}

const MAX_BACKOFF_MS = 30_000;
const WARN_INTERVAL_MS = 60_000;
const CLOSE_GRACE_MS = 2_000;
const BY_MAX = 200;

export class WebhookNotifier {
  private readonly target: URL;
  private readonly headers: Record<string, string>;
  private readonly log: Logger;
  // a deque: an array's shift() is a copy of the whole array past ~16k entries, and notify.webhook.queue has no cap
  private readonly queue = new Denque<Payload>();
  private worker: Promise<void> | null = null;
  private closing = false;
  /** ends backoff waits at close, so what is queued gets one attempt each */
  private readonly closeSignal = new AbortController();
  /** aborts the request in flight once the close grace is over */
  private readonly abandon = new AbortController();
  private readonly dropWarning: RateLimitedWarning;
  private readonly failWarning: RateLimitedWarning;

  constructor(private readonly o: WebhookOptions) {
    const { target, authorization } = splitCredentials(o.url);
    this.target = target;
    this.headers = {
      'Content-Type': 'application/json',
      'User-Agent': 'ami-guard',
      ...(authorization ? { Authorization: authorization } : {}),
    };
    this.log = o.logger.child({ component: 'webhook', webhook: target.origin });
    this.dropWarning = new RateLimitedWarning(this.log, 'webhook queue full: oldest notifications dropped');
    this.failWarning = new RateLimitedWarning(this.log, 'webhook notification failed');
    for (const result of ['sent', 'failed', 'dropped']) o.metrics.notifications.inc({ result }, 0);
    this.log.info({ timeoutMs: o.timeoutMs, retries: o.retries, queue: o.queueSize }, 'ban notifications go to a webhook');
  }

  notifyBan(ban: BanRecord): void {
    this.enqueue(banPayload(ban));
  }

  /** for the operator's and the fleet's unbans; `by` names who lifted it (an operator, `fleet`, …) */
  notifyUnban(address: string, by: string): void {
    this.enqueue(unbanPayload(address, by.slice(0, BY_MAX), this.o.nodeId, Date.now()));
  }

  /**
   * Gives what is queued one attempt each, without retries, for up to `graceMs`; then abandons the request in flight
   * and drops the rest (counted).
   */
  async close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    this.closing = true;
    this.closeSignal.abort();
    const timer = setTimeout(() => this.abandon.abort(), graceMs);
    await this.worker;
    clearTimeout(timer);
    if (this.queue.length > 0) {
      this.o.metrics.notifications.inc({ result: 'dropped' }, this.queue.length);
      this.log.warn({ dropped: this.queue.length }, 'stopping: webhook notifications not sent');
      this.queue.clear();
    }
  }

  private enqueue(payload: Payload): void {
    if (this.closing) {
      this.o.metrics.notifications.inc({ result: 'dropped' });
      return;
    }
    if (this.queue.length >= this.o.queueSize) {
      this.queue.shift();
      this.o.metrics.notifications.inc({ result: 'dropped' });
      this.dropWarning.note({ queue: this.o.queueSize });
    }
    this.queue.push(payload);
    this.worker ??= this.drain();
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.abandon.signal.aborted) await this.deliver(this.queue.shift()!);
    this.worker = null;
  }

  private async deliver(payload: Payload): Promise<void> {
    const body = JSON.stringify(payload);
    for (let attempt = 1; ; attempt++) {
      const failure = await this.post(body);
      if (!failure) {
        this.o.metrics.notifications.inc({ result: 'sent' });
        return;
      }
      if (!failure.retry || attempt > this.o.retries || this.closing) {
        this.o.metrics.notifications.inc({ result: 'failed' });
        this.failWarning.note({ event: payload.event, why: failure.why, attempts: attempt });
        return;
      }
      const delay = Math.min((this.o.backoffMs ?? 1_000) * 2 ** (attempt - 1), MAX_BACKOFF_MS);
      await sleep(delay, undefined, { signal: this.closeSignal.signal }).catch(() => undefined);
    }
  }

  private async post(body: string): Promise<Failure | null> {
    // A controller and timer of our own rather than AbortSignal.any([AbortSignal.timeout(…), …]): undici follows
    // the signal through a weak reference, and after a garbage collection the timeout could be lost and the request
    // hang for good (nodejs/node#55428, undici#4068). The timer here holds the controller until it fires or clears.
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(new DOMException('webhook timeout', 'TimeoutError')), this.o.timeoutMs);
    const onAbandon = (): void => attempt.abort(new DOMException('shutdown', 'AbortError'));
    this.abandon.signal.addEventListener('abort', onAbandon, { once: true });
    if (this.abandon.signal.aborted) onAbandon();
    try {
      const res = await fetch(this.target, {
        method: 'POST',
        headers: this.headers,
        body,
        // a redirect would carry the credentials to wherever it points: report it instead of following it
        redirect: 'manual',
        signal: attempt.signal,
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.ok) return null;
      return { retry: res.status >= 500 || res.status === 408 || res.status === 429, why: `HTTP ${res.status}` };
    } catch (err) {
      return { retry: true, why: describe(attempt.signal.aborted ? attempt.signal.reason : err) };
    } finally {
      clearTimeout(timer);
      this.abandon.signal.removeEventListener('abort', onAbandon);
    }
  }
}

/** fetch refuses a URL with credentials in it: they become a basic-auth header */
function splitCredentials(url: string): { target: URL; authorization: string | null } {
  const target = new URL(url);
  if (!target.username && !target.password) return { target, authorization: null };
  const user = decode(target.username);
  const password = decode(target.password);
  target.username = '';
  target.password = '';
  return { target, authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** why a request failed, from codes only: undici's messages can quote the request */
function describe(err: unknown): string {
  const e = err as { name?: string; cause?: { code?: unknown; name?: unknown } };
  if (e.name === 'TimeoutError') return 'timeout';
  if (e.name === 'AbortError') return 'aborted at shutdown';
  const code = e.cause?.code ?? e.cause?.name;
  return typeof code === 'string' ? code : 'network error';
}

function banPayload(ban: BanRecord): Payload {
  const durationMs = ban.until - ban.bannedAt;
  const duration = formatDuration(durationMs);
  const kinds = Object.entries(ban.kinds)
    .map(([kind, n]) => `${kind} ×${n}`)
    .join(', ');
  const why = ban.members?.length
    ? `subnet: ${ban.members.length} of its addresses or prefixes banned: ${listed(ban.members)}`
    : ban.count > 0
      ? `${ban.count} failures: ${kinds}`
      : ban.reason;
  return {
    event: 'ban',
    address: ban.address,
    reason: ban.reason,
    count: ban.count,
    kinds: ban.kinds,
    duration,
    durationSeconds: Math.round(durationMs / 1000),
    bannedAt: new Date(ban.bannedAt).toISOString(),
    until: new Date(ban.until).toISOString(),
    firstSeen: new Date(ban.firstSeen).toISOString(),
    lastSeen: new Date(ban.lastSeen).toISOString(),
    previousBans: ban.previousBans,
    node: ban.node,
    // a subnet ban: the bans of its addresses or prefixes that led to it
    ...(ban.members ? { members: ban.members } : {}),
    text: `ami-guard on ${slack(ban.node)}: banned ${ban.address} for ${duration} (${slack(why)})`,
  };
}

/** the first few of a list, and how many more: a message line stays short whatever maxbans is */
function listed(items: readonly string[], shown = 8): string {
  const more = items.length - shown;
  return `${items.slice(0, shown).join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

function unbanPayload(address: string, by: string, node: string, now: number): Payload {
  return {
    event: 'unban',
    address,
    by,
    node,
    at: new Date(now).toISOString(),
    text: `ami-guard on ${slack(node)}: unbanned ${address} (by ${slack(by)})`,
  };
}

/** Slack reads `<…>` as links and mentions and `&` as the start of an entity */
function slack(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** one warning per interval, carrying how many occurrences it stands for */
class RateLimitedWarning {
  private count = 0;
  private last = -Infinity;

  constructor(
    private readonly log: Logger,
    private readonly message: string,
  ) {}

  note(fields: Record<string, unknown>): void {
    this.count++;
    const now = Date.now();
    if (now - this.last < WARN_INTERVAL_MS) return;
    this.last = now;
    this.log.warn({ ...fields, occurrences: this.count }, this.message);
    this.count = 0;
  }
}
