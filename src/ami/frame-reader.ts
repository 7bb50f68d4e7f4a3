// A streaming AMI framer for recorded `.ami` bytes, the replay server and (later perhaps) the live socket.
//
// Framing is done on bytes, decoding per finished message: a chunk boundary inside a multi-byte UTF-8 sequence then
// cannot garble text, and the per-message cap is a byte count. Bytes that are not UTF-8 become U+FFFD, which is what
// asterisk-manager does on the live socket (setEncoding('utf-8')), so a replay of a file sees what the daemon would.
// NUL bytes are ordinary data here (never a terminator) and are kept; downstream parsers validate every field.
import type { RawMessage } from '../events/types.js';

export interface AmiFrame {
  /** exact text of the message including its line ends and the final empty line (banner: the line alone) */
  readonly raw: string;
  /** headers by asterisk-manager's rules; empty for the banner */
  readonly headers: RawMessage;
  /** true for the `Asterisk Call Manager/x.y.z` greeting, which has no blank line after it */
  readonly banner: boolean;
}

export interface FrameReaderOptions {
  /** largest message kept, in bytes, terminating blank line included */
  maxMessageBytes?: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

// asterisk-manager recognises the greeting by these 21 characters at the start of a message; so do we.
const BANNER_PREFIX = Buffer.from('Asterisk Call Manager', 'latin1');
const LF = 0x0a;
const CR = 0x0d;
const INITIAL_BUFFER = 4096;

export class AmiFrameReader {
  readonly maxMessageBytes: number;
  /** messages dropped because they exceeded maxMessageBytes */
  discarded = 0;
  /** frames returned so far, banners included */
  frames = 0;

  private buf: Buffer;
  private len = 0;
  private lineStart = 0;
  private lines = 0;
  // While discarding an oversized message only the shape of the current line matters: is it still empty or a lone CR?
  private skipping = false;
  private skipLineBytes = 0;
  private skipLineFirstIsCr = false;

  constructor(options: FrameReaderOptions = {}) {
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < 16) throw new RangeError(`maxMessageBytes must be an integer >= 16, got ${max}`);
    this.maxMessageBytes = max;
    this.buf = Buffer.allocUnsafe(Math.min(INITIAL_BUFFER, max));
  }

  /** Bytes held for the message in progress; never more than maxMessageBytes. */
  get bufferedBytes(): number {
    return this.len;
  }

  /** Feeds bytes (strings are taken as UTF-8) and returns every message they complete. */
  push(chunk: Buffer | string): AmiFrame[] {
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const out: AmiFrame[] = [];
    let pos = 0;
    while (pos < data.length) {
      const nl = data.indexOf(LF, pos);
      const end = nl === -1 ? data.length : nl + 1;
      const complete = nl !== -1;
      if (this.skipping) {
        this.skip(data, pos, end, complete);
      } else if (this.len + (end - pos) > this.maxMessageBytes) {
        this.startSkipping(data, pos, end, complete);
      } else {
        this.append(data, pos, end);
        if (complete) this.endLine(out);
      }
      pos = end;
    }
    return out;
  }

  private append(data: Buffer, start: number, end: number): void {
    const need = this.len + (end - start);
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxMessageBytes, Math.max(need, this.buf.length * 2)));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    data.copy(this.buf, this.len, start, end);
    this.len = need;
  }

  /** A line ending in buf at this.len has just been appended. */
  private endLine(out: AmiFrame[]): void {
    const contentBytes = this.len - this.lineStart - 1;
    const empty = contentBytes === 0 || (contentBytes === 1 && this.buf[this.lineStart] === CR);
    if (empty) {
      // A stray blank line between messages carries nothing (asterisk-manager would emit it as `{}`).
      if (this.lines > 0) this.emit(out, false);
      this.resetMessage();
      return;
    }
    if (this.lines === 0 && this.startsWithBanner()) {
      this.emit(out, true);
      this.resetMessage();
      return;
    }
    this.lines++;
    this.lineStart = this.len;
  }

  private startsWithBanner(): boolean {
    const n = BANNER_PREFIX.length;
    return this.len >= n && this.buf.compare(BANNER_PREFIX, 0, n, 0, n) === 0;
  }

  private emit(out: AmiFrame[], banner: boolean): void {
    const raw = this.buf.toString('utf8', 0, this.len);
    this.frames++;
    out.push({ raw, headers: banner ? {} : parseHeaderBlock(raw), banner });
  }

  private resetMessage(): void {
    this.len = 0;
    this.lineStart = 0;
    this.lines = 0;
    // Let one oversized-but-allowed message not pin a large buffer for the life of the reader.
    if (this.buf.length > INITIAL_BUFFER * 4) this.buf = Buffer.allocUnsafe(Math.min(INITIAL_BUFFER, this.maxMessageBytes));
  }

  private startSkipping(data: Buffer, start: number, end: number, complete: boolean): void {
    this.discarded++;
    this.skipping = true;
    // Carry over what is known of the current line so that its end is still recognised.
    const held = this.len - this.lineStart;
    this.skipLineBytes = held;
    this.skipLineFirstIsCr = held > 0 && this.buf[this.lineStart] === CR;
    this.resetMessage();
    this.skip(data, start, end, complete);
  }

  private skip(data: Buffer, start: number, end: number, complete: boolean): void {
    const contentEnd = complete ? end - 1 : end;
    if (contentEnd > start) {
      if (this.skipLineBytes === 0) this.skipLineFirstIsCr = data[start] === CR;
      this.skipLineBytes = Math.min(2, this.skipLineBytes + (contentEnd - start));
    }
    if (!complete) return;
    const empty = this.skipLineBytes === 0 || (this.skipLineBytes === 1 && this.skipLineFirstIsCr);
    this.skipLineBytes = 0;
    this.skipLineFirstIsCr = false;
    if (empty) this.skipping = false;
  }
}

/**
 * Headers of one message by asterisk-manager's rules: lines split on LF with an optional CR before it, empty lines
 * ignored, each line split on its first `': '`; the key is trimmed and lower-cased (inner spaces stay), the value is
 * the rest verbatim (a line without `': '` is all key, value ''). A repeated key collects its values in order.
 * Unlike the library, `Variable:`/`ChanVariable:` stay plain strings.
 */
export function parseHeaderBlock(text: string): RawMessage {
  const headers: RawMessage = {};
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line.length === 0) continue;
    const colon = line.indexOf(': ');
    const key = (colon === -1 ? line : line.slice(0, colon)).trim().toLowerCase();
    const value = colon === -1 ? '' : line.slice(colon + 2);
    addHeader(headers, key, value);
  }
  return headers;
}

function addHeader(headers: RawMessage, key: string, value: string): void {
  // A header called `Constructor` must not find Object.prototype.constructor: own properties only.
  let existing = headers[key];
  if (existing !== undefined && !Object.hasOwn(headers, key)) existing = undefined;
  if (Array.isArray(existing)) {
    existing.push(value); // in place: 16k repeats of one key in a 64 KiB message must stay linear
    return;
  }
  const next = existing === undefined ? value : [existing, value];
  // Assigning `__proto__` would replace the prototype instead of storing data; defineProperty is reserved for that
  // key because it would make every object slow.
  if (key === '__proto__') Object.defineProperty(headers, key, { value: next, enumerable: true, writable: true, configurable: true });
  else headers[key] = next;
}
