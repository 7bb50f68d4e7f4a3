// Reads one record of Asterisk's security log (res/res_security_log.c) into a SecurityEvent, or says what else it is:
//
//   [2026-11-21 19:15:09] SECURITY[3977] res_security_log.c: SecurityEvent="ChallengeResponseFailed",EventTV="…",
//   Severity="Error",Service="PJSIP",EventVersion="1",AccountID="6001",SessionID="…",LocalAddress="IPV4/UDP/…/5060",
//   RemoteAddress="IPV4/UDP/198.18.0.11/5060",Challenge="…",Response="…",ExpectedResponse=""
//
// The fields are the AMI event's, in the same order (main/security_events.c's tables: the required ones, then the
// optional ones present), each written `,Name="value"` and never escaped. So attacker text (AccountID is the SIP From
// user, SessionID pjsip's Call-ID, Response the digest the client sent) can hold `",RemoteAddress="…` and, in
// AccountID, a line break. The rule is the AMI parser's (events/normalise.ts), fail-closed: a record is an event only
// when every field stands where Asterisk writes it; anything else is an injection, and its source is Asterisk's own
// RemoteAddress, at its place.
//
// Without line breaks, "at its place" is decided exactly. Asterisk's separators are all in the record, the attacker's
// text adds more, so the genuine fields are a subsequence of the fields read: each genuine field is followed by the
// next one of its kind's table, or by text an attacker-controlled value may hold. A value Asterisk computes (EventTV,
// Severity, Service, EventVersion, the addresses, UsingPassword, SessionTV) never holds a quote, so it is followed at
// once by the next genuine field. The source is the RemoteAddress every such reading agrees on; when two readings
// disagree it is unknown, and nothing is banned for it.
import { readAddress, parseEventTime, sanitizeText, type InvalidReason } from './normalise.js';
import { KNOWN_HEADERS, SECURITY_KINDS, UNKNOWN_KIND, type KindSchema } from './schema.js';
import type { InjectionSign, SecurityEvent } from './types.js';
import type { IpAddress } from '../net/ip.js';

export type LogReading =
  /** a security event, every field in its place */
  | { readonly type: 'event'; readonly event: SecurityEvent }
  /**
   * a record with fields Asterisk did not write: `source` is the genuine RemoteAddress when it can be told, `eventTime`
   * its EventTV (the second field, which no value comes before)
   */
  | {
      readonly type: 'broken';
      readonly kind: string;
      readonly account: string;
      readonly sign: InjectionSign;
      readonly source: IpAddress | null;
      readonly eventTime: number | null;
    }
  /** a well-formed record with a value ami-guard cannot use */
  | { readonly type: 'invalid'; readonly kind: string; readonly reason: InvalidReason };

/** Where the record's text starts: every security record's message begins with it. */
export const RECORD_START = 'SecurityEvent="';

const KIND = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const NAME = /[A-Za-z][A-Za-z0-9]{0,63}="/y;
const SERVICE = /^[A-Za-z0-9_-]{1,32}$/;
const DIGITS = /^\d{1,9}$/;
const SEVERITIES = new Set(['Error', 'Informational']);
const ACCOUNT_MAX = 64;
const SESSION_MAX = 128;
/** more fields than any kind has, several times over: a record with more is unreadable, not worth a search */
const MAX_FIELDS = 96;
/** values Asterisk computes: never a quote in them, so nothing an attacker wrote can follow them inside a value */
const COMPUTED = new Set([
  'SecurityEvent',
  'EventTV',
  'Severity',
  'Service',
  'EventVersion',
  'LocalAddress',
  'RemoteAddress',
  'UsingPassword',
  'SessionTV',
]);

/** One `Name="value"` of the record; the value is text[start, end). */
interface Field {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** A `",Name="` in the record: `q` its opening quote, `start` where the value after it begins. */
interface Separator {
  readonly name: string;
  readonly q: number;
  readonly start: number;
}

interface Fields {
  /** the fields a left-to-right split gives: each value runs to the next separator after its start */
  readonly list: Field[];
  /**
   * every `",Name="`, SecurityEvent first. Unlike the split's, these may overlap: in `AccountID="…",Module=",SessionID="…`
   * the quote that closes the name `Module="` is also where Asterisk's own `",SessionID="` begins, which a reading
   * must be able to take
   */
  readonly separators: readonly Separator[];
  /** the record ends with the closing quote of its last value (false: cut off) */
  readonly closed: boolean;
}

/**
 * Splits a record at every `",Name="`: Asterisk's separators and any an attacker wrote. `text` starts with
 * `SecurityEvent="`. Null when there are more separators than any reading could use.
 */
function split(text: string): Fields | null {
  const separators: Separator[] = [{ name: 'SecurityEvent', q: -1, start: RECORD_START.length }];
  for (let q = text.indexOf('",', RECORD_START.length); q !== -1; q = text.indexOf('",', q + 1)) {
    NAME.lastIndex = q + 2;
    const m = NAME.exec(text);
    if (!m) continue;
    if (separators.length > MAX_FIELDS) return null;
    separators.push({ name: m[0].slice(0, -2), q, start: q + 2 + m[0].length });
  }
  const list: Field[] = [];
  let at = separators[0]!;
  for (const s of separators) {
    if (s.q < at.start) continue;
    list.push({ name: at.name, start: at.start, end: s.q });
    at = s;
  }
  const closed = text.length > at.start && text.charCodeAt(text.length - 1) === 34;
  list.push({ name: at.name, start: at.start, end: closed ? text.length - 1 : text.length });
  return { list, separators, closed };
}

function value(text: string, f: Field): string {
  return text.slice(f.start, f.end);
}

function hasLineBreak(text: string, f: Field): boolean {
  for (let i = f.start; i < f.end; i++) {
    const c = text.charCodeAt(i);
    if (c === 10 || c === 13) return true;
  }
  return false;
}

/** The kind's fields after SecurityEvent, in Asterisk's order. */
interface Slot {
  readonly name: string;
  readonly required: boolean;
  readonly computed: boolean;
}

const ANY = '*';
const slotCache = new Map<KindSchema, readonly Slot[]>();

function slotsOf(schema: KindSchema): readonly Slot[] {
  let slots = slotCache.get(schema);
  if (!slots) {
    slots = [
      ...schema.required.map((name) => ({ name, required: true, computed: COMPUTED.has(name) })),
      ...schema.optional.map((name) => ({ name, required: false, computed: COMPUTED.has(name) })),
      // a newer kind's own fields after the common ones: any name, and any text after them
      ...(schema === UNKNOWN_KIND ? [{ name: ANY, required: false, computed: false }] : []),
    ];
    slotCache.set(schema, slots);
  }
  return slots;
}

function fits(slot: Slot, field: { readonly name: string }): boolean {
  return slot.name === field.name || (slot.name === ANY && !KNOWN_HEADERS.has(field.name));
}

/**
 * The value of every separator that is Asterisk's RemoteAddress in some reading of the record consistent with how
 * Asterisk writes it: SecurityEvent first, then the kind's fields in order (the optional ones may be absent), each
 * followed directly by the next when its value is computed, or by any text an attacker-controlled value may hold.
 */
function genuineRemotes(text: string, fields: Fields, schema: KindSchema): Array<{ start: number; end: number }> {
  const f = fields.separators;
  const closed = fields.closed;
  const n = f.length;
  const slots = slotsOf(schema);
  const m = slots.length;
  // A field of a name Asterisk does not use may be a newer Asterisk's own: it may stand between two genuine fields
  // even after a computed value. firstKnown[i]: where the first separator of a known name inside i's value begins.
  const firstKnown = new Float64Array(n).fill(Infinity);
  let knownQ = Infinity;
  for (let i = n - 1, k = n - 1; i >= 0; i--) {
    for (; k > 0 && f[k]!.q >= f[i]!.start; k--) if (KNOWN_HEADERS.has(f[k]!.name)) knownQ = f[k]!.q;
    firstKnown[i] = knownQ;
  }
  /** the genuine field at j may follow the one at i: it begins after i's value does (overlapping ones exclude each other) */
  const follows = (i: number, j: number): boolean => f[j]!.q >= f[i]!.start;
  /** a computed value at i, which holds no quote, may be followed by the next genuine field at j */
  const next = (i: number, j: number): boolean => follows(i, j) && f[j]!.q <= firstKnown[i]!;
  // can[k][j]: slots[0..k] can be read so that slots[k] is separator j
  const can = Array.from({ length: m }, () => new Uint8Array(n));
  for (let k = 0; k < m; k++) {
    for (let j = 1; j < n; j++) {
      if (!fits(slots[k]!, f[j]!)) continue;
      let ok = false;
      // the previous genuine field: SecurityEvent (separator 0, computed), when every slot before k may be absent
      for (let p = k - 1; p >= -1 && !ok; p--) {
        if (p === -1) ok = next(0, j);
        else {
          const row = can[p]!;
          for (let i = 1; i < j && !ok; i++) ok = row[i] === 1 && (slots[p]!.computed ? next(i, j) : follows(i, j));
        }
        if (p >= 0 && slots[p]!.required) break;
      }
      if (ok) can[k]![j] = 1;
    }
  }
  // rest[k][j]: with slots[k] at separator j, the slots after k can be read from the separators after j
  const rest = Array.from({ length: m }, () => new Uint8Array(n));
  for (let k = m - 1; k >= 0; k--) {
    for (let j = n - 1; j >= 1; j--) {
      const computed = slots[k]!.computed;
      let ok = false;
      for (let q = k + 1; q <= m && !ok; q++) {
        if (q === m) {
          // the end of the record: a computed value ends it only whole, as the last field of a known name
          ok = computed ? firstKnown[j] === Infinity && (f[n - 1]!.q >= f[j]!.start || closed) : true;
          break;
        }
        const row = rest[q]!;
        for (let i = j + 1; i < n && !ok; i++) ok = row[i] === 1 && fits(slots[q]!, f[i]!) && (computed ? next(j, i) : follows(j, i));
        if (slots[q]!.required) break;
      }
      if (ok) rest[k]![j] = 1;
    }
  }
  const ra = slots.findIndex((s) => s.name === 'RemoteAddress');
  const out: Array<{ start: number; end: number }> = [];
  for (let j = 1; j < n; j++) {
    if (!can[ra]![j] || !rest[ra]![j]) continue;
    // a computed value ends at the first quote after it, which begins the next separator
    let end = closed ? text.length - 1 : text.length;
    for (let i = j + 1; i < n; i++)
      if (f[i]!.q >= f[j]!.start) {
        end = f[i]!.q;
        break;
      }
    out.push({ start: f[j]!.start, end });
  }
  return out;
}

/** The address every reading agrees on, or null. */
function agreedSource(text: string, remotes: ReadonlyArray<{ start: number; end: number }>): IpAddress | null {
  let source: IpAddress | null = null;
  for (const r of remotes) {
    const a = readAddress(text, r.start, r.end);
    if (!a || (source && source.text !== a.text)) return null;
    source = a;
  }
  return source;
}

/**
 * Reads one record: `text` is its message from `SecurityEvent="` on, continuation lines joined with `\n` (a line
 * break inside a value starts a line of its own in the log). `receivedAt`: the reader's clock, or null for the
 * record's own EventTV.
 */
export function readSecurityRecord(text: string, receivedAt: number | null = null): LogReading {
  if (!text.startsWith(RECORD_START)) return broken(text, null, '', 'cut-short');
  const fields = split(text);
  if (!fields) return broken(text, null, '', 'foreign-line');
  const f = fields.list;
  const kindText = value(text, f[0]!);
  if (!KIND.test(kindText)) {
    return hasLineBreak(text, f[0]!) || f.length === 1
      ? broken(text, fields, '', 'cut-short')
      : { type: 'invalid', kind: '', reason: 'bad-kind' };
  }
  const kind = kindText;
  const schema: KindSchema = Object.hasOwn(SECURITY_KINDS, kind) ? SECURITY_KINDS[kind]! : UNKNOWN_KIND;
  // a second record inside this one: a line Asterisk cut at its 8 KiB limit and the next one glued to it, or one an
  // attacker wrote; which of its fields are whose cannot be told
  if (text.includes(RECORD_START, RECORD_START.length))
    return broken(text, null, kind, lineBroken(text, fields) ? 'control-characters' : 'cut-short');

  const at = new Map<string, Field>();
  let i = 1;
  for (const name of schema.required) {
    if (i >= f.length || f[i]!.name !== name) return broken(text, fields, kind, i >= f.length ? 'cut-short' : undefined);
    at.set(name, f[i]!);
    i++;
  }
  const optional = schema.optional;
  const extra = schema === UNKNOWN_KIND ? new Set<string>() : null;
  for (let o = 0; i < f.length; i++) {
    const name = f[i]!.name;
    while (o < optional.length && optional[o] !== name) o++;
    if (o < optional.length) {
      at.set(name, f[i]!);
      o++;
      continue;
    }
    // a newer kind's own fields: any name Asterisk uses nowhere else, once each
    if (!extra || KNOWN_HEADERS.has(name) || extra.has(name)) return broken(text, fields, kind);
    extra.add(name);
  }
  if (!fields.closed) return broken(text, fields, kind, 'cut-short');
  if (lineBroken(text, fields)) return broken(text, fields, kind, 'control-characters');

  const remote = at.get('RemoteAddress')!;
  const address = readAddress(text, remote.start, remote.end);
  if (!address) return { type: 'invalid', kind, reason: 'bad-address' };
  const eventTv = value(text, at.get('EventTV')!);
  const eventTime = parseEventTime(eventTv);
  const service = value(text, at.get('Service')!);
  const severity = value(text, at.get('Severity')!);
  const using = at.get('UsingPassword');
  if (eventTime === null || !SERVICE.test(service) || !SEVERITIES.has(severity)) return { type: 'invalid', kind, reason: 'bad-value' };
  if (using && !DIGITS.test(value(text, using))) return { type: 'invalid', kind, reason: 'bad-value' };
  const account = at.get('AccountID');
  const session = at.get('SessionID');
  return {
    type: 'event',
    event: {
      kind,
      service: service.toUpperCase(),
      address,
      accountId: account ? sanitizeText(value(text, account), ACCOUNT_MAX) : '',
      sessionId: session ? sanitizeText(value(text, session), SESSION_MAX) : '',
      eventTv,
      eventTime,
      receivedAt: receivedAt ?? eventTime,
      severity,
      usingPassword: using !== undefined && value(text, using) === '1',
    },
  };
}

function lineBroken(text: string, fields: Fields): boolean {
  return fields.list.some((f) => hasLineBreak(text, f));
}

/** A record with fields Asterisk did not write: what gave it away, and its genuine source when it can be told. */
function broken(text: string, fields: Fields | null, kind: string, sign?: InjectionSign): LogReading {
  if (!fields) return { type: 'broken', kind, account: '', sign: sign ?? 'foreign-line', source: null, eventTime: null };
  const seen = new Set<string>();
  let repeated = false;
  let foreign = false;
  let hasRemote = false;
  let account = '';
  for (const f of fields.list) {
    if (!KNOWN_HEADERS.has(f.name) && f.name !== 'SecurityEvent') foreign = true;
    if (seen.has(f.name)) repeated = true;
    seen.add(f.name);
    if (f.name === 'RemoteAddress') hasRemote = true;
    if (f.name === 'AccountID' && !account) account = sanitizeText(value(text, f), ACCOUNT_MAX);
  }
  const found: InjectionSign =
    sign ??
    (lineBroken(text, fields)
      ? 'control-characters'
      : !hasRemote
        ? 'cut-short'
        : repeated
          ? 'repeated-header'
          : foreign
            ? 'foreign-line'
            : 'out-of-place');
  const schema: KindSchema = kind && Object.hasOwn(SECURITY_KINDS, kind) ? SECURITY_KINDS[kind]! : UNKNOWN_KIND;
  const source = kind ? agreedSource(text, genuineRemotes(text, fields, schema)) : null;
  const tv = fields.list[1];
  const eventTime = tv?.name === 'EventTV' ? parseEventTime(value(text, tv)) : null;
  return { type: 'broken', kind, account, sign: found, source, eventTime };
}
