// Security events exactly as Asterisk 22 (res_pjsip) writes them on AMI, header for header (see
// test/fixtures/ami/EVENTS.md), for tests that need events the recordings do not hold: other addresses, injected
// AccountIDs, bursts.

export interface EventFields {
  /** RemoteAddress's address; IPv6 is written without brackets, as Asterisk does */
  remote?: string;
  /** the From user: pjsip writes it raw, CR and LF included */
  account?: string;
  session?: string;
  eventTv?: string;
  transport?: string;
}

const EXTRA: Record<string, string> = {
  ChallengeResponseFailed:
    'Challenge: 1795288548/4ac4432ad3c4d8473bce8eae5a85bd0f\r\nResponse: 75279d66fe34f244c2f9d576db4fb5c9\r\nExpectedResponse: \r\n',
  ChallengeSent: 'Challenge: \r\n',
  SuccessfulAuth: 'UsingPassword: 1\r\n',
  FailedACL: 'ACLName: not_match_endpoint_acl\r\n',
};

/** One pjsip security event of `kind`. */
export function pjsipEvent(kind: string, f: EventFields = {}): string {
  const remote = f.remote ?? '198.18.0.11';
  const family = remote.includes(':') ? 'IPV6' : 'IPV4';
  const local = family === 'IPV6' ? 'fd00::1' : '198.18.0.1';
  const transport = f.transport ?? 'UDP';
  return (
    `Event: ${kind}\r\nPrivilege: security,all\r\nEventTV: ${f.eventTv ?? '2026-11-21T19:15:48.554+0000'}\r\nSeverity: ${kind === 'ChallengeSent' || kind === 'SuccessfulAuth' ? 'Informational' : 'Error'}\r\n` +
    `Service: PJSIP\r\nEventVersion: 1\r\nAccountID: ${f.account ?? (kind === 'InvalidAccountID' ? '3673391824' : '6001')}\r\n` +
    `SessionID: ${f.session ?? `1-4574@${remote}`}\r\nLocalAddress: ${family}/${transport}/${local}/5060\r\n` +
    `RemoteAddress: ${family}/${transport}/${remote}/5060\r\n${EXTRA[kind] ?? ''}\r\n`
  );
}

/**
 * The InvalidAccountID that pjsip writes for a REGISTER whose From user decodes to `payload` (e.g. `%0D%0A…`): the
 * attacker's bytes land raw in AccountID, before Asterisk's own SessionID, LocalAddress and RemoteAddress.
 */
export function injectedEvent(payload: string, remote = '198.18.0.11'): string {
  return pjsipEvent('InvalidAccountID', { account: payload, remote });
}
