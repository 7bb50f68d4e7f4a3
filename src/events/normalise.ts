// Reads one AMI frame into a SecurityEvent, or says what else it is. Everything here may come from an attacker:
// AccountID is the SIP From user or an AMI Username, and pjsip writes it with CR LF un-escaped, so a REGISTER can put
// lines of its own into the event. A security event is accepted only when every header stands where Asterisk writes
// it (events/schema.ts) and each value Asterisk computes has its exact format; anything else is classified here as
// an injection ('broken', 'fragment') or as unusable ('invalid'), and the injection tracker decides what it means.
//
// Hot path: a frame is read in place from the latin1 view of the socket bytes (no header objects); only the values
// the policy needs become strings.
import type { FrameView } from '../ami/frame-reader.js';
import { dottedQuad, ipv4, parseAddress, type IpAddress } from '../net/ip.js';
import { KNOWN_HEADERS, PREAMBLE, SECURITY_KINDS, UNKNOWN_KIND, type KindSchema } from './schema.js';
import type { InjectionSign, SecurityEvent } from './types.js';

export type InvalidReason = 'bad-kind' | 'bad-address' | 'bad-value';

export type FrameReading =
  /** a security event, every header in its place */
  | { readonly type: 'event'; readonly event: SecurityEvent }
  /** an event of another class (FullyBooted, Shutdown, …), well formed */
  | { readonly type: 'system'; readonly name: string }
  /** an action's response: the AMI client keeps the replies to its own actions, so one that reaches here is forged */
  | { readonly type: 'response'; readonly runs: AddressRuns }
  /** the greeting */
  | { readonly type: 'banner' }
  /**
   * a security event with lines Asterisk did not write. `head`: it starts as Asterisk starts an event (the preamble,
   * EventTV, Severity, Service, EventVersion), so it is a new event of Asterisk's; without it, the Event and
   * Privilege lines are the attacker's, and the frame is the rest of an event already seen
   */
  | {
      readonly type: 'broken';
      readonly kind: string;
      readonly account: string;
      readonly sign: InjectionSign;
      readonly runs: AddressRuns;
      readonly head: boolean;
    }
  /** lines that are no message of their own: the rest of an event an injected empty line split */
  | { readonly type: 'fragment'; readonly runs: AddressRuns }
  /** a well-formed security event with a value ami-guard cannot use (e.g. an address it cannot parse) */
  | { readonly type: 'invalid'; readonly kind: string; readonly reason: InvalidReason };

/**
 * The SessionID, LocalAddress, RemoteAddress runs of a frame (three consecutive lines, as Asterisk writes them): the
 * RemoteAddress of the first and of the last, when it parses.
 */
export interface AddressRuns {
  readonly first: IpAddress | null;
  readonly last: IpAddress | null;
}

const KIND = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const SERVICE = /^[A-Za-z0-9_-]{1,32}$/;
const DIGITS = /^\d{1,9}$/;
const ACCOUNT_MAX = 64;
const SESSION_MAX = 128;
const SERVICES = new Map(['PJSIP', 'SIP', 'AMI', 'IAX2', 'UNKNOWN'].map((s) => [s, s]));
const KIND_NAMES = new Map(Object.keys(SECURITY_KINDS).map((k) => [k, k]));
const SEVERITIES = new Map(['Error', 'Informational'].map((s) => [s, s]));
// EventTV: 2026-11-21T19:15:48.554+0000 (UTC, milliseconds, no colon in the offset)
const EVENT_TV = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?([+-])(\d{2}):?(\d{2})$/;
const NO_RUNS: AddressRuns = { first: null, last: null };

/** Whether line `i` is `<name>: …`. */
function keyIs(f: FrameView, i: number, name: string): boolean {
  const s = f.starts[i]!;
  const k = s + name.length;
  return k + 2 <= f.ends[i]! && f.text.charCodeAt(k) === 58 && f.text.charCodeAt(k + 1) === 32 && f.text.startsWith(name, s);
}

/** Line `i`'s value; only for lines keyIs() accepted with `name`. */
function value(f: FrameView, i: number, name: string): string {
  return f.text.slice(f.starts[i]! + name.length + 2, f.ends[i]!);
}

/** The name of line `i` (before its first `: `), or null for a line without one. */
function lineKey(f: FrameView, i: number): string | null {
  const s = f.starts[i]!;
  const e = f.ends[i]!;
  const c = f.text.indexOf(': ', s);
  return c === -1 || c + 2 > e ? null : f.text.slice(s, c);
}

/** Whether a value holds a CR or LF of its own: the attacker tried to write a line even if it did not split. */
function hasLineBreak(f: FrameView, i: number): boolean {
  const s = f.starts[i]!;
  const e = f.ends[i]!;
  const cr = f.text.indexOf('\r', s);
  if (cr !== -1 && cr < e) return true;
  const lf = f.text.indexOf('\n', s);
  return lf !== -1 && lf < e;
}

/** Keeps attacker text printable and short: it ends up in logs, Redis values and `ami-guard show`. */
export function sanitizeText(text: string, max = ACCOUNT_MAX): string {
  if (!text) return '';

  const clean = /[\u0000-\u001f\u007f-\u009f]/.test(text) ? text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?') : text;
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** A value decoded as UTF-8 (invalid bytes become U+FFFD), made printable and short. */
function textValue(f: FrameView, i: number, name: string, max: number): string {
  const s = f.starts[i]! + name.length + 2;
  const e = Math.min(f.ends[i]!, s + max * 4);
  return sanitizeText(f.bytes.toString('utf8', s, e), max);
}

export function parseEventTime(text: string | undefined): number | null {
  if (!text) return null;
  const m = EVENT_TV.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om] = m;
  const ms = Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!, frac ? Math.floor(+`0.${frac}` * 1000) : 0);
  if (!Number.isFinite(ms)) return null;
  const offset = (+oh! * 60 + +om!) * 60_000 * (sign === '-' ? -1 : 1);
  return ms - offset;
}

/**
 * The address in Asterisk's `IPV4/UDP/198.18.0.11/5060` or `IPV6/UDP/fd00::66/5060`: IPv6 has no brackets and
 * holds colons, so the address is what lies between the second and the last `/`; some services leave the transport
 * out (`IPV4/198.18.0.11/5060`) or empty (`IPV4//…`). The port is ignored on purpose: over TCP it is the client's
 * ephemeral port, new with every connection. Reads text[s, e) without copying for IPv4.
 */
export function readAddress(text: string, s: number, e: number): IpAddress | null {
  if (e - s > 128 || e - s < 9 || text.charCodeAt(s + 4) !== 47) return null;
  const tag = text.slice(s, s + 4);
  const v6 = tag === 'IPV6';
  if (!v6 && tag !== 'IPV4') return null;
  const last = text.lastIndexOf('/', e - 1);
  if (last <= s + 4 || last === e - 1) return null;
  for (let i = last + 1; i < e; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return null;
  }
  // transport present: IPV4/UDP/a/p (three slashes); absent: IPV4/a/p (two)
  const second = text.indexOf('/', s + 5);
  const from = second < last ? second + 1 : s + 5;
  if (second < last) {
    for (let i = s + 5; i < second; i++) {
      const c = text.charCodeAt(i);
      if (!((c >= 65 && c <= 90) || (c >= 97 && c <= 122))) return null;
    }
  }
  if (from >= last) return null;
  if (!v6) {
    const n = dottedQuad(text, from, last);
    return n < 0 ? null : ipv4(n);
  }
  const addr = parseAddress(text.slice(from, last));
  return addr; // an IPv4-mapped IPv6 source is that IPv4 address
}

/** `readAddress` on a whole string, e.g. `IPV4/UDP/198.18.0.11/5060`. */
export function parseRemoteAddress(value: string): IpAddress | null {
  return readAddress(value, 0, value.length);
}

function privilegeHasSecurity(f: FrameView): boolean {
  const s = f.starts[1]! + 'Privilege: '.length;
  const e = f.ends[1]!;
  for (let i = f.text.indexOf('security', s); i !== -1 && i + 8 <= e; i = f.text.indexOf('security', i + 1)) {
    const before = i === s ? 44 : f.text.charCodeAt(i - 1);
    const after = i + 8 === e ? 44 : f.text.charCodeAt(i + 8);
    if ((before === 44 || before === 32) && (after === 44 || after === 32)) return true;
  }
  return false;
}

/** The RemoteAddress of the first and last SessionID, LocalAddress, RemoteAddress run of lines [from, to). */
function addressRuns(f: FrameView, from: number, to: number): AddressRuns {
  let first: IpAddress | null = null;
  let last: IpAddress | null = null;
  for (let i = Math.max(from, 0); i + 2 < to; i++) {
    if (!keyIs(f, i, 'SessionID') || !keyIs(f, i + 1, 'LocalAddress') || !keyIs(f, i + 2, 'RemoteAddress')) continue;
    const local = readAddress(f.text, f.starts[i + 1]! + 14, f.ends[i + 1]!);
    const remote = readAddress(f.text, f.starts[i + 2]! + 15, f.ends[i + 2]!);
    if (!local || !remote) continue;
    first ??= remote;
    last = remote;
  }
  return first ? { first, last } : NO_RUNS;
}

/** Reads one frame. `receivedAt` is the receiving node's clock (or the recording's, for replay). */
export function readFrame(f: FrameView, receivedAt: number): FrameReading {
  if (f.banner) return { type: 'banner' };
  if (f.lines === 0) return { type: 'fragment', runs: NO_RUNS };
  if (keyIs(f, 0, 'Response')) return { type: 'response', runs: addressRuns(f, 0, f.lines) };
  // an Event line without the Privilege line Asterisk writes after it is no event of Asterisk's
  if (!keyIs(f, 0, 'Event') || f.lines < 2 || !keyIs(f, 1, 'Privilege')) return { type: 'fragment', runs: addressRuns(f, 0, f.lines) };
  const kindText = value(f, 0, 'Event');
  if (!privilegeHasSecurity(f)) return { type: 'system', name: KIND.test(kindText) ? kindText : '' };
  if (!KIND.test(kindText)) return { type: 'invalid', kind: '', reason: 'bad-kind' };
  const kind = KIND_NAMES.get(kindText) ?? kindText;
  const schema: KindSchema = Object.hasOwn(SECURITY_KINDS, kind) ? SECURITY_KINDS[kind]! : UNKNOWN_KIND;

  let i = 2;
  for (const name of PREAMBLE) if (i < f.lines && keyIs(f, i, name)) i++;
  // where each header of interest stands; -1 when absent
  let tv = -1,
    severity = -1,
    service = -1,
    account = -1,
    session = -1,
    remote = -1,
    using = -1;
  for (const name of schema.required) {
    if (i >= f.lines || !keyIs(f, i, name)) return broken(f, kind, i >= f.lines ? 'cut-short' : undefined);
    switch (name) {
      case 'EventTV':
        tv = i;
        break;
      case 'Severity':
        severity = i;
        break;
      case 'Service':
        service = i;
        break;
      case 'AccountID':
        account = i;
        break;
      case 'SessionID':
        session = i;
        break;
      case 'RemoteAddress':
        remote = i;
        break;
      case 'UsingPassword':
        using = i;
        break;
    }
    if (hasLineBreak(f, i)) return broken(f, kind, 'control-characters');
    i++;
  }
  const optional = schema.optional;
  let o = 0;
  const extra = schema === UNKNOWN_KIND ? new Set<string>() : null;
  for (; i < f.lines; i++) {
    while (o < optional.length && !keyIs(f, i, optional[o]!)) o++;
    if (o < optional.length) {
      if (optional[o] === 'AccountID') account = i;
      if (hasLineBreak(f, i)) return broken(f, kind, 'control-characters');
      o++;
      continue;
    }
    // a newer kind's own headers: any name Asterisk uses nowhere else, once each
    const key = extra ? lineKey(f, i) : null;
    if (key === null || KNOWN_HEADERS.has(key) || extra!.has(key) || !/^[A-Za-z][A-Za-z0-9]{0,63}$/.test(key)) return broken(f, kind);
    if (hasLineBreak(f, i)) return broken(f, kind, 'control-characters');
    extra!.add(key);
  }

  const address = readAddress(f.text, f.starts[remote]! + 15, f.ends[remote]!);
  if (!address) return { type: 'invalid', kind, reason: 'bad-address' };
  const eventTv = value(f, tv, 'EventTV');
  const eventTime = parseEventTime(eventTv);
  const serviceText = value(f, service, 'Service');
  const severityText = value(f, severity, 'Severity');
  if (eventTime === null || !SERVICE.test(serviceText) || !SEVERITIES.has(severityText))
    return { type: 'invalid', kind, reason: 'bad-value' };
  if (using !== -1 && !DIGITS.test(value(f, using, 'UsingPassword'))) return { type: 'invalid', kind, reason: 'bad-value' };
  const serviceName = serviceText.toUpperCase();
  return {
    type: 'event',
    event: {
      kind,
      service: SERVICES.get(serviceName) ?? serviceName,
      address,
      accountId: account === -1 ? '' : textValue(f, account, 'AccountID', ACCOUNT_MAX),
      sessionId: session === -1 ? '' : textValue(f, session, 'SessionID', SESSION_MAX),
      eventTv,
      eventTime,
      receivedAt,
      severity: SEVERITIES.get(severityText)!,
      usingPassword: using !== -1 && value(f, using, 'UsingPassword') === '1',
    },
  };
}

/** A security event with lines Asterisk did not write: what gave it away, and the addresses it carries. */
function broken(f: FrameView, kind: string, sign?: InjectionSign): FrameReading {
  let account = '';
  const seen = new Set<string>();
  let repeated = false;
  let foreign = false;
  let hasRemote = false;
  for (let i = 0; i < f.lines; i++) {
    const key = lineKey(f, i);
    if (key === null || !KNOWN_HEADERS.has(key)) {
      foreign = true;
      continue;
    }
    if (seen.has(key)) repeated = true;
    seen.add(key);
    if (key === 'RemoteAddress') hasRemote = true;
    if (key === 'AccountID' && !account) account = textValue(f, i, 'AccountID', ACCOUNT_MAX);
  }
  const found: InjectionSign =
    sign ?? (!hasRemote ? 'cut-short' : repeated ? 'repeated-header' : foreign ? 'foreign-line' : 'out-of-place');
  return { type: 'broken', kind, account, sign: found, runs: addressRuns(f, 0, f.lines), head: hasAsterisksHead(f) };
}

/** Whether the lines after Event and Privilege are Asterisk's: the preamble, then a real EventTV, Severity, Service, EventVersion. */
function hasAsterisksHead(f: FrameView): boolean {
  let i = 2;
  for (const name of PREAMBLE) if (i < f.lines && keyIs(f, i, name)) i++;
  return (
    i + 3 < f.lines &&
    keyIs(f, i, 'EventTV') &&
    parseEventTime(value(f, i, 'EventTV')) !== null &&
    keyIs(f, i + 1, 'Severity') &&
    keyIs(f, i + 2, 'Service') &&
    keyIs(f, i + 3, 'EventVersion')
  );
}
