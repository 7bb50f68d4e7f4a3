// Turns one raw AMI message into a SecurityEvent, or says why it is not one. Everything read here may come from an
// attacker (AccountID is the SIP From user or an AMI Username; SessionID is a SIP Call-ID), so each field is either
// matched against a strict pattern or kept as inert, truncated data.
import type { RawMessage, SecurityEvent } from './types.js';
import { parseRemoteAddress } from './remote-address.js';

export type NotSecurityReason = 'not-event' | 'not-security';
export type InvalidReason = 'bad-kind' | 'no-address' | 'bad-address' | 'oversized';

export type NormaliseResult =
  | { readonly ok: true; readonly event: SecurityEvent }
  | { readonly ok: false; readonly reason: NotSecurityReason | InvalidReason; readonly kind?: string };

const KIND = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const SERVICE = /^[A-Za-z0-9_-]{1,32}$/;
const ACCOUNT_MAX = 64;
/**
 * Real security events are a few hundred bytes. A bigger one is forged or broken; it is dropped whole, as the frame
 * reader drops it from a recording (the same cap), so a replay and the live daemon agree.
 */
export const MAX_MESSAGE_CHARS = 64 * 1024;
// EventTV: 2026-11-21T19:15:48.554+0000 (UTC, milliseconds, no colon in the offset)
const EVENT_TV = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?([+-])(\d{2}):?(\d{2})$/;

/** First value of a header (repeated headers arrive as arrays). */
export function header(msg: RawMessage, key: string): string | undefined {
  const v = Object.hasOwn(msg, key) ? msg[key] : undefined;
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : typeof v[0] === 'string' ? v[0] : undefined;
}

export function parseEventTime(value: string | undefined): number | null {
  if (!value) return null;
  const m = EVENT_TV.exec(value.trim());
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om] = m;
  const ms = Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!, frac ? Math.floor(+`0.${frac}` * 1000) : 0);
  if (!Number.isFinite(ms)) return null;
  const offset = (+oh! * 60 + +om!) * 60_000 * (sign === '-' ? -1 : 1);
  return ms - offset;
}

/** Keeps attacker text printable and short: it ends up in logs, Redis values and `ami-guard show`. */
export function sanitizeText(value: string | undefined, max = ACCOUNT_MAX): string {
  if (!value) return '';
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function messageChars(msg: RawMessage): number {
  let n = 0;
  for (const key in msg) {
    const v = msg[key];
    n += key.length + (typeof v === 'string' ? v.length : (v ?? []).reduce((a, x) => a + x.length, 0));
  }
  return n;
}

function isSecurityMessage(msg: RawMessage): boolean {
  const privilege = header(msg, 'privilege');
  return privilege !== undefined && privilege.split(',').some((p) => p.trim().toLowerCase() === 'security');
}

export function normalise(msg: RawMessage, receivedAt: number): NormaliseResult {
  // classify by the Event header, never by the presence of `Response:` (pjsip's ChallengeResponseFailed has one)
  const kind = header(msg, 'event');
  if (kind === undefined) return { ok: false, reason: 'not-event' };
  if (!isSecurityMessage(msg)) return { ok: false, reason: 'not-security' };
  if (!KIND.test(kind)) return { ok: false, reason: 'bad-kind' };
  if (messageChars(msg) > MAX_MESSAGE_CHARS) return { ok: false, reason: 'oversized', kind };
  const remote = header(msg, 'remoteaddress');
  if (remote === undefined || remote.trim() === '') return { ok: false, reason: 'no-address', kind };
  const address = parseRemoteAddress(remote.trim());
  if (!address) return { ok: false, reason: 'bad-address', kind };
  const service = header(msg, 'service')?.trim() ?? '';
  return {
    ok: true,
    event: {
      kind,
      service: SERVICE.test(service) ? service.toUpperCase() : 'UNKNOWN',
      address,
      accountId: sanitizeText(header(msg, 'accountid')),
      eventTime: parseEventTime(header(msg, 'eventtv')),
      receivedAt,
      severity: sanitizeText(header(msg, 'severity'), 32),
      usingPassword: header(msg, 'usingpassword')?.trim() === '1',
      sessionId: sanitizeText(header(msg, 'sessionid'), 128),
    },
  };
}
