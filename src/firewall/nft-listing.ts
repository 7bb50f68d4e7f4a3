// Reads the elements of one set from nft's text listing (`list set inet <table> <set>`, with or without -s).
// Text rather than JSON: at 100k elements nft 1.0.6 prints the text listing in ~0.7 s and the JSON one in ~2 s,
// and Node parses neither faster than this scanner. What is in our sets may have been written by someone else, so
// the listing is read as hostile text: quoted strings (an element's comment) are skipped whole, anything that is not
// a canonical address or network of the set's family is handed back as skipped, and nothing is ever re-used as nft
// syntax: targets come out of the IP parser.
import { parseTarget, type IpTarget } from '../net/ip.js';
import type { SetSpec } from './nft-script.js';

/** a set element as read back, with its parsed target */
export interface SetEntry {
  readonly target: IpTarget;
  /** remaining time as nft printed it (ms; whole ms), null without a timeout or in a stateless listing */
  readonly expiresMs: number | null;
}

const DURATION = /(\d+)(ms|d|h|m|s)/g;
const UNIT_MS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** `1h2m3s456ms` as ms; null unless the whole word is such a duration */
export function parseNftDuration(word: string): number | null {
  let ms = 0;
  let consumed = 0;
  for (const m of word.matchAll(DURATION)) {
    if (m.index !== consumed) return null;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
    consumed += m[0].length;
  }
  return consumed === word.length && consumed > 0 ? ms : null;
}

/**
 * The elements of `set` in a listing of that set. Elements are separated by commas inside `elements = { … }`;
 * each is its key, then keyword/value pairs (`timeout 1h`, `expires 59m58s`, `comment "…"`, `counter packets …`).
 */
export function parseSetListing(text: string, set: SetSpec): { entries: SetEntry[]; skipped: string[] } {
  const entries: SetEntry[] = [];
  const skipped: string[] = [];
  const start = text.indexOf('elements = {');
  if (start < 0) return { entries, skipped };
  let words: string[] = [];
  const flush = (): void => {
    if (words.length === 0) return;
    const entry = readElement(words, set);
    if (entry) entries.push(entry);
    else skipped.push(words.join(' ').slice(0, 200));
    words = [];
  };
  let i = start + 'elements = {'.length;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 125 /* } */) break;
    if (c === 44 /* , */) {
      flush();
      i++;
    } else if (c === 32 || c === 9 || c === 10 || c === 13) {
      i++;
    } else if (c === 34 /* " */) {
      const close = text.indexOf('"', i + 1);
      words.push('"');
      i = close < 0 ? text.length : close + 1;
    } else {
      let j = i;
      while (j < text.length && !' \t\n\r,}"'.includes(text[j]!)) j++;
      words.push(text.slice(i, j));
      i = j;
    }
  }
  flush();
  return { entries, skipped };
}

function readElement(words: readonly string[], set: SetSpec): SetEntry | null {
  const target = parseTarget(words[0]!);
  if (!target || target.family !== set.family) return null;
  const at = words.indexOf('expires');
  const expiresMs = at > 0 && at + 1 < words.length ? parseNftDuration(words[at + 1]!) : null;
  return { target, expiresMs };
}
