// Plain blocklists (VoIPBL and the like): one address or CIDR network per line, `#` or `;` starting a comment, from
// http(s) or a local file. Lines are split on the bytes as they arrive, so a list is never held whole as text; a
// line longer than any address could be is skipped to its end, counted as garbage.
import { dottedQuad, parseTarget, type IpTarget } from '../net/ip.js';
import { EntriesBuilder, type FeedEntries } from './entries.js';
import { FeedError, openSource } from './fetch.js';

/** longer than any address or network with a comment worth keeping; beyond it a line is garbage */
const MAX_LINE = 1024;

export interface ListStats {
  /** lines holding an entry (comments and blank lines aside) */
  readonly lines: number;
  /** lines that are not an address or network */
  readonly garbage: number;
  /** networks wider than policy.widest, such as 0.0.0.0/0 */
  readonly tooWide: number;
  /** the same entry twice */
  readonly duplicates: number;
  /** inside a wider network of the same list */
  readonly covered: number;
}

export interface ListPull {
  readonly entries: FeedEntries;
  readonly stats: ListStats;
}

export interface PlainListOptions {
  readonly url: string;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly maxEntries: number;
  /** the widest network an entry may be (policy.widest) */
  readonly widest: { readonly ipv4: number; readonly ipv6: number };
  readonly signal?: AbortSignal;
}

/** Pulls a list: every line parsed, garbage and too-wide entries counted and left out; nothing half-read is used. */
export async function pullPlainList(o: PlainListOptions): Promise<ListPull> {
  const reply = await openSource({
    url: o.url,
    timeoutMs: o.timeoutMs,
    maxBytes: o.maxBytes,
    maxRedirects: 3,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  const parser = new ListParser(o.widest);
  for await (const chunk of reply.chunks) {
    parser.push(chunk);
    // the builder holds at most maxEntries: a list longer than that fails whole rather than enforcing a random part
    if (parser.builder.size > o.maxEntries) {
      throw new FeedError(`more than ${o.maxEntries} entries (blocklists.maxEntries)`, 'too-big');
    }
  }
  return parser.end();
}

/** Splits bytes into lines and parses each; usable on its own for tests and benchmarks. */
export class ListParser {
  readonly builder = new EntriesBuilder(false);
  private carry = '';
  /** inside a line longer than MAX_LINE: skip to its end */
  private skipping = false;
  private lines = 0;
  private garbage = 0;
  private tooWide = 0;

  constructor(private readonly widest: { readonly ipv4: number; readonly ipv6: number }) {}

  push(chunk: Buffer): void {
    // latin1: addresses are ASCII, and anything else is garbage whatever its encoding; no decoder state across chunks
    const text = chunk.toString('latin1');
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      this.take(this.carry + text.slice(start, nl));
      this.carry = '';
      start = nl + 1;
    }
    const rest = text.slice(start);
    if (this.skipping || this.carry.length + rest.length > MAX_LINE) {
      if (!this.skipping) this.garbage++;
      this.skipping = true;
      this.carry = '';
    } else {
      this.carry += rest;
    }
  }

  end(): ListPull {
    this.take(this.carry);
    this.carry = '';
    const { entries, duplicates, covered } = this.builder.build();
    return { entries, stats: { lines: this.lines, garbage: this.garbage, tooWide: this.tooWide, duplicates, covered } };
  }

  private take(line: string): void {
    if (this.skipping) {
      this.skipping = false;
      return;
    }
    if (line.length > MAX_LINE) {
      this.garbage++;
      return;
    }
    const text = entryText(line);
    if (text === undefined) return;
    this.lines++;
    // the bulk of a list: a plain IPv4 address, packed without making a target of it
    const n = dottedQuad(text);
    if (n >= 0) {
      this.builder.addHost4(n);
      return;
    }
    const target = parseTarget(text);
    if (target === null) {
      this.garbage++;
    } else if (target.kind === 'prefix' && target.bits < (target.family === 4 ? this.widest.ipv4 : this.widest.ipv6)) {
      this.tooWide++;
    } else {
      this.builder.add(target);
    }
  }
}

/** One line's entry; undefined for a comment or blank line, null for garbage. */
export function parseLine(line: string): IpTarget | null | undefined {
  const text = entryText(line);
  return text === undefined ? undefined : parseTarget(text);
}

/** A line less its comment and surrounding blanks; undefined when nothing is left. */
function entryText(line: string): string | undefined {
  let end = line.length;
  const hash = line.indexOf('#');
  if (hash >= 0) end = hash;
  const semi = line.indexOf(';');
  if (semi >= 0 && semi < end) end = semi;
  const text = (end === line.length ? line : line.slice(0, end)).trim();
  return text.length === 0 ? undefined : text;
}
