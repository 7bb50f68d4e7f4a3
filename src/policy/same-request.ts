import type { SecurityEvent } from '../events/types.js';
import type { EventDecision, Policy } from './policy.js';

/**
 * One guess counts once. Asterisk sometimes reports one request with several failure events: pjsip answers a
 * REGISTER with credentials for an ACL-restricted endpoint with FailedACL and then ChallengeResponseFailed, both with
 * the request's Call-ID as SessionID and the same EventTV. A failure with the same session and the same time as the
 * last one counted for its address is that request again, and is not counted twice. (Different guesses on one
 * Call-ID, as svcrack sends them, are milliseconds apart and each count.)
 */
export class SameRequestFilter {
  private readonly last = new Map<string, string>();

  constructor(private readonly max = 100_000) {}

  /** true when this failure repeats the request just counted for this address */
  isRepeat(address: string, sessionId: string, eventTime: number | null): boolean {
    if (!sessionId || eventTime === null) return false;
    const key = `${sessionId}\u0000${eventTime}`;
    const repeat = this.last.get(address) === key;
    this.last.delete(address);
    this.last.set(address, key);
    if (this.last.size > this.max) this.last.delete(this.last.keys().next().value!);
    return repeat;
  }
}

/**
 * The policy's decision for each event of a stream, with repeats of one request filtered out: what the daemon and
 * the `replay` dry run both apply. (The policy itself stays a pure function of one event.)
 */
export class StreamDecider {
  private readonly repeats = new SameRequestFilter();

  constructor(readonly policy: Policy) {}

  decide(event: SecurityEvent): EventDecision {
    const d = this.policy.decide(event);
    if (d.action === 'count' && this.repeats.isRepeat(event.address.text, event.sessionId, event.eventTime)) {
      return { action: 'skip', why: 'same-request' };
    }
    return d;
  }
}
