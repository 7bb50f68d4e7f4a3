// The exact shape of Asterisk's AMI security events, from main/security_events.c (`sec_events[]`) and main/manager.c
// (`__manager_event_sessions_va`). Asterisk writes `Event:` and `Privilege:`, then `Timestamp:` (timestampevents),
// `SequenceNumber:`/`File:`/`Line:`/`Func:` (manager debug) and `SystemName:`, then each kind's required headers in
// table order and the optional ones it has, in table order. Values are never escaped (security_events.c writes
// `"%s: %s\r\n"`), so an attacker who gets CR LF into AccountID can write lines of his own: a header out of this
// order, repeated, or missing is how such a line shows itself.

/** the headers after Event and Privilege that manager.c may add to any event, in their order */
export const PREAMBLE = ['Timestamp', 'SequenceNumber', 'File', 'Line', 'Func', 'SystemName'] as const;

/** The headers every kind but RequestBadFormat starts with, in order. */
const COMMON = ['EventTV', 'Severity', 'Service', 'EventVersion', 'AccountID', 'SessionID', 'LocalAddress', 'RemoteAddress'];
const TAIL = ['Module', 'SessionTV'];

export interface KindSchema {
  readonly required: readonly string[];
  readonly optional: readonly string[];
}

/** Every security event kind of Asterisk 12 to 22, with its headers. */
export const SECURITY_KINDS: Readonly<Record<string, KindSchema>> = {
  FailedACL: { required: COMMON, optional: ['Module', 'ACLName', 'SessionTV'] },
  InvalidAccountID: { required: COMMON, optional: TAIL },
  SessionLimit: { required: COMMON, optional: TAIL },
  MemoryLimit: { required: COMMON, optional: TAIL },
  LoadAverageLimit: { required: COMMON, optional: TAIL },
  RequestNotSupported: { required: [...COMMON, 'RequestType'], optional: TAIL },
  RequestNotAllowed: { required: [...COMMON, 'RequestType'], optional: [...TAIL, 'RequestParams'] },
  AuthMethodNotAllowed: { required: [...COMMON, 'AuthMethod'], optional: TAIL },
  RequestBadFormat: {
    required: ['EventTV', 'Severity', 'Service', 'EventVersion', 'SessionID', 'LocalAddress', 'RemoteAddress', 'RequestType'],
    optional: [...TAIL, 'AccountID', 'RequestParams'],
  },
  SuccessfulAuth: { required: [...COMMON, 'UsingPassword'], optional: TAIL },
  UnexpectedAddress: { required: [...COMMON, 'ExpectedAddress'], optional: TAIL },
  ChallengeResponseFailed: { required: [...COMMON, 'Challenge', 'Response', 'ExpectedResponse'], optional: TAIL },
  InvalidPassword: { required: COMMON, optional: [...TAIL, 'Challenge', 'ReceivedChallenge', 'ReceivedHash'] },
  ChallengeSent: { required: [...COMMON, 'Challenge'], optional: TAIL },
  InvalidTransport: { required: [...COMMON, 'AttemptedTransport'], optional: TAIL },
};

/** A kind a newer Asterisk may add: the common headers in order, then anything not repeating a known header. */
export const UNKNOWN_KIND: KindSchema = { required: COMMON, optional: [] };

export const KNOWN_KINDS: readonly string[] = Object.keys(SECURITY_KINDS);

/**
 * Where the genuine address line lies relative to the attacker's text: for most kinds AccountID comes before
 * SessionID, LocalAddress and RemoteAddress, so lines forged there precede the genuine ones and the last
 * SessionID/LocalAddress/RemoteAddress run is Asterisk's; RequestBadFormat writes AccountID after them, so its first
 * run is.
 */
export function genuineRun(kind: string): 'first' | 'last' {
  return kind === 'RequestBadFormat' ? 'first' : 'last';
}

/** Every header name a security event may carry, for telling an added line from a known one. */
export const KNOWN_HEADERS: ReadonlySet<string> = new Set([
  'Event',
  'Privilege',
  ...PREAMBLE,
  ...Object.values(SECURITY_KINDS).flatMap((k) => [...k.required, ...k.optional]),
]);
