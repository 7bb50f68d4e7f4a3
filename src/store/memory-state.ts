// The embedded store's state file (`store.json` in store.stateDir): its bans, ban history and trust, in JSON Lines.
// The first line says what the file is; each further line is one entry:
//
//   {"format":"ami-guard-state","version":1,"id":"<store id>","node":"pbx1","written":1763757397387}
//   ["b","198.18.0.11",<banned at>,<until>,"failures",5,<first>,<last>,"BBBBB","pbx1",0,"<note>","<account>"]
//   ["b","203.0.113.0/24",…,"<account>","203.0.113.7,203.0.113.80,203.0.113.201"]   a subnet ban: its members last
//   ["h","198.18.0.11",<forgotten at>,[[<at>,<until>,"failures","pbx1"],…]]     history, newest first
//   ["t","198.51.100.20",<trusted until>]
//
// Times are ms since the epoch; kinds are the letters of the Redis layout (docs/fleet.md). One entry a line, so a file
// damaged in the middle loses the lines that are damaged, not the rest. Every line is read as hostile input: an
// address must come out of the IP parser as the same canonical text, numbers must be whole and in range, text is
// bounded; a line that fails is skipped and counted, never half used.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { parseTarget, type IpTarget } from '../net/ip.js';
import { HISTORY_CAP, REASON_MAX, storedAccount } from './activity.js';
import { membersOf, nodeName, printable } from './codec.js';
import { codesOf, tallyCodes } from './kinds.js';
import type { MemorySnapshot } from './memory-store.js';
import type { BanRecord, HistoryEntry } from './store.js';
import { StateFileError } from './state-file.js';

export const STATE_FILE = 'store.json';
const FORMAT = 'ami-guard-state';
const VERSION = 1;
/** lines rendered between two turns of the event loop: ~1 ms of work each */
const CHUNK_LINES = 2_000;
/** a line longer than this is not one of ours (a history of 50 entries is about 3 KB) */
const MAX_LINE = 16 * 1024;
const ID = /^[0-9A-Za-z_-]{1,64}$/;
const CODES = /^[A-Z]{0,1000}$/;

/** The file's lines for a snapshot taken now; yields to the event loop between chunks, so 200,000 bans never stall it. */
export async function* renderState(snapshot: MemorySnapshot, node: string, now: number): AsyncGenerator<string> {
  yield `${JSON.stringify({ format: FORMAT, version: VERSION, id: snapshot.id, node, written: now })}\n`;
  let lines: string[] = [];
  const flush = (): string => {
    const chunk = lines.join('');
    lines = [];
    return chunk;
  };
  for (const { record: r } of snapshot.bans) {
    lines.push(
      `${JSON.stringify([
        'b',
        r.address,
        r.bannedAt,
        r.until,
        r.reason,
        r.count,
        r.firstSeen,
        r.lastSeen,
        codesOf(r.kinds, 1_000),
        r.node,
        r.previousBans,
        r.note ?? '',
        r.account ?? '',
        ...(r.members?.length ? [r.members.join(',')] : []),
      ])}\n`,
    );
    if (lines.length >= CHUNK_LINES) {
      yield flush();
      await yieldToLoop();
    }
  }
  for (const h of snapshot.histories) {
    lines.push(`${JSON.stringify(['h', h.address, h.expiresAt, h.entries.map((e) => [e.at, e.until, e.reason, e.node])])}\n`);
    if (lines.length >= CHUNK_LINES) {
      yield flush();
      await yieldToLoop();
    }
  }
  for (const t of snapshot.trusted) {
    lines.push(`${JSON.stringify(['t', t.address, t.until])}\n`);
    if (lines.length >= CHUNK_LINES) {
      yield flush();
      await yieldToLoop();
    }
  }
  if (lines.length > 0) yield flush();
}

export interface ParsedState {
  readonly snapshot: MemorySnapshot;
  /** the node that wrote the file */
  readonly node: string;
  /** lines that could not be used, and the first of them (printable, bounded) */
  readonly skipped: number;
  readonly sample: string;
}

/** Reads a state file; throws StateFileError when it is not one (its first line), skips the lines that are bad. */
export function parseState(bytes: Buffer): ParsedState {
  const text = bytes.toString('utf8');
  const end = text.indexOf('\n');
  const header = readJson(end < 0 ? text : text.slice(0, end));
  if (!isObject(header) || header['format'] !== FORMAT) throw new StateFileError('it is not an ami-guard state file');
  if (header['version'] !== VERSION) {
    throw new StateFileError(`it is of version ${printable(String(header['version']), 20)}, this ami-guard reads version ${VERSION}`);
  }
  const id = header['id'];
  if (typeof id !== 'string' || !ID.test(id)) throw new StateFileError('its store id is missing or malformed');
  const bans: Array<{ target: IpTarget; record: BanRecord }> = [];
  const histories: Array<{ address: string; entries: HistoryEntry[]; expiresAt: number }> = [];
  const trusted: Array<{ address: string; until: number }> = [];
  let skipped = 0;
  let sample = '';
  let at = end < 0 ? text.length : end + 1;
  while (at < text.length) {
    let next = text.indexOf('\n', at);
    if (next < 0) next = text.length;
    const line = text.slice(at, next);
    at = next + 1;
    if (line.trim() === '') continue;
    const ok = line.length <= MAX_LINE && readLine(readJson(line), bans, histories, trusted);
    if (!ok && skipped++ === 0) sample = printable(line, 100);
  }
  return {
    snapshot: { id, bans, histories, trusted },
    node: typeof header['node'] === 'string' ? nodeName(header['node']) : '',
    skipped,
    sample,
  };
}

function readLine(
  v: unknown,
  bans: Array<{ target: IpTarget; record: BanRecord }>,
  histories: Array<{ address: string; entries: HistoryEntry[]; expiresAt: number }>,
  trusted: Array<{ address: string; until: number }>,
): boolean {
  if (!Array.isArray(v) || v.length < 3) return false;
  const target = canonical(v[1]);
  if (!target) return false;
  switch (v[0]) {
    case 'b': {
      if (v.length !== 13 && v.length !== 14) return false;
      const [, , bannedAt, until, reason, count, first, last, codes, node, previous, note, account, members] = v as unknown[];
      if (members !== undefined && !text(members, MAX_LINE)) return false;
      const named = typeof members === 'string' ? membersOf(members) : [];
      if (!time(bannedAt) || !time(until) || bannedAt > until || !time(first) || !time(last)) return false;
      if (!text(reason, REASON_MAX) || !whole(count) || typeof codes !== 'string' || !CODES.test(codes)) return false;
      if (!text(node, 64) || !whole(previous) || !text(note, REASON_MAX) || typeof account !== 'string') return false;
      bans.push({
        target,
        record: {
          address: target.text,
          reason,
          kinds: tallyCodes(codes),
          count,
          firstSeen: first,
          lastSeen: last,
          bannedAt,
          until,
          node,
          previousBans: Math.min(previous, HISTORY_CAP),
          ...(note ? { note } : {}),
          ...(account ? { account: storedAccount(account) } : {}),
          ...(named.length > 0 ? { members: named } : {}),
        },
      });
      return true;
    }
    case 'h': {
      if (v.length !== 4 || !time(v[2]) || !Array.isArray(v[3])) return false;
      const entries: HistoryEntry[] = [];
      for (const e of (v[3] as unknown[]).slice(0, HISTORY_CAP)) {
        if (!Array.isArray(e) || e.length !== 4) return false;
        const [entryAt, entryUntil, reason, node] = e as unknown[];
        if (!time(entryAt) || !time(entryUntil) || !text(reason, REASON_MAX) || !text(node, 64)) return false;
        entries.push({ at: entryAt, until: entryUntil, reason, node });
      }
      if (entries.length === 0) return false;
      histories.push({ address: target.text, entries, expiresAt: v[2] });
      return true;
    }
    case 't':
      if (v.length !== 3 || !time(v[2])) return false;
      trusted.push({ address: target.text, until: v[2] });
      return true;
    default:
      return false;
  }
}

function readJson(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** an address or network as the IP parser writes it, and nothing else */
function canonical(v: unknown): IpTarget | null {
  if (typeof v !== 'string' || v.length > 64) return null;
  const t = parseTarget(v);
  return t && t.text === v ? t : null;
}

/** ms since the epoch, between 1970 and the year 275,760 (what a Date can hold) */
function time(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= 8.64e15;
}

function whole(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function text(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length <= max;
}
