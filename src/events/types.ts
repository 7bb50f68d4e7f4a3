import type { IpAddress } from '../net/ip.js';

/** A security event reduced to what the policy needs. Every field came through a parser. */
export interface SecurityEvent {
  /** the `Event:` name, e.g. `InvalidAccountID`, `ChallengeResponseFailed` */
  readonly kind: string;
  /** `PJSIP`, `SIP`, `AMI`, `IAX2`, … as Asterisk reports it */
  readonly service: string;
  /** the genuine RemoteAddress: the one at its place in Asterisk's header order */
  readonly address: IpAddress;
  /** attacker-controlled text (SIP From user, AMI Username): printable, truncated; data only, never a key */
  readonly accountId: string;
  /** attacker-controlled (pjsip: the SIP Call-ID), printable and truncated; tells one request's events apart */
  readonly sessionId: string;
  /** EventTV as Asterisk wrote it (checked), for telling two reports of one request apart */
  readonly eventTv: string;
  /** EventTV as ms since the epoch, null when unparsable */
  readonly eventTime: number | null;
  /** when this process received it, ms since the epoch */
  readonly receivedAt: number;
  readonly severity: string;
  /** SuccessfulAuth only: `UsingPassword: 1` */
  readonly usingPassword: boolean;
}

/** How an injected line showed itself. */
export type InjectionSign =
  /** a header Asterisk writes once came twice */
  | 'repeated-header'
  /** a header where Asterisk never puts it */
  | 'out-of-place'
  /** a line Asterisk never writes in this event (no `: `, or a name it does not use) */
  | 'foreign-line'
  /** the event ended before its address lines: an empty line was injected */
  | 'cut-short'
  /** a bare CR or LF inside a value: lines were attempted even if they did not split */
  | 'control-characters'
  /** text after an event's end that is no message of its own: the split-off rest of an injected event */
  | 'fragment';

/**
 * Evidence that attacker text tried to write AMI lines of its own. `source` is the genuine RemoteAddress of the
 * event that carried it, when it could be told apart from forged ones; the forged addresses are never reported.
 */
export interface Injection {
  readonly source: IpAddress | null;
  /** the kind of the event that carried the injection ('' when only a fragment was seen) */
  readonly kind: string;
  /** what the attacker wrote in AccountID, made printable and truncated */
  readonly account: string;
  readonly sign: InjectionSign;
  readonly receivedAt: number;
}
