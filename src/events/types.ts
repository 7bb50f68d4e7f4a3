import type { IpAddress } from '../net/ip.js';

/**
 * One AMI message as headers: keys lower-cased and trimmed (the shape asterisk-manager emits), values as
 * sent. A header that appears more than once keeps every value in order.
 */
export type RawMessage = Record<string, string | string[]>;

/** A security event reduced to what the policy needs. Every field came through a parser. */
export interface SecurityEvent {
  /** the `Event:` name, e.g. `InvalidAccountID`, `ChallengeResponseFailed` */
  readonly kind: string;
  /** `PJSIP`, `SIP`, `AMI`, `IAX2`, … as Asterisk reports it */
  readonly service: string;
  readonly address: IpAddress;
  /** attacker-controlled text (SIP From user, AMI Username): printable, truncated; data only, never a key */
  readonly accountId: string;
  /** EventTV as ms since the epoch, null when absent or unparsable */
  readonly eventTime: number | null;
  /** when this process received it, ms since the epoch */
  readonly receivedAt: number;
  readonly severity: string;
  /** SuccessfulAuth only: `UsingPassword: 1` */
  readonly usingPassword: boolean;
  /** attacker-controlled (pjsip: the SIP Call-ID), printable and truncated; tells one request's events apart */
  readonly sessionId: string;
}
