import type { SecurityEvent } from '../events/types.js';
import type { EventDecision, Policy } from './policy.js';
import { afterEviction, evictOldest } from '../evict-oldest.js';

/**
 * One request counts once. pjsip reports a REGISTER with credentials for an ACL-restricted endpoint twice: FailedACL,
 * then ChallengeResponseFailed for the same request (same SessionID, the request's Call-ID, and the same EventTV).
 * That pair, and only that pair, is one guess. Anything else counts each time: the attacker chooses the Call-ID, the
 * nonce and the timing, so a rule that skipped "the same session at the same millisecond" in general let a burst of
 * 60 guesses on one Call-ID count as 7 (issue 11).
 */
export class SameRequestFilter {
  /**
   * address → `${sessionId}\0${eventTime}` of its last FailedACL; bounded, oldest first out (a rotating IPv6 attacker
   * behind an ACL has as many addresses as it likes). The time as a number: EventTV's text is a view into the read it
   * came from, which a remembered string would keep alive.
   */
  private readonly lastAcl = new Map<string, string>();

  constructor(private readonly max = 100_000) {}

  /** addresses remembered */
  get size(): number {
    return this.lastAcl.size;
  }

  /** For a counted event: true when this ChallengeResponseFailed reports the FailedACL just counted for its address. */
  isRepeat(event: SecurityEvent): boolean {
    if (event.kind === 'FailedACL') {
      if (!event.sessionId) return false;
      const key = event.address.text;
      this.lastAcl.delete(key);
      this.lastAcl.set(key, `${event.sessionId}\u0000${event.eventTime}`);
      if (this.lastAcl.size > this.max) evictOldest(this.lastAcl, afterEviction(this.max));
      return false;
    }
    if (event.kind !== 'ChallengeResponseFailed' || this.lastAcl.size === 0) return false;
    const key = event.address.text;
    const last = this.lastAcl.get(key);
    if (last === undefined) return false;
    this.lastAcl.delete(key); // the pair is consumed: a second ChallengeResponseFailed is a second guess
    return event.sessionId !== '' && last === `${event.sessionId}\u0000${event.eventTime}`;
  }
}

/**
 * The policy's decision for each event of a stream, with the second report of one request filtered out: what the
 * daemon and the `replay` dry run both apply. (The policy itself stays a pure function of one event.)
 */
export class StreamDecider {
  private readonly repeats = new SameRequestFilter();

  /** replaced on a reload; the same-request filter's memory stays */
  constructor(public policy: Policy) {}

  decide(event: SecurityEvent): EventDecision {
    const d = this.policy.decide(event);
    // only counted events take part: a FailedACL that counts nothing (weight 0) leaves its ChallengeResponseFailed to count
    if (d.action === 'count' && this.repeats.isRepeat(event)) return { action: 'skip', why: 'same-request' };
    return d;
  }
}
