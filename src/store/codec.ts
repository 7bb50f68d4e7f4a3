// Reads and writes the text the scripts store (include/record.lua, record-activity.lua; docs/fleet.md). What comes
// back from Redis is input like any other: another client, an operator or an attacker with access to Redis may have
// written it. A field that does not parse reads as absent, numbers must be safe integers, and text is bounded; it is
// kept as it is, for every output escapes what it prints (the CLI's terminal escaping, JSON in logs and replies).
import { parseTarget } from '../net/ip.js';
import { tallyCodes, kindName } from './kinds.js';
import type { BanRecord, HistoryEntry, RecentFailure } from './store.js';

/** Free text as the scripts store it: percent-encoded, so it never holds the layout's separators. */
export function encodeText(text: string): string {
  return encodeURIComponent(text);
}

/** Decodes encodeText's output; anything that does not decode (written by someone else) is taken as it is. */
export function decodeText(text: string, max = 200): string {
  let out = text;
  try {
    out = decodeURIComponent(text);
  } catch {
    // not ours: keep the raw text
  }
  return out.length > max ? out.slice(0, max) : out;
}

// C0 and C1 controls (ESC and CSI start terminal escape sequences), DEL, and the bidi overrides that reorder text

const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Text safe to print on a terminal: control characters replaced, length bounded. */
export function printable(text: string, max = 200): string {
  const clean = text.replace(UNPRINTABLE, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** A node id read back from Redis, bounded (the config allows 64 characters). */
export function nodeName(text: string | undefined): string {
  if (text === undefined) return '';
  return text.length > 64 ? text.slice(0, 64) : text;
}

/** ms since the epoch in base 36, as the scripts store times */
export function b36(ms: number): string {
  return ms.toString(36);
}

const B36 = /^[0-9a-z]{1,11}$/;

/** a base-36 time, or undefined when it is not one */
export function fromB36(text: string | undefined): number | undefined {
  if (text === undefined || !B36.test(text)) return undefined;
  const n = parseInt(text, 36);
  return Number.isSafeInteger(n) ? n : undefined;
}

function decimal(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

export type RecordFields = Partial<Record<string, string>>;

/** The `;`-separated `<letter>=<value>` fields of a record. */
export function parseRecord(text: string | null): RecordFields {
  const fields: RecordFields = Object.create(null) as RecordFields;
  if (!text) return fields;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq === 1) fields[part[0]!] = part.slice(2);
  }
  return fields;
}

/** a subnet ban names this many members at most (policy.subnet.maxbans is bounded by it) */
export const MEMBERS_MAX = 256;

/**
 * A subnet ban's members as stored (`,`-separated): each a canonical address or network, or left out; what Redis
 * holds may have been written by anyone.
 */
export function membersOf(text: string | undefined): string[] {
  if (!text) return [];
  const out: string[] = [];
  for (const m of text.split(',', MEMBERS_MAX)) {
    const t = m.length <= 64 ? parseTarget(m) : null;
    if (t && t.text === m) out.push(m);
  }
  return out;
}

/** The ban in force in a record, or null (none, over by `now`, or not readable). */
export function banOf(address: string, f: RecordFields, now: number): BanRecord | null {
  const until = fromB36(f.u);
  if (until === undefined || until <= now) return null;
  const bannedAt = fromB36(f.a) ?? 0;
  const note = f.o ? decodeText(f.o) : '';
  const account = f.x ? decodeText(f.x, 80) : '';
  const members = membersOf(f.m);
  return {
    address,
    reason: f.r ? decodeText(f.r, 64) : 'failures',
    kinds: f.k && /^[A-Z]{1,1000}$/.test(f.k) ? tallyCodes(f.k) : {},
    count: decimal(f.c) ?? 0,
    firstSeen: fromB36(f.f) ?? bannedAt,
    lastSeen: fromB36(f.l) ?? bannedAt,
    bannedAt,
    until,
    node: nodeName(f.n),
    previousBans: decimal(f.p) ?? 0,
    ...(note ? { note } : {}),
    ...(account ? { account } : {}),
    ...(members.length > 0 ? { members } : {}),
  };
}

/** The history of a record, newest first; an entry that does not parse is left out. */
export function historyOf(f: RecordFields): HistoryEntry[] {
  if (!f.h) return [];
  const out: HistoryEntry[] = [];
  for (const entry of f.h.split(',')) {
    const [at36, until36, reason, node] = entry.split(':');
    const at = fromB36(at36);
    if (at === undefined) continue;
    out.push({ at, until: fromB36(until36) ?? at, reason: reason ? decodeText(reason, 64) : 'failures', node: nodeName(node) });
  }
  return out;
}

export function trustedUntilOf(f: RecordFields, now: number): number | null {
  const t = fromB36(f.t);
  return t !== undefined && t > now ? t : null;
}

export interface WindowFailure {
  readonly at: number;
  readonly codes: string;
  readonly weight: number;
}

export interface Window {
  /** oldest first */
  readonly failures: WindowFailure[];
  /** pending challenges, oldest first */
  readonly challenges: number[];
  readonly account: string;
}

/** A failure window as record-activity.lua writes it: `[~]<count>:<failures>[|<challenges>][#<account>]`. */
export function parseWindow(text: string | null): Window | null {
  if (!text) return null;
  let body = text.startsWith('~') ? text.slice(1) : text;
  let account = '';
  const hash = body.indexOf('#');
  if (hash >= 0) {
    account = decodeText(body.slice(hash + 1), 80);
    body = body.slice(0, hash);
  }
  const colon = body.indexOf(':');
  if (colon >= 0) body = body.slice(colon + 1);
  const [fpart = '', cpart = ''] = body.split('|');
  const failures: WindowFailure[] = [];
  for (const m of fpart.matchAll(/([0-9a-z]+)([A-Z]*)(?:\*(\d+))?/g)) {
    const at = fromB36(m[1]);
    if (at === undefined) continue;
    const codes = m[2]!;
    failures.push({ at, codes, weight: m[3] ? Number(m[3]) : codes.length });
  }
  const challenges: number[] = [];
  for (const t of cpart.split(',')) {
    const at = fromB36(t);
    if (at !== undefined) challenges.push(at);
  }
  return { failures, challenges, account };
}

/** A window's failures as `show` lists them: one per event, newest first; the account is known for the last one. */
export function recentOf(window: Window | null): RecentFailure[] {
  if (!window) return [];
  const out: RecentFailure[] = [];
  const f = window.failures;
  for (let i = f.length - 1; i >= 0; i--) {
    const e = f[i]!;
    const codes = e.codes.length > 0 ? e.codes : '?';
    for (let j = codes.length - 1; j >= 0; j--) {
      out.push({ at: e.at, kind: codes[j] === '?' ? 'unknown' : kindName(codes[j]!), account: out.length === 0 ? window.account : '' });
    }
  }
  return out;
}
